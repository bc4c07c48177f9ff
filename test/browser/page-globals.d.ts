/* eslint-disable @typescript-eslint/no-explicit-any */
// Globals of the Node-RED editor page. Only code passed to page.evaluate/waitForFunction uses
// them: it is serialised and runs inside Chromium, never in Node.
declare const RED: any;
declare const $: any;
interface Window {
  RED?: any;
  $?: any;
}
