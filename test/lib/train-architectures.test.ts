import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileSaveHandler, tf } from '../../lib/models/runtime/tfjs';
import {
  ARCHITECTURES,
  buildModel,
  countedLayers,
  type ArchitectureName,
} from '../../lib/train/architectures';
import {
  prepareBackend,
  CancelledError,
  shiftImages,
  trainModel,
  type TrainData,
} from '../../lib/train/trainer';
import { seededRandom } from '../../lib/util/random';
import * as tfl from '@tensorflow/tfjs-layers';

/** Learnable synthetic data: class = which half of the features has the larger sum. */
function synthetic(arch: ArchitectureName, count: number, inputShape: number[]): TrainData {
  const random = seededRandom(7);
  const width = inputShape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(count * width);
  for (let i = 0; i < x.length; i++) x[i] = random() - 0.5;
  const task = ARCHITECTURES[arch];
  if (task === 'classification') {
    const y = new Float32Array(count);
    for (let n = 0; n < count; n++) {
      let first = 0;
      let second = 0;
      for (let i = 0; i < width; i++) {
        if (i < width / 2) first += x[n * width + i];
        else second += x[n * width + i];
      }
      y[n] = first > second ? 1 : 0;
    }
    return { x, y, count, inputShape, outputSize: 2 };
  }
  if (task === 'regression') {
    const y = new Float32Array(count * 2);
    for (let n = 0; n < count; n++) {
      y[n * 2] = x[n * width] * 2 + 0.5;
      y[n * 2 + 1] = x[n * width + width - 1] - x[n * width + 1];
    }
    return { x, y, count, inputShape, outputSize: 2 };
  }
  return { x, count, inputShape, outputSize: 0 };
}

const SHAPES: Record<ArchitectureName, number[]> = {
  'dense-classifier': [6],
  'dense-regressor': [6],
  'cnn1d-classifier': [12, 2],
  'lstm-classifier': [8, 2],
  'gru-classifier': [8, 2],
  'lstm-forecaster': [8, 2],
  'gru-forecaster': [8, 2],
  'dense-autoencoder': [8],
  'conv1d-autoencoder': [8, 2],
  'lstm-autoencoder': [6, 2],
  'mnist-cnn': [12, 12],
};

describe('training architectures', function () {
  this.timeout(30000);
  before(async () => {
    await prepareBackend('wasm');
  });

  for (const arch of Object.keys(ARCHITECTURES) as ArchitectureName[]) {
    it(`${arch} builds and training reduces its loss, without leaking tensors`, async () => {
      const data = synthetic(arch, 96, SHAPES[arch]);
      const before = tf.memory().numTensors;
      const result = await trainModel(
        {
          task: ARCHITECTURES[arch],
          architecture: arch,
          sizes: arch === 'mnist-cnn' ? { filters: [4, 8], units: [16] } : { units: [12], filters: [6] },
          optimizer: 'adam',
          learningRate: 0.02,
          batchSize: 16,
          epochs: 6,
          validationSplit: 0,
          seed: 1,
          backend: 'wasm',
        },
        data,
      );
      assert.equal(result.backend, 'wasm');
      assert.equal(tf.memory().numTensors, before, 'tensors leaked');
      const losses = result.history.loss;
      assert.equal(losses.length, 6);
      // Weight initialisation is not seeded, so a run can start flat; judge the best epoch.
      const best = Math.min(...losses.slice(1));
      assert.ok(best < losses[0], `${arch}: loss ${losses[0]} -> best ${best} (${losses.join(', ')})`);
      assert.deepEqual(result.inputShape, SHAPES[arch]);
      assert.ok(result.artifacts.weightData.byteLength > 0);
    });
  }

  it('uses sgd with momentum and rmsprop, a validation split, class weights and early stopping', async () => {
    const data = synthetic('dense-classifier', 120, [6]);
    const seen: number[] = [];
    for (const optimizer of ['sgd', 'rmsprop'] as const) {
      const result = await trainModel(
        {
          task: 'classification',
          architecture: 'dense-classifier',
          sizes: { units: [8] },
          optimizer,
          momentum: 0.9,
          learningRate: 0.05,
          learningRateDecay: 0.9,
          batchSize: 16,
          epochs: 40,
          validationSplit: 0.25,
          earlyStoppingPatience: 2,
          classWeights: [1, 2],
          seed: 3,
          backend: 'wasm',
        },
        { ...data, x: data.x.slice(), y: data.y?.slice() },
        { onEpoch: (p) => seen.push(p.epoch) },
      );
      assert.ok(result.history.valLoss.length > 0 && result.metrics.valLoss !== undefined);
      assert.ok(result.metrics.valAccuracy >= 0 && result.metrics.valAccuracy <= 1);
      if (result.stoppedBy === 'early-stopping') {
        assert.ok(result.metrics.epochs < 40);
        // The kept weights are those of the best validation loss.
        assert.equal(result.metrics.valLoss, Math.min(...result.history.valLoss));
      }
    }
    assert.ok(seen.length > 0);
  });

  it('transfer learning freezes the first layers and replaces the head for new classes', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-transfer-'));
    try {
      const base = buildModel('dense-classifier', { inputShape: [6], outputSize: 2, units: [10, 8] });
      await base.save(fileSaveHandler(dir));
      const frozenBefore = countedLayers(base)[0].getWeights()[0].dataSync().slice();
      base.dispose();
      const data = synthetic('dense-classifier', 64, [6]);
      // Three classes now: split class 1 by the sign of the first feature.
      const y = data.y as Float32Array;
      for (let n = 0; n < data.count; n++) if (y[n] === 1 && data.x[n * 6] > 0) y[n] = 2;
      const before = tf.memory().numTensors;
      const result = await trainModel(
        {
          task: 'classification',
          base: { modelJsonPath: path.join(dir, 'model.json'), freeze: 1 },
          optimizer: 'adam',
          learningRate: 0.02,
          batchSize: 16,
          epochs: 4,
          validationSplit: 0,
          seed: 2,
          backend: 'wasm',
        },
        { ...data, outputSize: 3 },
      );
      assert.equal(tf.memory().numTensors, before, 'tensors leaked');
      assert.deepEqual(result.outputShape, [3]);
      assert.ok(result.history.loss[3] < result.history.loss[0]);
      const trained = await tfl.loadLayersModel(
        tf.io.fromMemory({
          modelTopology: result.artifacts.modelTopology,
          weightSpecs: result.artifacts.weightSpecs,
          weightData: result.artifacts.weightData,
        }),
      );
      assert.deepEqual(
        Array.from(countedLayers(trained)[0].getWeights()[0].dataSync()),
        Array.from(frozenBefore),
      );
      // The second layer was trained.
      assert.equal(countedLayers(trained).length, 3);
      trained.dispose();
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  });

  it('stops with CancelledError when asked between batches, freeing its tensors', async () => {
    const before = tf.memory().numTensors;
    let batches = 0;
    await assert.rejects(
      trainModel(
        {
          task: 'classification',
          architecture: 'dense-classifier',
          optimizer: 'adam',
          learningRate: 0.01,
          batchSize: 8,
          epochs: 50,
          validationSplit: 0,
          backend: 'wasm',
        },
        synthetic('dense-classifier', 64, [6]),
        { isCancelled: () => ++batches > 3 },
      ),
      CancelledError,
    );
    assert.equal(tf.memory().numTensors, before);
  });

  it('shifts images by whole pixels and fills the border with zeros', () => {
    const image = Float32Array.from({ length: 9 }, (_, i) => i + 1);
    let calls = 0;
    // The generator yields dy then dx: 0.99 -> +1, 0 -> -1 (max 1).
    const shifted = shiftImages(image, 1, [3, 3, 1], 1, () => (calls++ % 2 === 0 ? 0.99 : 0));
    assert.deepEqual(Array.from(shifted), [0, 0, 0, 2, 3, 0, 5, 6, 0]);
  });
});
