import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { fileLoadHandler, fileSaveHandler, tf, useBackend } from '../../lib/models/runtime/tfjs';

describe('TF.js file IO and backends', () => {
  it('makes every concurrent caller wait until the one wasm start has finished', async function () {
    this.timeout(30_000);
    // A fresh process: the wasm backend must not have started yet.
    const script = `
      const { useBackend, tf } = require(${JSON.stringify(path.join(__dirname, '../../lib/models/runtime/tfjs'))});
      const first = useBackend(['wasm', 'cpu']);
      const second = useBackend(['wasm', 'cpu']).then((name) => {
        // Building on the backend right away is what a second model load does.
        const t = tf.add(tf.tensor1d([1, 2, 3]), 1);
        const out = Array.from(t.dataSync());
        t.dispose();
        return { name, out };
      });
      Promise.all([first, second]).then(
        ([a, b]) => console.log(JSON.stringify({ a, b })),
        (err) => console.log(JSON.stringify({ error: err.message })),
      );`;
    const stdout = await new Promise<string>((resolve, reject) =>
      execFile(process.execPath, ['-e', script], (err, out) => (err ? reject(err) : resolve(out))),
    );
    const result = JSON.parse(stdout.trim().split('\n').pop() ?? '{}') as unknown;
    assert.deepEqual(result, { a: 'wasm', b: { name: 'wasm', out: [2, 3, 4] } });
  });

  it('starts the wasm backend in Node', async () => {
    assert.equal(await useBackend(['wasm', 'cpu']), 'wasm');
  });

  it('saves a layers model to disk and loads it back with the same outputs', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-tfjs-'));
    try {
      const model = tfl.sequential({
        layers: [
          tfl.layers.dense({ units: 4, inputShape: [3], activation: 'relu' }),
          tfl.layers.dense({ units: 2 }),
        ],
      });
      await model.save(fileSaveHandler(dir));
      const loaded = await tfl.loadLayersModel(fileLoadHandler(path.join(dir, 'model.json')));
      const before = tf.memory().numTensors;
      const x = tf.tensor2d([[1, -2, 3]]);
      const a = model.predict(x) as tf.Tensor;
      const b = loaded.predict(x) as tf.Tensor;
      assert.deepEqual(Array.from(await a.data()), Array.from(await b.data()));
      tf.dispose([x, a, b]);
      assert.equal(tf.memory().numTensors, before);
      model.dispose();
      loaded.dispose();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });
});
