import assert from 'node:assert/strict';
import * as tfl from '@tensorflow/tfjs-layers';
import { tf, useBackend } from '../../lib/models/runtime/tfjs';

describe('TF.js chained tensor ops in Node', () => {
  it('lets LSTM build with its default Orthogonal recurrent initializer', async () => {
    await useBackend(['cpu']);
    const before = tf.memory().numTensors;
    const layer = tfl.layers.lstm({ units: 3, inputShape: [5, 2] });
    const model = tfl.sequential({ layers: [layer] });
    try {
      // Recurrent kernel [3, 12]: its rows are orthonormal, as the initializer promises.
      const recurrent = layer.getWeights()[1];
      const gram = tf.tidy(() => tf.matMul(recurrent, recurrent, false, true).arraySync() as number[][]);
      gram.forEach((row, i) =>
        row.forEach((v, j) => assert.ok(Math.abs(v - (i === j ? 1 : 0)) < 1e-4, `${i},${j}: ${v}`)),
      );
    } finally {
      model.dispose();
    }
    assert.equal(tf.memory().numTensors, before);
  });
});
