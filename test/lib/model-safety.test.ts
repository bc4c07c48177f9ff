import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { isEdgeAiError, ModelLoadError } from '../../lib/errors';
import { createRunner } from '../../lib/models/runtime/select';
import { ModelHandle } from '../../lib/models/serve/model-handle';
import { liveOrtSessionCount as liveOrtSessions } from '../../lib/models/runtime/ort-session';
import { ModelStore } from '../../lib/models/store/store';
import { tf, useBackend } from '../../lib/models/runtime/tfjs';
import { onnxMlp } from '../fixtures/onnx-fixtures';
import { maxAbsDiff, randomValues } from '../fixtures/reference';
import { keras2Dense, keras2Lstm, type Fixture } from '../fixtures/tfjs-fixtures';

describe('bad models and inputs: clear errors, the previous model keeps serving', function () {
  this.timeout(30000);
  let userDir: string;
  let good: Fixture;
  let handle: ModelHandle;
  const probe = randomValues(4, 3, 1);

  async function copyGood(name: string): Promise<string> {
    const dir = path.join(userDir, name);
    await fs.cp(good.dir, dir, { recursive: true });
    return dir;
  }

  async function stillServing(): Promise<void> {
    const { output, info } = await handle.predict(probe, 1);
    assert.equal(info.source, 'good/model.json');
    assert.ok(maxAbsDiff(output, good.reference(probe)) < 1e-5);
  }

  before(async () => {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-safety-'));
    await useBackend(['wasm', 'cpu']);
    good = await keras2Dense(path.join(userDir, 'good'));
    handle = new ModelHandle({ userDir, name: 'guarded', maxBytes: 64 * 1024, timeoutMs: 300 });
    await handle.load('good/model.json');
  });
  after(async () => {
    await handle.close();
    await fs.rm(userDir, { recursive: true, force: true });
  });

  const cases: [string, () => Promise<string>, RegExp][] = [
    [
      'truncated model.json',
      async () => {
        const dir = await copyGood('truncated-json');
        const text = await fs.readFile(path.join(dir, 'model.json'), 'utf8');
        await fs.writeFile(path.join(dir, 'model.json'), text.slice(0, text.length / 2));
        return 'truncated-json/model.json';
      },
      /model\.json is not valid JSON \(truncated or corrupt\?\)/,
    ],
    [
      'truncated shard',
      async () => {
        const dir = await copyGood('truncated-shard');
        const shard = path.join(dir, 'group1-shard1of1.bin');
        await fs.truncate(shard, (await fs.stat(shard)).size - 6);
        return 'truncated-shard';
      },
      /weight group 1 \(group1-shard1of1\.bin\) should hold 172 bytes but holds 166: a shard is truncated/,
    ],
    [
      'shard with extra bytes',
      async () => {
        const dir = await copyGood('long-shard');
        await fs.appendFile(path.join(dir, 'group1-shard1of1.bin'), Buffer.alloc(8));
        return 'long-shard';
      },
      /should hold 172 bytes but holds 180: a shard is corrupt or does not match model\.json/,
    ],
    [
      'corrupt shard (NaN weights)',
      async () => {
        const dir = await copyGood('nan-shard');
        await fs.writeFile(path.join(dir, 'group1-shard1of1.bin'), Buffer.alloc(172, 0xff));
        return 'nan-shard';
      },
      /weight dense\/kernel holds NaN at index 0: the shard is corrupt/,
    ],
    [
      'missing shard',
      async () => {
        const dir = await copyGood('missing-shard');
        await fs.rm(path.join(dir, 'group1-shard1of1.bin'));
        return 'missing-shard';
      },
      /weight shard "group1-shard1of1\.bin" listed in model\.json is missing/,
    ],
    ['missing model', async () => 'nowhere/model.json', /model file not found: nowhere\/model\.json/],
    [
      'unknown layer class',
      async () => {
        const dir = await copyGood('unknown-layer');
        const json = JSON.parse(await fs.readFile(path.join(dir, 'model.json'), 'utf8'));
        json.modelTopology.model_config.config.layers[1].class_name = 'FancyAttention';
        await fs.writeFile(path.join(dir, 'model.json'), JSON.stringify(json));
        return 'unknown-layer';
      },
      /unknown layer class "FancyAttention" \(layer "dense"\)/,
    ],
    [
      'file over the size limit',
      async () => {
        const dir = await copyGood('too-big');
        await fs.writeFile(path.join(dir, 'group1-shard1of1.bin'), Buffer.alloc(100 * 1024));
        return 'too-big';
      },
      /exceed the size limit of 65536 bytes/,
    ],
    [
      'corrupt ONNX file',
      async () => {
        const bytes = Buffer.from(onnxMlp().bytes);
        await fs.writeFile(path.join(userDir, 'broken.onnx'), bytes.subarray(0, bytes.length - 40));
        return 'broken.onnx';
      },
      /not a valid ONNX file/,
    ],
    [
      'damaged store version',
      async () => {
        const store = ModelStore.forUserDir(userDir);
        const saved = await store.save('damaged', { format: 'tfjs-layers', entry: 'model.json' }, (dir) =>
          fs.cp(good.dir, dir, { recursive: true }),
        );
        await fs.appendFile(path.join(saved.dir, 'group1-shard1of1.bin'), Buffer.alloc(4));
        return 'store:damaged';
      },
      /model damaged v1: file group1-shard1of1\.bin is damaged/,
    ],
  ];
  for (const [label, prepare, message] of cases) {
    it(`rejects a ${label} with a clear error`, async () => {
      const source = await prepare();
      await assert.rejects(handle.load(source), message);
      await stillServing();
    });
  }

  it('says "not a valid ONNX file" (code model-invalid-onnx) for bytes that are no ONNX model', async () => {
    const bytes = Buffer.from(onnxMlp().bytes);
    const inputs: [string, Uint8Array][] = [
      ['text', Buffer.from('this is not an ONNX model, just some text\n'.repeat(4))],
      ['truncated', bytes.subarray(0, bytes.length - 40)],
    ];
    for (const [label, onnx] of inputs) {
      for (const runtime of ['auto', 'onnxruntime-node', 'onnxruntime-web'] as const) {
        await assert.rejects(
          createRunner(
            { format: 'onnx', onnx, entryPath: label, bytes: onnx.length, notes: [] },
            { runtime },
          ),
          (err) =>
            isEdgeAiError(err, 'model-invalid-onnx') &&
            err instanceof ModelLoadError &&
            /^not a valid ONNX file/.test(err.message),
          `${label} on ${runtime}`,
        );
      }
    }
    await assert.rejects(handle.load('broken.onnx'), (err) => isEdgeAiError(err, 'model-invalid-onnx'));
    await stillServing();
  });

  it('gives up on a URL that hangs', async () => {
    const sockets: http.ServerResponse[] = [];
    const server = http.createServer((_req, res) => sockets.push(res));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const { port } = server.address() as AddressInfo;
    try {
      await assert.rejects(handle.load(`http://127.0.0.1:${port}/model.json`), /timed out after 300 ms/);
      await stillServing();
    } finally {
      sockets.forEach((s) => s.destroy());
      server.closeAllConnections();
      server.close();
    }
  });

  it('rejects a wrong input size without disturbing the model', async () => {
    await assert.rejects(handle.predict(new Float32Array(5), 1), /./);
    await stillServing();
  });
});

describe('no tensor or ONNX Runtime session leaks over thousands of requests and swaps', function () {
  this.timeout(60000);
  let userDir: string;
  before(async () => {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-leaks-'));
    await useBackend(['wasm', 'cpu']);
  });
  after(() => fs.rm(userDir, { recursive: true, force: true }));

  it('keeps numTensors and live sessions constant across 3000 requests, swaps and close', async () => {
    await keras2Lstm(path.join(userDir, 'lstm-a'));
    await keras2Lstm(path.join(userDir, 'lstm-b'));
    await fs.writeFile(path.join(userDir, 'mlp.onnx'), onnxMlp().bytes);
    const tensors = tf.memory().numTensors;
    const sessions = liveOrtSessions();
    // TF.js for the LSTM phase (auto would run its ONNX export); ONNX models still get ORT.
    const handle = new ModelHandle({ userDir, warmup: 2, runtime: 'tfjs' });
    assert.match((await handle.load('lstm-a')).runtime, /^tfjs-/);
    const afterLoad = tf.memory().numTensors;
    assert.ok(afterLoad > tensors);
    const input = randomValues(15 * 8, 1);
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 3000; i++) {
      // Batches of varying size, overlapping with the swaps below.
      pending.push(handle.predict(input.subarray(0, 15 * ((i % 8) + 1)), (i % 8) + 1));
      if (i === 1000) pending.push(handle.load('lstm-b'));
      if (i === 2000) pending.push(handle.load('lstm-a'));
      if (i % 200 === 0) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    assert.equal(tf.memory().numTensors, afterLoad, 'one model loaded, no per-request tensors left');
    await handle.load('mlp.onnx');
    assert.equal(liveOrtSessions(), sessions + 1);
    assert.equal(tf.memory().numTensors, tensors, 'the TF.js model was released when ONNX took over');
    for (let i = 0; i < 1000; i++) pending.push(handle.predict(randomValues(4, i), 1));
    pending.push(handle.load('mlp.onnx'));
    await Promise.all(pending);
    assert.equal(liveOrtSessions(), sessions + 1, 'the swapped-out session was released');
    await handle.close();
    assert.equal(liveOrtSessions(), sessions);
    assert.equal(tf.memory().numTensors, tensors);
  });
});
