/* eslint-disable @typescript-eslint/no-explicit-any */
// Globals of the pages under test. Only code passed to page.evaluate/waitForFunction uses them:
// it is serialised and runs inside Chromium, never in Node.
declare const RED: any;
declare const $: any;
declare const window: any;
declare const document: any;
declare const Image: any;
