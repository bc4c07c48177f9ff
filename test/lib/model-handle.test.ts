import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { ModelHandle } from '../../lib/models/serve/model-handle';
import { liveOrtSessionCount as liveOrtSessions } from '../../lib/models/runtime/ort-session';
import { ModelStore } from '../../lib/models/store/store';
import { tf, useBackend } from '../../lib/models/runtime/tfjs';
import { onnxMlp } from '../fixtures/onnx-fixtures';
import { maxAbsDiff, randomValues } from '../fixtures/reference';
import { keras2Dense } from '../fixtures/tfjs-fixtures';

describe('model handle: swaps and following the store', function () {
  this.timeout(30000);
  let userDir: string;
  let store: ModelStore;
  before(async () => {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-handle-'));
    store = ModelStore.forUserDir(userDir);
    await useBackend(['wasm', 'cpu']);
  });
  after(() => fs.rm(userDir, { recursive: true, force: true }));

  async function saveOnnx(name: string, seed: number, target = store): Promise<void> {
    await target.save(name, { format: 'onnx', entry: 'model.onnx', labels: ['a', 'b', 'c'] }, (dir) =>
      fs.writeFile(path.join(dir, 'model.onnx'), onnxMlp({ seed }).bytes),
    );
  }

  it('lets a request that holds the old model finish on it, then releases it', async () => {
    const first = await keras2Dense(path.join(userDir, 'first'));
    await keras2Dense(path.join(userDir, 'second'), { 'dense/kernel': { quantize: 'uint8' } });
    const tensors = tf.memory().numTensors;
    const handle = new ModelHandle({ userDir });
    await handle.load('first');
    const oneModel = tf.memory().numTensors - tensors;
    const lease = handle.lease();
    const swapped = await handle.swap('second');
    assert.equal(swapped.source, 'second');
    assert.equal(handle.info?.source, 'second');
    assert.equal(tf.memory().numTensors, tensors + 2 * oneModel, 'the old model lives while leased');
    const x = randomValues(4, 5);
    assert.ok(
      maxAbsDiff(await lease.runner.predict(x, 1), first.reference(x)) < 1e-5,
      'old model still answers',
    );
    lease.release();
    assert.equal(tf.memory().numTensors, tensors + oneModel, 'released after its last request');
    await handle.close();
    assert.equal(tf.memory().numTensors, tensors);
  });

  it('follows new versions of its store model only, with labels from meta.json', async () => {
    await saveOnnx('watched', 1);
    const sessions = liveOrtSessions();
    const handle = new ModelHandle({ userDir, name: 'watched', followStore: true });
    const loaded: number[] = [];
    handle.on('loaded', (info) => loaded.push(info.version));
    await handle.load('store:watched');
    assert.deepEqual(handle.info?.labels, ['a', 'b', 'c']);
    await saveOnnx('other', 2); // another name: ignored
    await saveOnnx('watched', 3, new ModelStore(path.join(userDir, 'elsewhere'))); // another store: ignored
    await saveOnnx('watched', 4);
    const deadline = Date.now() + 10000;
    while (loaded.length < 2 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 100));
    assert.deepEqual(loaded, [1, 2]);
    assert.equal(liveOrtSessions(), sessions + 1);
    await handle.close();
    assert.equal(liveOrtSessions(), sessions);
  });

  it('loads a downloaded model once even when following its name', async () => {
    const bytes = onnxMlp().bytes;
    let requests = 0;
    const server = http.createServer((_req, res) => {
      requests++;
      res.end(Buffer.from(bytes));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/sensor.onnx`;
    const handle = new ModelHandle({ userDir, name: 'downloaded', followStore: true });
    let loads = 0;
    handle.on('loaded', () => loads++);
    try {
      const info = await handle.load(url);
      assert.equal(info.version, 1);
      assert.equal(info.source, url);
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(loads, 1);
      assert.equal(requests, 1);
    } finally {
      await handle.close();
      server.close();
    }
  });
});
