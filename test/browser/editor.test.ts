// The package in the real Node-RED editor: palette, icons, edit dialogs and their validators.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import type { Page } from 'playwright-core';
import {
  artifactPath,
  Browser,
  NodeRedProcess,
  openEditor,
  packageInfo,
  PALETTE_CATEGORY,
  REPO_ROOT,
  requireChromium,
} from './harness';

const pkg = packageInfo();
const packageTypes = pkg.sets.flatMap((s) => s.types);

describe('package manifest', function () {
  it('every node set package.json lists has its runtime and editor files', function () {
    const missing = pkg.sets.flatMap((s) => s.missing.map((f) => `${s.set}: ${f}`));
    assert.deepEqual(
      missing,
      [],
      `package.json "node-red".nodes names files that do not exist:\n${missing.join('\n')}`,
    );
  });

  it('help lives in each node locale folder (locales/en-US/<type>.html), as in Node-RED core', function () {
    const problems = pkg.sets.flatMap((s) => {
      const dir = path.dirname(s.html);
      return s.types.flatMap((type) => {
        const p: string[] = [];
        const locale = path.join(REPO_ROOT, dir, 'locales', 'en-US', `${type}.html`);
        if (!fs.existsSync(locale)) p.push(`${type}: no ${path.relative(REPO_ROOT, locale)}`);
        else if (!fs.readFileSync(locale, 'utf8').includes(`data-help-name="${type}"`))
          p.push(`${type}: its locale help has no data-help-name="${type}"`);
        if (fs.readFileSync(path.join(REPO_ROOT, s.html), 'utf8').includes('data-help-name'))
          p.push(`${type}: help still in ${s.html}`);
        return p;
      });
    });
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  it('every editor file registers at least one node type', function () {
    const empty = pkg.sets.filter((s) => s.missing.length === 0 && s.types.length === 0).map((s) => s.html);
    assert.deepEqual(empty, [], `no RED.nodes.registerType(...) in ${empty.join(', ')}`);
  });
});

describe('editor in Chromium', function () {
  this.timeout(120_000);
  let red: NodeRedProcess;
  let browser: Browser;
  let page: Page;

  before(async function () {
    requireChromium(this);
    red = await NodeRedProcess.start();
    browser = await Browser.launch();
    page = await browser.newPage();
    await openEditor(page, red);
  });

  after(async function () {
    await browser?.close();
    await red?.stop();
  });

  it('the runtime loads every node set of the package without error', async function () {
    const sets = (await red.api('GET', 'nodes')) as {
      module: string;
      name: string;
      enabled: boolean;
      loaded: boolean;
      err?: string | { message?: string; code?: string };
      types: string[];
    }[];
    const ours = new Map(sets.filter((s) => s.module === pkg.name).map((s) => [s.name, s]));
    const problems = pkg.sets.flatMap((s) => {
      const loaded = ours.get(s.set);
      if (!loaded) return [`${s.set}: not registered by the runtime`];
      if (loaded.err) {
        const logged = red.output.find((l) => l.includes(`[${pkg.name}/${s.set}]`));
        const err = typeof loaded.err === 'string' ? loaded.err : (loaded.err.message ?? loaded.err.code);
        return [`${s.set}: ${logged ?? err}`];
      }
      if (!loaded.enabled) return [`${s.set}: disabled`];
      const absent = s.types.filter((t) => !loaded.types.includes(t));
      return absent.length ? [`${s.set}: types ${absent.join(', ')} not registered at runtime`] : [];
    });
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  it(`the palette shows every node under "${PALETTE_CATEGORY}" with its icon`, async function () {
    const entries = (await page.evaluate(
      async ({ types, module }) => {
        const loadImage = (url: string) =>
          new Promise<{ width: number; error?: string }>((resolve) => {
            const img = new Image();
            img.onload = () => resolve({ width: img.naturalWidth });
            img.onerror = () => resolve({ width: 0, error: 'failed to load' });
            img.src = url;
          });
        const out = [];
        for (const type of types) {
          const def = RED.nodes.getType(type);
          if (!def) {
            out.push({ type, problem: 'not registered in the editor' });
            continue;
          }
          const paletteLabel: string =
            typeof def.paletteLabel === 'function' ? def.paletteLabel.call(def) : (def.paletteLabel ?? type);
          if (def.category === 'config') {
            out.push({ type, config: true, paletteLabel });
            continue;
          }
          const el = $(`.red-ui-palette-node[data-palette-type="${type}"]`);
          const iconUrl: string = RED.utils.getNodeIcon(def);
          const background: string = el.find('.red-ui-palette-icon').css('background-image') || '';
          const image = await loadImage(iconUrl);
          out.push({
            type,
            inPalette: el.length === 1,
            visible: el.is(':visible'),
            category: el.closest('.red-ui-palette-category').data('category'),
            iconUrl,
            paletteLabel,
            // The palette breaks a long label into lines: compare the words.
            shownLabel: el.find('.red-ui-palette-label').text().replace(/\s+/g, ' ').trim(),
            fromPackage: iconUrl.includes(`icons/${module}/`),
            shown: background.includes(iconUrl.replace(/^.*?icons\//, 'icons/')),
            ...image,
          });
        }
        return out;
      },
      { types: packageTypes, module: pkg.name },
    )) as Record<string, unknown>[];

    const problems = entries.flatMap((e) => {
      if (e.problem) return [`${e.type}: ${e.problem}`];
      // One style: lower-case words from the catalog, "edge-model-loader" -> "edge model loader".
      const label = (e.type as string).replace(/-/g, ' ');
      if (e.paletteLabel !== label)
        return [`${e.type}: palette label "${e.paletteLabel}", expected "${label}"`];
      if (e.config) return [];
      const p: string[] = [];
      if (e.shownLabel !== label) p.push(`palette shows "${e.shownLabel}"`);
      if (!e.inPalette) p.push('not in the palette');
      if (e.category !== PALETTE_CATEGORY) p.push(`category "${e.category}"`);
      if (!e.fromPackage) p.push(`icon ${e.iconUrl} is not one of the package's icons`);
      if (!e.shown) p.push(`palette entry does not show ${e.iconUrl}`);
      if (!((e.width as number) > 0)) p.push(`icon ${e.iconUrl} does not load (${e.error ?? 'no width'})`);
      return p.map((x) => `${e.type}: ${x}`);
    });
    assert.deepEqual(problems, [], problems.join('\n'));

    const category = page.locator('.red-ui-palette-category').filter({
      has: page.locator('.red-ui-palette-header', { hasText: PALETTE_CATEGORY }),
    });
    if ((await category.count()) === 1) {
      await category.scrollIntoViewIfNeeded();
      await category.screenshot({ path: artifactPath('palette.png') });
    }
    assert.deepEqual(browser.problemsSince(0), [], 'console errors while loading the editor');
  });

  it('every node has help in the help sidebar: summary, inputs, outputs, details', async function () {
    const problems: string[] = [];
    for (const type of packageTypes) {
      // What the book button of a palette entry or the info panel does.
      await page.evaluate((t) => RED.sidebar.help.show(t), type);
      await page
        .waitForFunction(
          () => $('.red-ui-help:visible h3').length > 0 || $('.red-ui-help:visible p').length > 0,
          undefined,
          {
            timeout: 5_000,
          },
        )
        .catch(() => undefined);
      const help = (await page.evaluate((t) => {
        const def = RED.nodes.getType(t);
        const root = $('.red-ui-help:visible').first();
        const section = (title: string) => {
          const h3 = root
            .find('h3')
            .filter((_: number, e: HTMLElement) => $(e).text().trim().toLowerCase() === title);
          return h3.length === 0 ? null : h3.first().nextUntil('h3');
        };
        const inputs = section('inputs');
        const outputs = section('outputs');
        const summary = root.find('h3').length ? root.find('h3').first().prevAll('p') : root.find('p');
        return {
          needsInputs: (def?.inputs ?? 0) > 0,
          needsOutputs: (def?.outputs ?? 0) > 0,
          summary: summary.text().trim().length > 0,
          // One list, or one per port inside <ol class="node-ports">.
          inputs: inputs
            ? inputs.find('dl.message-properties').addBack('dl.message-properties').length > 0
            : null,
          outputs: outputs
            ? outputs.find('dl.message-properties').addBack('dl.message-properties').length > 0
            : null,
          details: !!section('details'),
        };
      }, type)) as Record<string, boolean | null>;
      if (!help.summary) problems.push(`${type}: no summary paragraph before the first heading`);
      if (help.needsInputs && !help.inputs)
        problems.push(`${type}: no "Inputs" heading with a message-properties list`);
      if (help.needsOutputs && !help.outputs)
        problems.push(`${type}: no "Outputs" heading with a message-properties list`);
      if (!help.details) problems.push(`${type}: no "Details" heading`);
    }
    await page.screenshot({ path: artifactPath('help-sidebar.png') });
    assert.deepEqual(problems, [], problems.join('\n'));
  });

  for (const type of packageTypes) {
    it(`${type}: the edit dialog flags a bad value, saves a good one, without console errors`, async function () {
      const from = browser.problems.length;
      const isConfig = await page.evaluate((t) => RED.nodes.getType(t)?.category === 'config', type);
      const prefix = isConfig ? 'node-config-input' : 'node-input';
      const okButton = page.locator(isConfig ? '#node-config-dialog-ok' : '#node-dialog-ok');
      let nodeId: string | undefined;
      if (isConfig) {
        // Config nodes have no palette entry; the editor opens them from a user node's dialog.
        await page.evaluate((t) => RED.editor.editConfig('', t, '_ADD_', 'node-input'), type);
      } else {
        nodeId = await dragFromPalette(page, type);
        await page.locator(`[id="${nodeId}"] .red-ui-flow-node`).first().dblclick();
      }
      await okButton.waitFor({ state: 'visible' });
      await page.waitForTimeout(300); // the tray slides in and runs oneditprepare

      const fields = await editableFields(page, type, prefix);
      const checked: { prop: string; good: string }[] = [];
      const problems: string[] = [];
      for (const { prop } of fields) {
        // Test values are chosen against the form as it is now: a validator may read other fields.
        const [f] = await editableFields(page, type, prefix, prop);
        if (f.bad === undefined) continue;
        await setField(page, f, f.bad);
        if (!(await fieldFlagged(page, f))) {
          problems.push(`${f.prop}: bad value ${JSON.stringify(f.bad)} not flagged`);
          continue;
        }
        // The editor shows the validator's reason; it must be translated text, not a catalog key.
        if (f.reason !== undefined && (f.reason === '' || /^edge-[\w-]+\.[\w.]+$/.test(f.reason)))
          problems.push(`${f.prop}: bad value gives no translated reason (${JSON.stringify(f.reason)})`);
        if (checked.length === 0 && !isConfig)
          await page.screenshot({ path: artifactPath(`edit-dialog-${type}.png`) });
        if (f.good === undefined) {
          problems.push(
            `${f.prop}: no valid value found (the default ${JSON.stringify(f.current)} is rejected)`,
          );
          continue;
        }
        await setField(page, f, f.good);
        if (await fieldFlagged(page, f))
          problems.push(`${f.prop}: good value ${JSON.stringify(f.good)} flagged`);
        else checked.push({ prop: f.prop, good: f.good });
      }
      await okButton.click();
      await okButton.waitFor({ state: 'detached' });

      assert.deepEqual(problems, [], `${type}:\n${problems.join('\n')}`);
      assert.ok(
        checked.length > 0,
        `${type}: no field of the edit dialog rejects a bad value (fields: ${fields.map((f) => f.prop).join(', ') || 'none'}); ` +
          'give its defaults validators',
      );
      const saved = (await page.evaluate(
        ({ t, id, props }) => {
          let node = id ? RED.nodes.node(id) : undefined;
          if (!id) RED.nodes.eachConfig((n: { type: string }) => void (n.type === t && (node = n)));
          if (!node) return null;
          const out: Record<string, unknown> = {};
          for (const p of props) out[p] = node[p];
          return out;
        },
        { t: type, id: nodeId, props: checked.map((c) => c.prop) },
      )) as Record<string, unknown> | null;
      assert.ok(saved, `${type}: the node is gone after Done`);
      for (const c of checked) assert.equal(String(saved[c.prop]), c.good, `${type}.${c.prop} was not saved`);
      assert.deepEqual(browser.problemsSince(from), [], `${type}: console errors while editing`);
    });
  }

  it('server error texts in notifications are shown as text, never run as HTML', async function () {
    // A config value from an imported flow can come back in the server's error text.
    const payload = '<img src=x onerror="window.__edgeXss=1">';
    await page.route('**/edge-normalise/*/stats', (route) =>
      route.fulfill({
        status: 400,
        contentType: 'application/json',
        body: JSON.stringify({ error: `unknown statistics source "${payload}"` }),
      }),
    );
    try {
      await page.evaluate(() => {
        const def = RED.nodes.getType('edge-normalise');
        def.button.onclick.call({ id: 'xss-probe', type: 'edge-normalise', changed: false, _: def._ });
      });
      const shown = await page.waitForFunction(
        () =>
          $('.red-ui-notification').filter(':contains("unknown statistics source")').last().text() || false,
        undefined,
        { timeout: 10_000 },
      );
      assert.match(String(await shown.jsonValue()), /unknown statistics source "<img src=x onerror=/);
      await page.waitForTimeout(300);
      const ran = await page.evaluate(() => ({
        xss: (window as unknown as { __edgeXss?: number }).__edgeXss,
        images: $('.red-ui-notification img').length,
      }));
      assert.deepEqual(ran, { xss: undefined, images: 0 });
    } finally {
      // The notification closes itself; removing it here would break Node-RED's own fade-out.
      await page.unroute('**/edge-normalise/*/stats');
    }
  });
});

interface EditableField {
  prop: string;
  selector: string;
  typed: boolean;
  visible: boolean;
  current: string;
  bad?: string;
  /** What the validator answers for the bad value, when it has a validator. */
  reason?: string;
  good?: string;
}

// Tried in order; the first the node's own validators reject is the bad value, the first
// other one they accept (after numbers near the current value) is the good value.
const BAD_CANDIDATES = ['-1', 'not a number', '0', '-0.5', '1e12', '99999999', '3.7', '{', '#$%', 'x', ''];
const GOOD_CANDIDATES = ['2', '5', '10', '1', '0.5', '100', '3', '0.1', 'sensor-1', 'abc', 'temperature'];

/** The dialog's text inputs backed by a validated or required default (or just `only`), with test values. */
async function editableFields(
  page: Page,
  type: string,
  prefix: string,
  only?: string,
): Promise<EditableField[]> {
  return page.evaluate(
    ({ type, prefix, only, badCandidates, goodCandidates }) => {
      const def = RED.nodes.getType(type);
      const node = RED.editor.getEditStack().slice(-1)[0];
      const fields = [];
      for (const [prop, spec] of Object.entries<Record<string, unknown>>(def.defaults ?? {})) {
        if (only !== undefined && prop !== only) continue;
        if (spec.type) continue; // a config node reference: a select, not a value
        if (typeof spec.validate !== 'function' && !spec.required) continue;
        const input = $(`#${prefix}-${prop}`);
        if (input.length !== 1 || !input.is('input') || input.attr('type') === 'checkbox') continue;
        // The editor's own rule: required means not empty; a validator may also return a reason string.
        const valid = (v: string) => {
          if (spec.required && v === '') return false;
          if (typeof spec.validate !== 'function') return true;
          if (spec.required === false && v === '') return true;
          try {
            const r = (spec.validate as (v: string, o: object) => unknown).call(node, v, {});
            return r === true || (typeof r !== 'string' && !Array.isArray(r) && !!r);
          } catch {
            return false;
          }
        };
        // A number input takes only what a user can type into it.
        const typeable = (v: string) =>
          input.attr('type') !== 'number' || v === '' || Number.isFinite(Number(v));
        const typed = input.next('.red-ui-typedInput-container').length === 1;
        const current = String(typed ? input.typedInput('value') : input.val());
        // Numbers near the current one first, so the form stays sensible for fields that depend on it.
        const n = Number(current);
        const near =
          current.trim() !== '' && Number.isFinite(n)
            ? [n * 2, n / 2, n + 1, n - 1].map((x) => String(Number(x.toPrecision(6))))
            : [];
        const good =
          [...near, ...goodCandidates].find((v: string) => v !== current && typeable(v) && valid(v)) ??
          (valid(current) ? current : undefined);
        const bad = badCandidates.find((v: string) => typeable(v) && !valid(v));
        fields.push({
          prop,
          selector: `#${prefix}-${prop}`,
          typed,
          visible: typed ? input.next('.red-ui-typedInput-container').is(':visible') : input.is(':visible'),
          current,
          bad,
          reason:
            bad !== undefined && typeof spec.validate === 'function' && !(spec.required && bad === '')
              ? String((spec.validate as (v: string, o: object) => unknown).call(node, bad, {}))
              : undefined,
          good,
        });
      }
      return fields;
    },
    { type, prefix, only, badCandidates: BAD_CANDIDATES, goodCandidates: GOOD_CANDIDATES },
  );
}

/** Types into a visible plain input like a user; hidden or typed inputs go through their widget. */
async function setField(page: Page, field: EditableField, value: string): Promise<void> {
  if (field.visible && !field.typed) {
    const input = page.locator(field.selector);
    await input.fill(value);
    await input.dispatchEvent('change');
  } else {
    await page.evaluate(
      ({ selector, typed, value }) => {
        const input = $(selector);
        if (typed) input.typedInput('value', value);
        else input.val(value);
        input.trigger('change');
      },
      { selector: field.selector, typed: field.typed, value },
    );
  }
}

async function fieldFlagged(page: Page, field: EditableField): Promise<boolean> {
  return page.evaluate((selector) => {
    const input = $(selector);
    return (
      input.hasClass('input-error') || input.next('.red-ui-typedInput-container').hasClass('input-error')
    );
  }, field.selector);
}

/** Drags a palette entry onto the workspace with the mouse; returns the new node's id. */
async function dragFromPalette(page: Page, type: string): Promise<string> {
  const before = (await page.evaluate(
    (t) => RED.nodes.filterNodes({ type: t }).map((n: { id: string }) => n.id),
    type,
  )) as string[];
  const entry = page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
  await entry.scrollIntoViewIfNeeded();
  const from = await entry.boundingBox();
  const chart = await page.locator('#red-ui-workspace-chart').boundingBox();
  assert.ok(from && chart, `${type}: palette entry or workspace not on screen`);
  await page.mouse.move(from.x + from.width / 2, from.y + from.height / 2);
  await page.mouse.down();
  const offset = before.length * 40 + 60 * packageTypes.indexOf(type);
  await page.mouse.move(chart.x + 250, chart.y + 80 + offset, { steps: 12 });
  await page.mouse.up();
  const handle = await page.waitForFunction(
    ({ t, before }) =>
      RED.nodes.filterNodes({ type: t }).find((n: { id: string }) => !before.includes(n.id))?.id,
    { t: type, before },
    { timeout: 5_000 },
  );
  return (await handle.jsonValue()) as string;
}
