import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { fileLoadHandler, fileSaveHandler, tf, useBackend } from '../../lib/models/runtime/tfjs';

describe('TF.js file IO and backends', () => {
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
