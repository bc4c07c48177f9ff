import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { tfjsNodeMissing } from '../../lib/models/runtime/tfjs';
import { chosenTfjsSource } from '../../lib/models/runtime/tfjs-source';

const ROOT = path.resolve(__dirname, '..', '..', '..');
const PACKAGE = 'node-red-contrib-edge-ai';

/** Directory of an installed package, found from the checkout the way Node finds it. */
function installedDir(name: string): string {
  return path.dirname(require.resolve(`${name}/package.json`, { paths: [ROOT] }));
}

/**
 * The fixture's @tensorflow/tfjs-node. It is a test fixture of this package's TF.js resolution,
 * not a stand-in for the feature: the real package cannot be installed here (its install
 * downloads libtensorflow). Like the real one, it loads the @tensorflow/tfjs-core installed
 * beside it and registers a backend named 'tensorflow' on it; the backend is TF.js's own CPU
 * backend (from the @tensorflow/tfjs-backend-cpu beside it) with its kernels registered under
 * that name, so models really run on it.
 */
// (The package names are spliced in so that the build, which points this compiled file's
// requires of TF.js at dist/vendor, leaves the fixture's own requires alone.)
const CORE = '@tensorflow/tfjs-core';
const CPU = '@tensorflow/tfjs-backend-cpu';
const FAKE_TFJS_NODE = `'use strict';
const tf = require('${CORE}');
const cpu = require('${CPU}');
tf.registerBackend('tensorflow', () => new cpu.MathBackendCPU(), 3);
for (const kernel of tf.getKernelsForBackend('cpu')) tf.registerKernel({ ...kernel, backendName: 'tensorflow' });
globalThis.fixtureTfjsNodeLoaded = true;
`;

/**
 * In a fresh Node process: loads the package installed in `userDir`, starts TF.js's default
 * backend, runs one model on tfjs-node, tfjs-cpu and tfjs-wasm, and reports what ran where and
 * which TF.js files Node loaded.
 */
function runIn(userDir: string): Promise<Report> {
  const pkg = path.join(userDir, 'node_modules', PACKAGE);
  const script = `
    const { models, train } = require(${JSON.stringify(pkg)});
    (async () => {
      const backend = await models.useBackend();
      const missing = models.tfjsNodeMissing();
      const model = train.buildModel('dense-classifier', { inputShape: [6], outputSize: 3, units: [16], seed: 7 });
      const files = { format: 'tfjs-layers', entryPath: 'model.json', bytes: 0, notes: [], quantized: {},
        artifacts: await models.modelArtifacts(model) };
      model.dispose();
      const input = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i + 1));
      const runs = {};
      for (const runtime of ['tfjs-node', 'tfjs-cpu', 'tfjs-wasm']) {
        const { runner, fallbackReason } = await models.createRunner(files, { runtime });
        runs[runtime] = { ran: runner.runtime, fallbackReason, output: Array.from(await runner.predict(input, 2)) };
        await runner.dispose();
      }
      const loaded = Object.keys(require.cache).filter((f) => f.includes('@tensorflow'));
      console.log(JSON.stringify({ backend, missing, runs, loaded, fixtureLoaded: globalThis.fixtureTfjsNodeLoaded === true }));
    })().catch((err) => { console.error(err); process.exit(3); });
  `;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { cwd: userDir, timeout: 90000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stdout}${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Report);
    });
  });
}

interface Report {
  backend: string;
  missing?: string;
  runs: Record<string, { ran: string; fallbackReason?: string; output: number[] }>;
  loaded: string[];
  fixtureLoaded: boolean;
}

function maxDiff(a: number[], b: number[]): number {
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

describe("TF.js from the user's @tensorflow/tfjs-node install, when there is one (tfjs-source)", function () {
  this.timeout(180000);
  let userDir: string;
  let modules: string;
  let vendor: string;

  before(function () {
    const dist = path.join(ROOT, 'dist');
    if (!fs.existsSync(path.join(dist, 'vendor', '@tensorflow', 'tfjs-core', 'index.js'))) {
      console.log('      skipped: dist/vendor is not built (npm run build)');
      this.skip();
    }
    // A Node-RED user directory with this package installed (its files copied, its dependencies
    // linked from the checkout) and @tensorflow/tfjs-node beside it.
    userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-tfjs-node-'));
    modules = path.join(userDir, 'node_modules');
    const pkg = path.join(modules, PACKAGE);
    for (const part of ['lib', 'vendor']) {
      fs.cpSync(path.join(dist, part), path.join(pkg, 'dist', part), { recursive: true });
    }
    fs.copyFileSync(path.join(ROOT, 'package.json'), path.join(pkg, 'package.json'));
    fs.symlinkSync(path.dirname(installedDir('protobufjs')), path.join(pkg, 'node_modules'), 'dir');
    vendor = path.join(fs.realpathSync(pkg), 'dist', 'vendor') + path.sep;
    const fake = path.join(modules, '@tensorflow', 'tfjs-node');
    fs.mkdirSync(fake, { recursive: true });
    fs.writeFileSync(
      path.join(fake, 'package.json'),
      JSON.stringify({ name: '@tensorflow/tfjs-node', version: '4.22.0', main: 'index.js' }),
    );
    fs.writeFileSync(path.join(fake, 'index.js'), FAKE_TFJS_NODE);
    for (const name of ['tfjs-backend-cpu', 'tfjs-layers', 'tfjs-converter']) {
      fs.symlinkSync(installedDir(`@tensorflow/${name}`), path.join(modules, '@tensorflow', name), 'dir');
    }
  });
  after(() => {
    if (userDir) fs.rmSync(userDir, { recursive: true, force: true });
  });

  /** The user's @tensorflow/tfjs-core: the real one, or a package claiming another version. */
  function installCore(version?: string): void {
    const core = path.join(modules, '@tensorflow', 'tfjs-core');
    fs.rmSync(core, { recursive: true, force: true });
    if (version === undefined) {
      fs.symlinkSync(installedDir('@tensorflow/tfjs-core'), core, 'dir');
      return;
    }
    fs.mkdirSync(core);
    fs.writeFileSync(
      path.join(core, 'package.json'),
      JSON.stringify({ name: '@tensorflow/tfjs-core', version, main: 'index.js' }),
    );
    fs.writeFileSync(path.join(core, 'index.js'), "throw new Error('this tfjs-core must not be loaded');\n");
  }

  it("runs on tfjs-node's backend, with one TF.js engine: the user's core, CPU backend, layers and converter", async () => {
    installCore();
    const got = await runIn(userDir);
    assert.equal(got.fixtureLoaded, true, got.missing);
    assert.equal(got.backend, 'tensorflow', 'the default backend order starts with tfjs-node');
    assert.equal(got.missing, undefined);
    assert.equal(got.runs['tfjs-node'].ran, 'tfjs-node');
    assert.equal(got.runs['tfjs-node'].fallbackReason, undefined);
    assert.equal(got.runs['tfjs-cpu'].ran, 'tfjs-cpu');
    // The package's WebAssembly backend registers on the user's tfjs-core too.
    assert.equal(got.runs['tfjs-wasm'].ran, 'tfjs-wasm');
    const reference = got.runs['tfjs-cpu'].output;
    assert.equal(reference.length, 6);
    assert.ok(maxDiff(got.runs['tfjs-node'].output, reference) < 1e-6);
    assert.ok(maxDiff(got.runs['tfjs-wasm'].output, reference) < 1e-4);

    const userCore = fs.realpathSync(
      path.join(installedDir('@tensorflow/tfjs-core'), 'dist', 'tf-core.node.js'),
    );
    assert.ok(got.loaded.includes(userCore), `the user's tfjs-core is loaded: ${got.loaded.join(', ')}`);
    const fromVendor = got.loaded.filter((f) => f.startsWith(vendor) && !f.endsWith('index.js'));
    assert.deepEqual(
      fromVendor.map((f) => path.relative(vendor, f).split(path.sep).join('/')),
      ['@tensorflow/tfjs-backend-wasm/dist/tf-backend-wasm.node.js'],
      'of the copies shipped in dist/vendor only the WebAssembly backend (the user has none) is loaded',
    );
  });

  it("a tfjs-node that does not load (its native library missing): wasm on the user's TF.js, and why", async () => {
    installCore();
    const fake = path.join(modules, '@tensorflow', 'tfjs-node', 'index.js');
    // As the real package fails when its install could not fetch libtensorflow: TF.js loads, the binding does not.
    fs.writeFileSync(
      fake,
      `require('${CORE}');\nthrow new Error('libtensorflow.so.2: cannot open shared object file');\n`,
    );
    try {
      const got = await runIn(userDir);
      assert.equal(got.backend, 'wasm');
      assert.match(String(got.missing), /tfjs-node does not load here: .*libtensorflow\.so\.2/);
      assert.equal(got.runs['tfjs-node'].ran, 'tfjs-wasm');
      assert.equal(got.runs['tfjs-cpu'].ran, 'tfjs-cpu');
      assert.ok(maxDiff(got.runs['tfjs-wasm'].output, got.runs['tfjs-cpu'].output) < 1e-4);
      assert.ok(
        !got.loaded.some((f) => f === path.join(vendor, '@tensorflow/tfjs-core/dist/tf-core.node.js')),
      );
    } finally {
      fs.writeFileSync(fake, FAKE_TFJS_NODE);
    }
  });

  it('another TF.js version beside tfjs-node: runs on its own copies and says why', async () => {
    installCore('4.21.0');
    const got = await runIn(userDir);
    assert.equal(got.fixtureLoaded, false, 'tfjs-node is not loaded for nothing');
    assert.equal(got.backend, 'wasm');
    assert.match(String(got.missing), /runs on @tensorflow\/tfjs-core 4\.21\.0, this package on 4\.22\.0/);
    assert.equal(got.runs['tfjs-node'].ran, 'tfjs-wasm');
    assert.match(String(got.runs['tfjs-node'].fallbackReason), /tfjs-node could not start \(.*4\.21\.0/);
    const outside = got.loaded.filter((f) => !f.startsWith(vendor));
    assert.deepEqual(outside, [], 'every TF.js module from dist/vendor');
  });

  it('no tfjs-node (this checkout): the copies in dist/vendor, and the reason', () => {
    assert.equal(tfjsNodeMissing(), '@tensorflow/tfjs-node is not installed');
    assert.deepEqual(chosenTfjsSource()?.modules, {});
  });
});
