import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const SCRIPT = path.join(ROOT, 'scripts', 'vendor-runtime.mjs');

interface Vendored {
  name: string;
  files: string[];
  userCopy?: boolean;
}

/** Runs the build's copy and link steps (an ES module) on a checkout laid out under `root`. */
function vendor(root: string, list: Vendored[]): { ok: boolean; out: string } {
  const code = `
    import { copyVendored, linkVendored } from ${JSON.stringify(pathToFileURL(SCRIPT).href)};
    const [root, list] = JSON.parse(process.argv[1]);
    const dist = root + '/dist';
    copyVendored(root, dist, list);
    console.log('linked ' + linkVendored(dist, new Set(list.map((v) => v.name))));`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', code, JSON.stringify([root, list])], {
    encoding: 'utf8',
  });
  return { ok: run.status === 0, out: `${run.stdout}${run.stderr}` };
}

function write(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, text);
}

/**
 * A checkout with two published packages in node_modules, @x/core and @x/layers (which requires
 * @x/core), each with more files than Node loads, and a compiled file that requires @x/layers.
 */
function checkout(
  options: { ownDeps?: Record<string, string>; coreRequires?: string; corePins?: string } = {},
) {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-vendor-'));
  write(
    path.join(root, 'package.json'),
    JSON.stringify({
      name: 'app',
      dependencies: options.ownDeps ?? { dep: '1.2.3' },
      devDependencies: { '@x/core': '1', '@x/layers': '1' },
    }),
  );
  const mods = path.join(root, 'node_modules');
  write(
    path.join(mods, '@x/core/package.json'),
    JSON.stringify({
      name: '@x/core',
      version: '1.0.0',
      license: 'MIT',
      main: 'dist/core.node.js',
      dependencies: { dep: options.corePins ?? '^1.0.0' },
    }),
  );
  write(
    path.join(mods, '@x/core/dist/core.node.js'),
    `const fs = require('node:fs'); const dep = require('${options.coreRequires ?? 'dep'}');\n` +
      `// var xor4096 = require('xor4096');\nmodule.exports = { answer: 40 + dep.two };\n`,
  );
  write(path.join(mods, '@x/core/dist/core.esm.js'), 'export const answer = 0;\n');
  write(path.join(mods, '@x/core/dist/core.node.js.map'), '{}');
  write(
    path.join(mods, '@x/layers/package.json'),
    JSON.stringify({
      name: '@x/layers',
      version: '1.0.0',
      license: 'Apache-2.0',
      exports: { '.': { node: { require: './dist/layers.node.js' }, import: './dist/layers.mjs' } },
    }),
  );
  write(
    path.join(mods, '@x/layers/dist/layers.node.js'),
    `const core = require("@x/core");\nmodule.exports = { answer: core.answer + 1 };\n`,
  );
  write(path.join(mods, '@x/layers/dist/layers.wasm'), '\0asm');
  write(path.join(mods, 'dep/index.js'), 'module.exports = { two: 2 };\n');
  write(
    path.join(root, 'dist/lib/models/a.js'),
    `const layers = require("@x/layers");\nmodule.exports = layers.answer;\n`,
  );
  return root;
}

const LIST: Vendored[] = [
  { name: '@x/core', files: ['dist/core.node.js'] },
  { name: '@x/layers', files: ['dist/layers.node.js', 'dist/layers.wasm'] },
];

function filesUnder(dir: string): string[] {
  return (fs.readdirSync(dir, { recursive: true }) as string[])
    .filter((f) => fs.statSync(path.join(dir, f)).isFile())
    .map((f) => f.split(path.sep).join('/'))
    .sort();
}

describe('the build ships the Node files of TF.js and onnxruntime-web (scripts/vendor-runtime.mjs)', function () {
  this.timeout(30000);
  const roots: string[] = [];
  after(() => {
    for (const root of roots) fs.rmSync(root, { recursive: true, force: true });
  });
  function make(options?: Parameters<typeof checkout>[0]): string {
    const root = checkout(options);
    roots.push(root);
    return root;
  }

  it('copies only the files Node loads, and the compiled code and the copies require the copies', () => {
    const root = make();
    const result = vendor(root, LIST);
    assert.ok(result.ok, result.out);
    assert.match(result.out, /linked 1/);
    assert.deepEqual(filesUnder(path.join(root, 'dist/vendor')), [
      '@x/core/dist/core.node.js',
      '@x/core/package.json',
      '@x/layers/dist/layers.node.js',
      '@x/layers/dist/layers.wasm',
      '@x/layers/package.json',
      'LICENSES.md',
    ]);
    assert.match(
      fs.readFileSync(path.join(root, 'dist/lib/models/a.js'), 'utf8'),
      /require\("\.\.\/\.\.\/vendor\/@x\/layers"\)/,
    );
    // The originals change after the build: the compiled code still runs the copies.
    write(path.join(root, 'node_modules/@x/core/dist/core.node.js'), 'module.exports = { answer: 0 };\n');
    write(path.join(root, 'node_modules/@x/layers/dist/layers.node.js'), 'module.exports = { answer: 0 };\n');
    assert.equal(require(path.join(root, 'dist/lib/models/a.js')), 43);
    const notice = fs.readFileSync(path.join(root, 'dist/vendor/LICENSES.md'), 'utf8');
    assert.match(notice, /\| @x\/core \| 1\.0\.0 \| MIT \|/);
    assert.match(notice, /\| @x\/layers \| 1\.0\.0 \| Apache-2\.0 \|/);
  });

  it("gives a userCopy package an entry that takes the user's copy when tfjs-source finds one", () => {
    const list = [{ ...LIST[0], userCopy: true }, LIST[1]];
    const answers = [];
    for (const user of [undefined, { answer: 100 }]) {
      const root = make();
      // tfjs-source's answer: no user copy, or the user's @x/core.
      write(
        path.join(root, 'dist/lib/models/runtime/tfjs-source.js'),
        `exports.userTfjsModule = (name, version) => name === '@x/core' && version === '1.0.0' ? ${JSON.stringify(user)} : undefined;\n`,
      );
      const result = vendor(root, list);
      assert.ok(result.ok, result.out);
      const meta = JSON.parse(fs.readFileSync(path.join(root, 'dist/vendor/@x/core/package.json'), 'utf8'));
      assert.equal(meta.main, 'index.js');
      // @x/layers requires @x/core through that entry too.
      answers.push(require(path.join(root, 'dist/lib/models/a.js')) as number);
    }
    assert.deepEqual(answers, [43, 101]);
  });

  it('fails the build when the userCopy packages differ in version, or tfjs-source is not compiled', () => {
    const root = make();
    write(
      path.join(root, 'dist/lib/models/runtime/tfjs-source.js'),
      'exports.userTfjsModule = () => undefined;\n',
    );
    const pkg = path.join(root, 'node_modules/@x/layers/package.json');
    fs.writeFileSync(pkg, JSON.stringify({ ...JSON.parse(fs.readFileSync(pkg, 'utf8')), version: '1.1.0' }));
    const both = LIST.map((v) => ({ ...v, userCopy: true }));
    const result = vendor(root, both);
    assert.ok(!result.ok);
    assert.match(result.out, /the TF\.js packages differ in version \(1\.0\.0, 1\.1\.0\)/);
    const missing = vendor(make(), both);
    assert.ok(!missing.ok);
    assert.match(missing.out, /tfjs-source\.js \(compiled\) is missing/);
  });

  it('fails the build when a package loads another entry on Node than the one listed', () => {
    const result = vendor(make(), [{ name: '@x/core', files: ['dist/core.esm.js'] }]);
    assert.ok(!result.ok);
    assert.match(result.out, /@x\/core@1\.0\.0 loads dist\/core\.node\.js on Node, not dist\/core\.esm\.js/);
  });

  it('fails the build when a copied file requires a module the package does not depend on', () => {
    const result = vendor(make({ coreRequires: 'left-pad' }), LIST);
    assert.ok(!result.ok);
    assert.match(result.out, /@x\/core\/dist\/core\.node\.js requires left-pad, which is not a dependency/);
  });

  it('fails the build when a dependency the copied package pins exactly is pinned differently here', () => {
    const result = vendor(make({ corePins: '1.2.4' }), LIST);
    assert.ok(!result.ok);
    assert.match(result.out, /needs dep 1\.2\.4; package\.json has 1\.2\.3/);
  });

  it('fails the build when a copied package is a runtime dependency (users would install it whole)', () => {
    const root = make();
    const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
    delete pkg.devDependencies['@x/core'];
    pkg.dependencies['@x/core'] = '1';
    fs.writeFileSync(path.join(root, 'package.json'), JSON.stringify(pkg));
    const result = vendor(root, LIST);
    assert.ok(!result.ok);
    assert.match(result.out, /@x\/core must be a devDependency/);
  });
});
