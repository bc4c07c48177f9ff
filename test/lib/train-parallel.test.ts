import assert from 'node:assert/strict';
import { tf } from '../../lib/models/runtime/tfjs';
import { ARCHITECTURES, type ArchitectureName } from '../../lib/train/architectures';
import { balancedShards, defaultTrainingThreads, shardRows } from '../../lib/train/parallel';
import { prepareBackend, trainModel, type TrainData, type TrainSettings } from '../../lib/train/trainer';
import { seededRandom } from '../../lib/util/random';

/** Learnable data: class (or targets) from the sums of the two halves of each sample. */
function synthetic(task: string, count: number, inputShape: number[], outputs: number): TrainData {
  const random = seededRandom(11);
  const width = inputShape.reduce((a, b) => a * b, 1);
  const x = new Float32Array(count * width);
  for (let i = 0; i < x.length; i++) x[i] = random() - 0.5;
  const half = (n: number, second: boolean) => {
    let s = 0;
    for (let i = second ? Math.floor(width / 2) : 0; i < (second ? width : width / 2); i++)
      s += x[n * width + i];
    return s;
  };
  if (task === 'classification') {
    const y = new Float32Array(count);
    for (let n = 0; n < count; n++) y[n] = half(n, false) > half(n, true) ? 1 : 0;
    return { x, y, count, inputShape, outputSize: 2 };
  }
  if (task === 'regression') {
    const y = new Float32Array(count * outputs);
    for (let n = 0; n < count; n++)
      for (let k = 0; k < outputs; k++) y[n * outputs + k] = half(n, k % 2 === 1);
    return { x, y, count, inputShape, outputSize: outputs };
  }
  return { x, count, inputShape, outputSize: 0 };
}

const copy = (d: TrainData): TrainData => ({ ...d, x: d.x.slice(), y: d.y?.slice() });

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('data-parallel training', function () {
  this.timeout(120000);
  before(async () => {
    await prepareBackend('wasm');
  });

  it('splits a batch into non-empty, covering shards', () => {
    for (const rows of [1, 2, 5, 16, 17]) {
      for (const threads of [1, 2, 3, 4]) {
        const shards = Array.from({ length: threads }, (_, i) => shardRows(rows, i, threads));
        assert.equal(shards[0][0], 0);
        assert.ok(shards[0][1] > 0, `shard 0 of ${rows} rows / ${threads} is empty`);
        assert.equal(shards[threads - 1][1], rows);
        for (let i = 1; i < threads; i++) assert.equal(shards[i][0], shards[i - 1][1]);
      }
    }
    assert.ok(defaultTrainingThreads() >= 1);
  });

  it("splits a batch by the threads' speeds: equal speeds as evenly, a faster thread more rows", () => {
    for (const rows of [1, 2, 5, 16, 17, 64]) {
      for (const threads of [1, 2, 3, 4]) {
        const even = [0, ...Array.from({ length: threads }, (_, i) => shardRows(rows, i, threads)[1])];
        assert.deepEqual(balancedShards(rows, new Array<number>(threads).fill(0.7)), even);
      }
    }
    // Twice as fast: twice the rows.
    assert.deepEqual(balancedShards(64, [2, 1]), [0, 43, 64]);
    assert.deepEqual(balancedShards(60, [1, 2, 3]), [0, 10, 30, 60]);
    // However slow, the first thread keeps a row; bounds never go backwards and cover the batch.
    for (const speeds of [
      [1e-9, 1],
      [1, 1e-9, 1],
      [5, 1e-9, 1e-9],
    ]) {
      for (const rows of [1, 3, 64]) {
        const bounds = balancedShards(rows, speeds);
        assert.equal(bounds[0], 0);
        assert.ok(bounds[1] >= 1);
        assert.equal(bounds[speeds.length], rows);
        for (let i = 1; i < bounds.length; i++) assert.ok(bounds[i] >= bounds[i - 1], String(bounds));
      }
    }
  });

  const cases: Array<{
    arch: ArchitectureName;
    shape: number[];
    optimizer: TrainSettings['optimizer'];
    classWeights?: number[];
  }> = [
    { arch: 'mnist-cnn', shape: [10, 10], optimizer: 'adam' },
    { arch: 'lstm-forecaster', shape: [8, 3], optimizer: 'adam' },
    { arch: 'gru-classifier', shape: [6, 2], optimizer: 'rmsprop', classWeights: [1, 3] },
    { arch: 'dense-autoencoder', shape: [8], optimizer: 'sgd' },
  ];
  for (const c of cases) {
    it(`${c.arch} (${c.optimizer}${c.classWeights ? ', class weights' : ''}) trains to the same weights and history on 3 threads as on 1`, async () => {
      const task = ARCHITECTURES[c.arch];
      // 70 samples in batches of 16: the last batch (6 rows) splits unevenly too.
      const data = synthetic(task, 70, c.shape, 2);
      const settings: TrainSettings = {
        task,
        architecture: c.arch,
        sizes:
          c.arch === 'mnist-cnn'
            ? { filters: [4, 6], units: [8], seed: 5 }
            : { units: [6], latent: 3, seed: 5 },
        optimizer: c.optimizer,
        momentum: 0.9,
        learningRate: 0.01,
        batchSize: 16,
        epochs: 2,
        validationSplit: 0.2,
        classWeights: c.classWeights,
        seed: 2,
        shuffle: false,
        backend: 'wasm',
      };
      const before1 = tf.memory().numTensors;
      const one = await trainModel(settings, copy(data));
      const kept1 = tf.memory().numTensors - before1;
      const before3 = tf.memory().numTensors;
      const three = await trainModel({ ...settings, threads: 3 }, copy(data));
      // An optimizer's first use may cache a constant for good (1 thread does so too), no more.
      assert.ok(tf.memory().numTensors - before3 <= kept1, 'the 3-thread run leaked tensors');
      const w1 = new Float32Array(one.artifacts.weightData);
      const w3 = new Float32Array(three.artifacts.weightData);
      const init = await trainModel({ ...settings, learningRate: 1e-30, epochs: 1 }, copy(data));
      const w0 = new Float32Array(init.artifacts.weightData);
      // Training moved the weights, and 3 threads moved them where 1 thread did.
      const moved = maxAbsDiff(w1, w0);
      assert.ok(moved > 1e-3, `training did not change the weights (${moved})`);
      const diff = maxAbsDiff(w1, w3);
      assert.ok(diff < moved * 1e-3, `3 threads: max weight diff ${diff} (training moved them ${moved})`);
      for (const key of Object.keys(one.history)) {
        one.history[key].forEach((v, i) => {
          const other = three.history[key][i];
          assert.ok(Math.abs(v - other) <= 1e-4 * Math.max(1, Math.abs(v)), `${key}[${i}]: ${v} vs ${other}`);
        });
      }
    });
  }
});
