import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { readModelFiles } from '../../lib/models/store/model-files';
import { createRunner } from '../../lib/models/runtime/select';
import { fileLoadHandler, fileSaveHandler, tf, useBackend } from '../../lib/models/runtime/tfjs';
import { decodeWeightsManifest, float16ToFloat32 } from '../../lib/models/store/weights';
import { act, dense, maxAbsDiff, randomValues, softmax } from '../fixtures/reference';
import {
  graphMlp,
  keras21,
  keras2Dense,
  keras2Gru,
  keras2Lstm,
  keras3Functional,
  keras3Sequential,
  type Fixture,
} from '../fixtures/tfjs-fixtures';

/** Runs `batch` probe samples through the loaded model and compares each with the reference. */
async function checkAgainstReference(fixture: Fixture, root: string, tolerance = 2e-5): Promise<number> {
  const files = await readModelFiles(fixture.entry, { root });
  const { runner } = await createRunner(files, { runtime: 'tfjs' });
  try {
    assert.deepEqual(runner.inputShape, fixture.inputShape);
    assert.deepEqual(runner.outputShape, fixture.outputShape);
    const per = fixture.inputShape.reduce((a, b) => a * b, 1);
    const batch = 4;
    const input = randomValues(per * batch, 99, 1.5);
    const output = await runner.predict(input, batch);
    const outPer = fixture.outputShape.reduce((a, b) => a * b, 1);
    let worst = 0;
    for (let i = 0; i < batch; i++) {
      const expected = fixture.reference(input.subarray(i * per, (i + 1) * per));
      worst = Math.max(worst, maxAbsDiff(output.subarray(i * outPer, (i + 1) * outPer), expected));
    }
    assert.ok(worst < tolerance, `max |model - reference| = ${worst}`);
    return worst;
  } finally {
    await runner.dispose();
  }
}

describe('model formats: every producer loads and matches an independent computation', function () {
  this.timeout(30000);
  let root: string;
  let tensorsBefore: number;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-formats-'));
    await useBackend(['wasm', 'cpu']);
    tensorsBefore = tf.memory().numTensors;
  });
  after(async () => {
    await fs.rm(root, { recursive: true, force: true });
    assert.equal(tf.memory().numTensors, tensorsBefore, 'no tensors leaked by loading and disposing models');
  });

  const cases: [string, (dir: string) => Promise<Fixture>][] = [
    ['Keras 2.x Dense (tensorflowjs_converter from TF 2.x)', keras2Dense],
    ['Keras 2.x LSTM with cell-named weights', keras2Lstm],
    ['Keras 2.x GRU with reset_after=True (the Keras default), going backwards', keras2Gru],
    [
      'Keras 3 Sequential (Conv1D, LSTM with OrthogonalInitializer, leaky_relu, prefixed weights)',
      keras3Sequential,
    ],
    [
      'Keras 3 functional ({args, kwargs} nodes, Add, LeakyReLU, Keras 3 hard_sigmoid, Concatenate)',
      keras3Functional,
    ],
    ['Keras 2.1.x (bare layer list, weight groups, extensionless split shards, hard_sigmoid LSTM)', keras21],
    ['TF.js graph model (MatMul, BiasAdd, Relu, Reshape, Softmax)', graphMlp],
  ];
  for (const [label, make] of cases) {
    it(`loads ${label}`, async () => {
      await checkAgainstReference(await make(path.join(root, make.name)), root);
    });
  }

  it('needs the normalisation: TF.js 4.22 alone rejects Keras 3 exports and reset_after GRUs', async () => {
    for (const make of [keras3Sequential, keras3Functional, keras2Gru]) {
      const fixture = await make(path.join(root, `raw-${make.name}`));
      await assert.rejects(tfl.loadLayersModel(fileLoadHandler(fixture.entry)));
    }
  });

  it('loads the output of TF.js model.save with the outputs of the source model', async () => {
    const source = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: 6, inputShape: [3], activation: 'tanh' }),
        tfl.layers.dense({ units: 2, activation: 'softmax' }),
      ],
    });
    const dir = path.join(root, 'tfjs-save');
    await fs.mkdir(dir);
    await source.save(fileSaveHandler(dir));
    const [k1, b1, k2, b2] = await Promise.all(source.getWeights().map((w) => w.data()));
    const files = await readModelFiles(dir, { root });
    assert.equal(files.format, 'tfjs-layers');
    const { runner } = await createRunner(files, { runtime: 'tfjs' });
    const input = randomValues(6, 5);
    const got = await runner.predict(input, 2);
    const x = tf.tensor2d(input, [2, 3]);
    const want = source.predict(x) as tf.Tensor;
    assert.ok(maxAbsDiff(got, await want.data()) < 1e-6);
    for (let i = 0; i < 2; i++) {
      const h = dense(Array.from(input.subarray(i * 3, i * 3 + 3)), k1, b1, 6).map(act.tanh);
      assert.ok(maxAbsDiff(got.subarray(i * 2, i * 2 + 2), softmax(dense(h, k2, b2, 2))) < 1e-5);
    }
    tf.dispose([x, want]);
    source.dispose();
    await runner.dispose();
  });
});

describe('quantized weights in the converter manifest format', function () {
  this.timeout(30000);
  let root: string;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-quant-'));
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  it('decodes uint8 / uint16 / float16, with and without original_dtype, to the dequantized values', async () => {
    const quantized = await keras2Dense(path.join(root, 'q'), {
      'dense/kernel': { quantize: 'uint8', originalDtype: true },
      'dense/bias': { quantize: 'uint16' },
      'dense_1/kernel': { quantize: 'float16', originalDtype: true },
      'dense_1/bias': { quantize: 'uint8', storedDtypeField: true, originalDtype: true },
    });
    const plain = await keras2Dense(path.join(root, 'plain'));
    const manifest = JSON.parse(await fs.readFile(quantized.entry, 'utf8')).weightsManifest[0].weights;
    assert.equal(manifest[0].quantization.original_dtype, 'float32');
    assert.equal(manifest[1].quantization.original_dtype, undefined);
    // The reference uses q * scale + min, so decoding must match it exactly (up to float32 sums).
    await checkAgainstReference(quantized, root);
    // ... and the quantized model stays close to the float one.
    const input = randomValues(4, 7, 1);
    const error = maxAbsDiff(quantized.reference(input), plain.reference(input));
    assert.ok(error > 0 && error < 0.02, `quantization error ${error}`);
  });

  it('decodes a graph model shard mixing uint8, uint16, float16 and plain int32 entries', async () => {
    const fixture = await graphMlp(path.join(root, 'graph-q'), {
      W1: { quantize: 'uint8', originalDtype: true },
      W2: { quantize: 'uint16', originalDtype: true },
      b2: { quantize: 'float16' },
    });
    const shard = await fs.stat(path.join(fixture.dir, 'group1-shard1of1.bin'));
    // 24 uint8 + 6 float32 + 2 int32 + 18 uint16 + 3 float16: the int32 entry sits at an odd offset.
    assert.equal(shard.size, 24 + 24 + 8 + 36 + 6);
    await checkAgainstReference(fixture, root);
  });

  it('checks byte lengths and decodes IEEE half precision edge cases', async () => {
    assert.equal(float16ToFloat32(0x3c00), 1);
    assert.equal(float16ToFloat32(0xc000), -2);
    assert.equal(float16ToFloat32(0x0001), 2 ** -24);
    assert.equal(float16ToFloat32(0x7c00), Infinity);
    assert.ok(Number.isNaN(float16ToFloat32(0x7e00)));
    const half = new Uint16Array([0x3c00, 0x3800]);
    const codes = new Uint8Array([0, 255, 7]);
    const ints = new Int32Array([-3, 4]);
    const data = Buffer.concat([Buffer.from(codes), Buffer.from(ints.buffer), Buffer.from(half.buffer)]);
    const decoded = await decodeWeightsManifest(
      [
        {
          paths: ['a'],
          weights: [
            {
              name: 'q',
              shape: [3],
              dtype: 'float32',
              quantization: { dtype: 'uint8', min: -1, scale: 0.5 },
            },
            { name: 'i', shape: [2], dtype: 'int32' },
            { name: 'h', shape: [2], dtype: 'float32', quantization: { dtype: 'float16' } },
          ],
        },
      ],
      async () => data,
    );
    const view = new DataView(decoded.data);
    const floats = (offset: number, n: number) =>
      Array.from({ length: n }, (_, i) => view.getFloat32(offset + 4 * i, true));
    assert.deepEqual(floats(0, 3), [-1, 126.5, 2.5]);
    assert.deepEqual([view.getInt32(12, true), view.getInt32(16, true)], [-3, 4]);
    assert.deepEqual(floats(20, 2), [1, 0.5]);
    await assert.rejects(
      decodeWeightsManifest(
        [{ paths: ['a'], weights: [{ name: 'w', shape: [4], dtype: 'float32' }] }],
        async () => new Uint8Array(12),
      ),
      /should hold 16 bytes but holds 12: a shard is truncated/,
    );
    await assert.rejects(
      decodeWeightsManifest(
        [
          {
            paths: ['a'],
            weights: [{ name: 'w', shape: [2], dtype: 'float32', quantization: { dtype: 'int4' } }],
          },
        ],
        async () => new Uint8Array(2),
      ),
      /unknown quantization dtype "int4"/,
    );
  });
});
