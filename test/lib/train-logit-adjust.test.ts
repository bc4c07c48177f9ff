import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { fileSaveHandler, tf } from '../../lib/models/runtime/tfjs';
import {
  adjustedLoss,
  calibratedLogits,
  classCounts,
  labelSkewAdjust,
  restrictedSoftmax,
  type LogitAdjust,
} from '../../lib/train/logit-adjust';
import { prepareBackend, trainModel, type TrainData } from '../../lib/train/trainer';

/** -sum_c y_c log softmax(z x scale + offset)_c in float64, -Infinity offsets leaving classes out. */
function handLoss(z: number[], label: number, adjust: LogitAdjust): number {
  const a = z.map((v, c) => v * (adjust.scale?.[c] ?? 1) + (adjust.offset?.[c] ?? 0));
  const max = Math.max(...a);
  const sum = a.reduce((s, v) => s + Math.exp(v - max), 0);
  return -(a[label] - max - Math.log(sum));
}

/** d loss / d z for one sample: (softmax(adjusted) - y) x scale. */
function handLogitGradient(z: number[], label: number, adjust: LogitAdjust): number[] {
  const a = z.map((v, c) => v * (adjust.scale?.[c] ?? 1) + (adjust.offset?.[c] ?? 0));
  const max = Math.max(...a);
  const e = a.map((v) => Math.exp(v - max));
  const sum = e.reduce((s, v) => s + v, 0);
  return e.map((v, c) => (v / sum - (c === label ? 1 : 0)) * (adjust.scale?.[c] ?? 1));
}

// A 2-feature, 3-class softmax layer with known weights; the samples hold classes 0 and 1 only.
const KERNEL = [
  [0.4, -0.3, 0.8],
  [-0.2, 0.5, 0.6],
]; // [feature][class]
const BIAS = [0.1, -0.1, 0.3];
const X = [
  [1, 0.5],
  [-0.5, 1],
  [0.3, -1],
  [2, 1],
];
const Y = [0, 1, 1, 0];
const LR = 0.5;

const logitsOf = (x: number[]): number[] =>
  BIAS.map((b, c) => b + x.reduce((s, v, i) => s + v * KERNEL[i][c], 0));

/** The head after one full-batch SGD step on the adjusted loss, by hand. */
function handStep(adjust: LogitAdjust): { kernel: number[][]; bias: number[] } {
  const gradK = KERNEL.map((row) => row.map(() => 0));
  const gradB = BIAS.map(() => 0);
  X.forEach((x, n) => {
    const g = handLogitGradient(logitsOf(x), Y[n], adjust);
    g.forEach((gc, c) => {
      gradB[c] += gc / X.length;
      x.forEach((v, i) => (gradK[i][c] += (v * gc) / X.length));
    });
  });
  return {
    kernel: KERNEL.map((row, i) => row.map((w, c) => w - LR * gradK[i][c])),
    bias: BIAS.map((b, c) => b - LR * gradB[c]),
  };
}

describe('logit adjustment (FedRS restricted softmax, FedLC logit calibration)', function () {
  let dir: string;

  before(async () => {
    await prepareBackend('cpu');
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-logit-adjust-'));
    const model = tfl.sequential({
      layers: [tfl.layers.dense({ units: 3, activation: 'softmax', inputShape: [2], name: 'head' })],
    });
    model.setWeights([tf.tensor2d(KERNEL), tf.tensor1d(BIAS)]);
    await model.save(fileSaveHandler(dir));
    model.dispose();
  });

  after(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  /** Full-batch SGD steps (one by default) from the saved head; the trained kernel and bias. */
  async function oneStep(
    adjust: LogitAdjust | undefined,
    steps = 1,
    proximal?: number,
  ): Promise<{
    kernel: number[][];
    bias: number[];
    topology: object;
    model: tfl.LayersModel;
  }> {
    const data: TrainData = {
      x: Float32Array.from(X.flat()),
      y: Float32Array.from(Y),
      count: X.length,
      inputShape: [2],
      outputSize: 3,
    };
    const result = await trainModel(
      {
        task: 'classification',
        base: { modelJsonPath: path.join(dir, 'model.json'), freeze: 0, whole: true },
        optimizer: 'sgd',
        learningRate: LR,
        batchSize: X.length,
        epochs: steps,
        validationSplit: 0,
        shuffle: false,
        backend: 'cpu',
        logitAdjust: adjust,
        proximal,
      },
      data,
    );
    const model = await tfl.loadLayersModel(
      tf.io.fromMemory({
        modelTopology: result.artifacts.modelTopology,
        weightSpecs: result.artifacts.weightSpecs,
        weightData: result.artifacts.weightData,
      }),
    );
    const [k, b] = model.getWeights();
    return {
      kernel: k.arraySync() as number[][],
      bias: Array.from(b.dataSync()),
      topology: result.artifacts.modelTopology,
      model,
    };
  }

  const close = (actual: number[], expected: number[], what: string): void =>
    actual.forEach((v, i) =>
      assert.ok(Math.abs(v - expected[i]) < 1e-5, `${what}[${i}]: ${v}, by hand ${expected[i]}`),
    );

  it('the loss is the cross-entropy of the softmax of the scaled and offset logits, per sample', () => {
    const adjust: LogitAdjust = { scale: [1, 0.5, 1], offset: [-0.2, 0, -Infinity] };
    const logits = [
      [1, 2, 0.5],
      [-3, 0.25, 4],
    ];
    const labels = [1, 0];
    const loss = adjustedLoss(adjust, 3)(tf.oneHot(tf.tensor1d(labels, 'int32'), 3), tf.tensor2d(logits));
    assert.deepEqual(loss.shape, [2]);
    close(
      Array.from(loss.dataSync()),
      logits.map((z, n) => handLoss(z, labels[n], adjust)),
      'loss',
    );
    // A class left out (offset -Infinity) takes no share: the loss is that of the other two alone.
    const pair = handLoss([1, 2 * 0.5], 1, { offset: [-0.2, 0] });
    close([loss.dataSync()[0]], [pair], 'loss without class 2');
    // Without changes it is categorical cross-entropy of the softmax.
    const plain = adjustedLoss({}, 3)(tf.oneHot(tf.tensor1d(labels, 'int32'), 3), tf.tensor2d(logits));
    const reference = tfl.metrics.categoricalCrossentropy(
      tf.oneHot(tf.tensor1d(labels, 'int32'), 3),
      tf.softmax(tf.tensor2d(logits)),
    );
    close(Array.from(plain.dataSync()), Array.from(reference.dataSync()), 'plain loss');
  });

  it('the corrections come from the class counts: alpha on absent classes, -tau n^(-1/4), absent classes left out', () => {
    const y = [0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2];
    assert.deepEqual(classCounts(y, 4), [3, 0, 14, 0]);
    assert.deepEqual(restrictedSoftmax(classCounts(y, 4), 0.5), { scale: [1, 0.5, 1, 0.5] });
    const { offset } = calibratedLogits(classCounts(y, 4), 2) as { offset: number[] };
    close([offset[0], offset[2]], [-2 / Math.pow(3, 0.25), -2 / Math.pow(14, 0.25)], 'offset');
    assert.equal(offset[1], -Infinity);
    assert.equal(offset[3], -Infinity);
    assert.deepEqual(labelSkewAdjust({ method: 'restricted-softmax', strength: 0.3 }, y, 4), {
      scale: [1, 0.3, 1, 0.3],
    });
    assert.equal(labelSkewAdjust({ method: 'none', strength: 1 }, y, 4), undefined);
    assert.equal(labelSkewAdjust(undefined, y, 4), undefined);
    assert.throws(() => restrictedSoftmax([1, 0], 1.5), /alpha must be 0 to 1/);
    assert.throws(() => calibratedLogits([1, 0], -1), /tau must be 0 or more/);
    assert.throws(() => adjustedLoss({ scale: [1, 1] }, 3), /one value per class \(3\)/);
  });

  it('a restricted-softmax training step equals the hand-computed gradient step; the saved model keeps its softmax', async () => {
    const adjust = restrictedSoftmax(classCounts(Y, 3), 0.5);
    assert.deepEqual(adjust.scale, [1, 1, 0.5]);
    const before = tf.memory().numTensors;
    const trained = await oneStep(adjust);
    const expected = handStep(adjust);
    trained.kernel.forEach((row, i) => close(row, expected.kernel[i], `kernel row ${i}`));
    close(trained.bias, expected.bias, 'bias');
    // Absent class 2 is pushed down, but less than without the restriction.
    const plain = handStep({});
    assert.ok(expected.bias[2] < BIAS[2] && expected.bias[2] > plain.bias[2]);
    // Predictions are probabilities again (softmax restored in the saved topology).
    assert.match(JSON.stringify(trained.topology), /"activation":"softmax"/);
    const p = tf.tidy(() => trained.model.predict(tf.tensor2d([X[0]])) as tf.Tensor);
    const probs = Array.from(p.dataSync());
    close([probs.reduce((s, v) => s + v, 0)], [1], 'sum of probabilities');
    assert.ok(probs.every((v) => v > 0 && v < 1));
    p.dispose();
    trained.model.dispose();
    assert.equal(tf.memory().numTensors, before, 'tensors leaked');
  });

  it('logit calibration leaves a class without samples untouched and steps the others by hand', async () => {
    const adjust = calibratedLogits(classCounts(Y, 3), 1);
    const trained = await oneStep(adjust);
    const expected = handStep(adjust);
    assert.equal(trained.bias[2], Math.fround(BIAS[2]), 'the left-out class bias moved');
    assert.deepEqual(
      trained.kernel.map((row) => row[2]),
      KERNEL.map((row) => Math.fround(row[2])),
    );
    trained.kernel.forEach((row, i) => close(row, expected.kernel[i], `kernel row ${i}`));
    close(trained.bias, expected.bias, 'bias');
    trained.model.dispose();
  });

  it('no change (scale 1, offset 0) trains exactly as the plain loss', async () => {
    const plain = await oneStep(undefined);
    const neutral = await oneStep({ scale: [1, 1, 1], offset: [0, 0, 0] });
    plain.kernel.forEach((row, i) => close(row, neutral.kernel[i], `kernel row ${i}`));
    close(plain.bias, neutral.bias, 'bias');
    close(plain.bias, handStep({}).bias, 'plain bias by hand');
    plain.model.dispose();
    neutral.model.dispose();
  });

  it('a model without a softmax Dense output is a clear error', async () => {
    const other = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-logit-sigmoid-'));
    try {
      const model = tfl.sequential({
        layers: [tfl.layers.dense({ units: 3, activation: 'sigmoid', inputShape: [2] })],
      });
      await model.save(fileSaveHandler(other));
      model.dispose();
      await assert.rejects(
        trainModel(
          {
            task: 'classification',
            base: { modelJsonPath: path.join(other, 'model.json'), freeze: 0, whole: true },
            optimizer: 'sgd',
            learningRate: 0.1,
            batchSize: 4,
            epochs: 1,
            validationSplit: 0,
            backend: 'cpu',
            logitAdjust: { scale: [1, 1, 0.5] },
          },
          {
            x: Float32Array.from(X.flat()),
            y: Float32Array.from(Y),
            count: 4,
            inputShape: [2],
            outputSize: 3,
          },
        ),
        /needs a classifier ending in a softmax Dense layer; the last layer is Dense \(sigmoid\)/,
      );
    } finally {
      await fs.rm(other, { recursive: true, force: true });
    }
  });

  it('FedProx: the proximal term mu/2 |w - w0|^2 adds mu (w - w0) to the gradient', async () => {
    const mu = 0.3;
    const w1 = await oneStep(undefined, 1);
    const w2 = await oneStep(undefined, 2);
    const prox = await oneStep(undefined, 2, mu);
    // Step 1 starts at w0 (no pull); step 2 is the plain step minus lr x mu x (w1 - w0).
    close(
      prox.bias,
      w2.bias.map((b, c) => b - LR * mu * (w1.bias[c] - BIAS[c])),
      'bias',
    );
    prox.kernel.forEach((row, i) =>
      close(
        row,
        w2.kernel[i].map((w, c) => w - LR * mu * (w1.kernel[i][c] - KERNEL[i][c])),
        `kernel row ${i}`,
      ),
    );
    assert.ok(Math.abs(prox.bias[2] - w2.bias[2]) > 1e-4, 'the pull is measurable');
    for (const t of [w1, w2, prox]) t.model.dispose();
  });
});
