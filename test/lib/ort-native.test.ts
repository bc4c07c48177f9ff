import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { nativeOrtMissing } from '../../lib/models/runtime/ort-session';
import { onnxMlp } from '../fixtures/onnx-fixtures';

const DIST = path.resolve(__dirname, '..', '..');

/**
 * Runs a fresh Node process in which `require('onnxruntime-node')` resolves to `fake` (or is not
 * installed when `fake` is undefined), loads an ONNX model through a ModelHandle and reports
 * what it ran on. The process surviving at all is part of the answer.
 */
async function loadWithNative(dir: string, fake: string | undefined): Promise<Record<string, unknown>> {
  const model = path.join(dir, 'model.onnx');
  await fs.writeFile(model, onnxMlp().bytes);
  const script = `
    const Module = require('node:module');
    const resolve = Module._resolveFilename;
    Module._resolveFilename = function (request, ...rest) {
      if (request === 'onnxruntime-node') {
        ${
          fake === undefined
            ? `throw Object.assign(new Error("Cannot find module 'onnxruntime-node'"), { code: 'MODULE_NOT_FOUND' });`
            : `return ${JSON.stringify(fake)};`
        }
      }
      return resolve.call(this, request, ...rest);
    };
    const { ModelHandle } = require(${JSON.stringify(path.join(DIST, 'lib/models/serve/model-handle.js'))});
    (async () => {
      const handle = new ModelHandle({ userDir: ${JSON.stringify(dir)}, warmup: 1 });
      const info = await handle.load(${JSON.stringify(model)});
      const { output: out } = await handle.predict(new Float32Array(4), 1);
      await handle.close();
      console.log(JSON.stringify({ runtime: info.runtime, noNative: info.noNative, outputs: out.length }));
    })().catch((err) => { console.error(err); process.exit(3); });
  `;
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', script], { timeout: 60000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as Record<string, unknown>);
    });
  });
}

describe('onnxruntime-node: probed before use, a clean fallback when it is missing or crashes', function () {
  this.timeout(90000);
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-ort-native-'));
  });
  afterEach(() => fs.rm(dir, { recursive: true, force: true }));

  it('not installed: the model runs on onnxruntime-web and says why', async () => {
    const got = await loadWithNative(dir, undefined);
    assert.equal(got.runtime, 'onnxruntime-web');
    assert.match(String(got.noNative), /onnxruntime-node is not installed/);
    assert.equal(got.outputs, 3);
  });

  it('a binary that crashes while loading (as under a misdetecting emulator) does not take the process down', async () => {
    const crash = path.join(dir, 'crashing-addon.js');
    await fs.writeFile(crash, "process.kill(process.pid, 'SIGSEGV');\n");
    const got = await loadWithNative(dir, crash);
    assert.equal(got.runtime, 'onnxruntime-web');
    assert.match(String(got.noNative), /crashed while loading \(SIGSEGV\)/);
    assert.equal(got.outputs, 3);
  });

  it('a package whose binary is absent: onnxruntime-web, with the load error as the reason', async () => {
    const broken = path.join(dir, 'no-binary.js');
    await fs.writeFile(broken, "require('./bin/napi-v6/linux/arm64/onnxruntime_binding.node');\n");
    const got = await loadWithNative(dir, broken);
    assert.equal(got.runtime, 'onnxruntime-web');
    assert.match(String(got.noNative), /does not load here: Error: Cannot find module/);
  });

  it('installed and loading here: the native runtime is used', function () {
    const missing = nativeOrtMissing();
    if (missing !== undefined) {
      console.log(`      skipped: ${missing}`);
      this.skip();
    }
    assert.equal(missing, undefined);
  });
});
