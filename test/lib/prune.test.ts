import assert from 'node:assert/strict';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  checkSparsity,
  isKernelName,
  layerOf,
  pruneLayersModel,
  pruneWeights,
} from '../../lib/models/compress/prune';
import { decodeWeightData, type DecodedWeight, type ManifestEntry } from '../../lib/models/compress/quantize';
import { tf, useBackend } from '../../lib/models/runtime/tfjs';

function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = (s / 2147483648) * 2 - 1;
  }
  return out;
}

function zeros(a: ArrayLike<number>): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === 0) n++;
  return n;
}

function weights(): DecodedWeight[] {
  return [
    { name: 'seq/dense_1/kernel', shape: [20, 30], dtype: 'float32', values: values(600, 1) },
    { name: 'seq/dense_1/bias', shape: [30], dtype: 'float32', values: values(30, 2) },
    {
      name: 'seq/dense_2/kernel',
      shape: [30, 7],
      dtype: 'float32',
      values: values(210, 3).map((v) => v * 5),
    },
    { name: 'seq/dense_2/bias', shape: [7], dtype: 'float32', values: values(7, 4) },
    { name: 'seq/step', shape: [1], dtype: 'int32', values: new Int32Array([5]) },
  ];
}

describe('magnitude pruning', () => {
  before(() => useBackend(['wasm', 'cpu']));

  it('recognises kernels by weight name across Keras and TF.js naming', () => {
    for (const name of [
      'dense_1/kernel',
      'sequential_4/dense_8/kernel',
      'lstm/recurrent_kernel',
      'conv/depthwise_kernel:0',
    ]) {
      assert.ok(isKernelName(name), name);
    }
    for (const name of ['dense_1/bias', 'bn/gamma', 'bn/moving_mean', 'embedding/embeddings']) {
      assert.ok(!isKernelName(name), name);
    }
    assert.equal(layerOf('sequential_4/dense_8/kernel'), 'sequential_4/dense_8');
  });

  it('global: zeros exactly round(s * n) kernel weights, the smallest ones, and leaves biases alone', () => {
    const input = weights();
    const originals = input.map((w) => Array.from(w.values));
    for (const sparsity of [0.1, 0.5, 0.83]) {
      const { weights: pruned, stats } = pruneWeights(input, { sparsity });
      const kernels = [pruned[0], pruned[2]];
      const n = 810;
      const k = Math.round(sparsity * n);
      assert.equal(zeros(kernels[0].values) + zeros(kernels[1].values), k);
      assert.equal(stats.sparsity, k / n);
      assert.equal(stats.prunableParameters, n);
      assert.equal(stats.totalParameters, 600 + 30 + 210 + 7 + 1);
      // Every pruned weight had a magnitude no larger than every kept one.
      let largestPruned = 0;
      let smallestKept = Infinity;
      for (const index of [0, 2]) {
        pruned[index].values.forEach((v, i) => {
          const m = Math.abs(originals[index][i]);
          if (v === 0) largestPruned = Math.max(largestPruned, m);
          else {
            smallestKept = Math.min(smallestKept, m);
            assert.equal(v, originals[index][i]);
          }
        });
      }
      assert.ok(largestPruned <= smallestKept);
      // The larger-scaled second layer keeps more of its weights under a global threshold.
      assert.ok(stats.layers[1].sparsity < stats.layers[0].sparsity);
      assert.deepEqual(Array.from(pruned[1].values), originals[1]);
      assert.deepEqual(Array.from(pruned[3].values), originals[3]);
      assert.deepEqual(Array.from(pruned[4].values), [5]);
    }
    // The input weights are not modified.
    input.forEach((w, i) => assert.deepEqual(Array.from(w.values), originals[i]));
  });

  it('per-layer: every layer reaches the target on its own', () => {
    const { weights: pruned, stats } = pruneWeights(weights(), { sparsity: 0.3, scope: 'per-layer' });
    assert.equal(zeros(pruned[0].values), Math.round(0.3 * 600));
    assert.equal(zeros(pruned[2].values), Math.round(0.3 * 210));
    assert.deepEqual(
      stats.layers.map((l) => [l.layer, l.zeros]),
      [
        ['seq/dense_1', 180],
        ['seq/dense_2', 63],
      ],
    );
  });

  it('stays exact when many weights share the threshold magnitude', () => {
    const tied = new Float32Array(100).map((_, i) => (i % 2 ? 0.5 : -0.5));
    tied[3] = 0.1;
    const { weights: pruned, stats } = pruneWeights(
      [{ name: 'd/kernel', shape: [100], dtype: 'float32', values: tied }],
      {
        sparsity: 0.37,
      },
    );
    assert.equal(zeros(pruned[0].values), 37);
    assert.equal(pruned[0].values[3], 0);
    assert.equal(stats.sparsity, 0.37);
  });

  it('rejects a sparsity outside [0, 1)', () => {
    for (const bad of [1, -0.1, 'half', NaN, true]) assert.throws(() => checkSparsity(bad), /sparsity/);
    assert.equal(checkSparsity(0), 0);
    assert.equal(checkSparsity('0.5'), 0.5);
  });

  it('prunes a layers model, then uint8 keeps the pruned weights exactly zero for the TF.js loader', async () => {
    const before = tf.memory().numTensors;
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: 32, inputShape: [16], activation: 'relu' }),
        tfl.layers.dense({ units: 4 }),
      ],
    });
    try {
      const { artifacts, stats } = await pruneLayersModel(model, { sparsity: 0.6, quantize: 'uint8' });
      const kernelCount = 16 * 32 + 32 * 4;
      assert.equal(stats.sparsity, Math.round(0.6 * kernelCount) / kernelCount);
      const specs = artifacts.weightSpecs as ManifestEntry[];
      assert.ok(specs.every((s) => s.quantization?.dtype === 'uint8'));
      const decoded = tf.io.decodeWeights(artifacts.weightData as ArrayBuffer, artifacts.weightSpecs ?? []);
      let kernelZeros = 0;
      for (const [name, tensor] of Object.entries(decoded)) {
        if (isKernelName(name)) kernelZeros += zeros(tensor.dataSync());
        tensor.dispose();
      }
      assert.equal(kernelZeros, Math.round(0.6 * kernelCount));
      // Our own decoder sees the same thing.
      const ours = decodeWeightData(specs, artifacts.weightData);
      assert.equal(
        ours.filter((w) => isKernelName(w.name)).reduce((n, w) => n + zeros(w.values), 0),
        kernelZeros,
      );
      const loaded = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
      const y = tf.tidy(() => loaded.predict(tf.ones([2, 16])) as tf.Tensor);
      assert.deepEqual(y.shape, [2, 4]);
      y.dispose();
      loaded.dispose();
    } finally {
      model.dispose();
    }
    assert.equal(tf.memory().numTensors, before);
  });
});
