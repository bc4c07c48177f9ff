import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import {
  decodeWeightData,
  encodeWeights,
  quantizeLayersModel,
  quantizeTensor,
  toFloat16Bits,
  type DecodedWeight,
  type ManifestEntry,
} from '../../lib/models/compress/quantize';
import { fileLoadHandler, fileSaveHandler, tf, useBackend } from '../../lib/models/runtime/tfjs';
import { float16ToFloat32 } from '../../lib/models/store/weights';

/** Seeded uniform values in [lo, hi). */
function values(n: number, lo: number, hi: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2147483648;
    out[i] = lo + ((hi - lo) * s) / 2147483648;
  }
  return out;
}

function weight(name: string, shape: number[], data: Float32Array | Int32Array): DecodedWeight {
  return { name, shape, dtype: data instanceof Int32Array ? 'int32' : 'float32', values: data };
}

/** The converter's min/scale, written out independently of the implementation. */
function converterRange(data: Float32Array, levels: number): { min: number; scale: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (const v of data) {
    lo = Math.min(lo, v);
    hi = Math.max(hi, v);
  }
  const scale = (hi - lo) / levels;
  if (lo > 0 || hi < 0) return { min: lo, scale };
  const exact = -lo / scale;
  // np.round: halves to even
  let zero = Math.round(exact);
  if (Math.abs(exact - Math.trunc(exact)) === 0.5 && zero % 2 !== 0) zero -= 1;
  return { min: -zero * scale, scale };
}

/** tfjs-core's own decoder, values as plain arrays; disposes its tensors. */
function tfjsDecode(specs: ManifestEntry[], data: ArrayBuffer): Record<string, number[]> {
  const tensors = tf.io.decodeWeights(data, specs as tf.io.WeightsManifestEntry[]);
  const out: Record<string, number[]> = {};
  for (const [name, t] of Object.entries(tensors)) {
    out[name] = Array.from(t.dataSync());
    t.dispose();
  }
  return out;
}

describe('weight quantization (tensorflowjs_converter format)', () => {
  before(() => useBackend(['wasm', 'cpu']));

  it('reproduces the converter documentation example exactly', () => {
    const { weightSpecs, weightData } = encodeWeights(
      [weight('weight1', [3], new Float32Array([0, -0.1, 1.2]))],
      'uint8',
    );
    assert.deepEqual(Array.from(new Uint8Array(weightData)), [20, 0, 255]);
    const q = weightSpecs[0].quantization;
    assert.ok(q && typeof q.min === 'number' && typeof q.scale === 'number');
    assert.ok(Math.abs(q.min - -0.10196078817) < 1e-10, `min ${q.min}`);
    assert.ok(Math.abs(q.scale - 0.00509803940852) < 1e-12, `scale ${q.scale}`);
  });

  for (const [dtype, levels] of [
    ['uint8', 255],
    ['uint16', 65535],
  ] as const) {
    it(`writes ${dtype} manifest entries with the converter's keys, min and scale`, () => {
      const kernel = values(600, -0.7, 0.45, 7);
      const positive = values(50, 0.2, 0.9, 11);
      const { weightSpecs } = encodeWeights(
        [weight('dense/kernel', [20, 30], kernel), weight('dense/bias', [50], positive)],
        dtype,
      );
      for (const [spec, data] of [
        [weightSpecs[0], kernel],
        [weightSpecs[1], positive],
      ] as const) {
        assert.deepEqual(Object.keys(spec), ['name', 'shape', 'dtype', 'quantization']);
        assert.equal(spec.dtype, 'float32');
        assert.deepEqual(Object.keys(spec.quantization ?? {}), ['dtype', 'min', 'scale', 'original_dtype']);
        const expected = converterRange(data, levels);
        assert.equal(spec.quantization?.dtype, dtype);
        assert.equal(spec.quantization?.original_dtype, 'float32');
        assert.equal(spec.quantization?.min, expected.min);
        assert.equal(spec.quantization?.scale, expected.scale);
      }
      // A range without 0 is not nudged: min is the data minimum itself.
      assert.equal(weightSpecs[1].quantization?.min, Math.min(...positive));
    });

    it(`${dtype}: tfjs-core decodeWeights reads our bytes within half a step, zero exactly`, () => {
      const kernel = values(1000, -2, 3, 5);
      kernel[17] = 0;
      kernel[400] = 0;
      const { weightSpecs, weightData } = encodeWeights([weight('k', [1000], kernel)], dtype);
      assert.equal(weightData.byteLength, 1000 * (dtype === 'uint8' ? 1 : 2));
      const decoded = tfjsDecode(weightSpecs, weightData).k;
      const halfStep = (weightSpecs[0].quantization?.scale as number) / 2;
      let worst = 0;
      for (let i = 0; i < kernel.length; i++) worst = Math.max(worst, Math.abs(decoded[i] - kernel[i]));
      assert.ok(worst <= halfStep * (1 + 1e-5), `max error ${worst} > half step ${halfStep}`);
      assert.equal(decoded[17], 0);
      assert.equal(decoded[400], 0);
    });
  }

  it('float16: manifest {dtype, original_dtype}, tfjs-core decodes within half precision', () => {
    const kernel = values(500, -30, 30, 3);
    const { weightSpecs, weightData } = encodeWeights([weight('k', [500], kernel)], 'float16');
    assert.deepEqual(weightSpecs[0], {
      name: 'k',
      shape: [500],
      dtype: 'float32',
      quantization: { dtype: 'float16', original_dtype: 'float32' },
    });
    assert.equal(weightData.byteLength, 1000);
    const decoded = tfjsDecode(weightSpecs, weightData).k;
    for (let i = 0; i < kernel.length; i++) {
      assert.ok(Math.abs(decoded[i] - kernel[i]) <= Math.abs(kernel[i]) * 2 ** -11, `value ${i}`);
    }
  });

  it('float16 conversion rounds to nearest even and agrees with tfjs-core on every half value', () => {
    assert.equal(toFloat16Bits(1), 0x3c00);
    assert.equal(toFloat16Bits(-2), 0xc000);
    assert.equal(toFloat16Bits(65504), 0x7bff);
    assert.equal(toFloat16Bits(65520), 0x7c00); // halfway to the next step rounds to even: infinity
    assert.equal(toFloat16Bits(2 ** -24), 0x0001);
    assert.equal(toFloat16Bits(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal
    assert.equal(toFloat16Bits(1.5 * 2 ** -25), 0x0001);
    assert.equal(toFloat16Bits(1 + 2 ** -11), 0x3c00); // tie, even mantissa kept
    assert.equal(toFloat16Bits(1 + 3 * 2 ** -11), 0x3c02); // tie, rounds up to even
    assert.equal(toFloat16Bits(NaN) & 0x7c00, 0x7c00);
    const all = new Uint16Array(0x10000).map((_, i) => i);
    const specs: ManifestEntry[] = [
      {
        name: 'h',
        shape: [all.length],
        dtype: 'float32',
        quantization: { dtype: 'float16', original_dtype: 'float32' },
      },
    ];
    const viaTfjs = tfjsDecode(specs, all.buffer).h;
    for (let bits = 0; bits < 0x10000; bits++) {
      const ours = float16ToFloat32(bits);
      if (Number.isNaN(ours)) {
        assert.ok(Number.isNaN(viaTfjs[bits]));
        continue;
      }
      assert.equal(viaTfjs[bits], ours, `bits ${bits.toString(16)}`);
      assert.equal(toFloat16Bits(ours), bits, `round trip ${bits.toString(16)}`);
    }
  });

  it('"best" ranges: never a larger weight error than the converter\'s, exact zeros stay exact', () => {
    // Columns (output units) on very different scales: one range per column fits them better.
    const values = Float32Array.from({ length: 64 }, (_, i) => Math.sin(i * 1.7) * (1 + (i % 4) * 10));
    const converter = quantizeTensor(values, [16, 4], 'uint8', 'converter');
    const best = quantizeTensor(values, [16, 4], 'uint8', 'best');
    const sse = (q: typeof best) =>
      values.reduce((sum, v, i) => {
        const c = i % 4;
        const min = Array.isArray(q.min) ? q.min[c] : q.min;
        const scale = Array.isArray(q.scale) ? q.scale[c] : q.scale;
        return sum + (v - (q.data[i] * scale + min)) ** 2;
      }, 0);
    assert.equal(best.scheme, 'per-channel');
    assert.ok(sse(best) < sse(converter) / 2, `${sse(best)} vs ${sse(converter)}`);
    const pruned = Float32Array.from(values, (v, i) => (i % 3 === 0 ? 0 : v));
    const { weightSpecs, weightData } = encodeWeights([weight('w', [16, 4], pruned)], 'uint8', 'best');
    const [decoded] = decodeWeightData(weightSpecs, weightData);
    pruned.forEach((v, i) => {
      if (v === 0) assert.equal((decoded.values as Float32Array)[i], 0, `zero at ${i}`);
    });
  });

  it('keeps int32 weights unquantized in the same buffer, in order', () => {
    const kernel = values(40, -1, 1, 9);
    const steps = new Int32Array([3, -7, 2147483647, -2147483648, 0]);
    const bias = values(4, -0.5, 0.5, 13);
    const { weightSpecs, weightData } = encodeWeights(
      [weight('d/kernel', [10, 4], kernel), weight('counter', [5], steps), weight('d/bias', [4], bias)],
      'uint8',
    );
    assert.deepEqual(weightSpecs[1], { name: 'counter', shape: [5], dtype: 'int32' });
    assert.equal(weightData.byteLength, 40 + 5 * 4 + 4);
    assert.deepEqual(Array.from(new Int32Array(weightData.slice(40, 60))), Array.from(steps));
    const decoded = tfjsDecode(weightSpecs, weightData);
    assert.deepEqual(decoded.counter, Array.from(steps));
    assert.equal(decoded['d/kernel'].length, 40);
    assert.equal(decoded['d/bias'].length, 4);
  });

  it('a constant tensor becomes zeros with scale 1 and min = the constant', () => {
    const { weightSpecs, weightData } = encodeWeights(
      [weight('c', [6], new Float32Array(6).fill(0.25))],
      'uint8',
    );
    assert.deepEqual(weightSpecs[0].quantization, {
      dtype: 'uint8',
      min: 0.25,
      scale: 1,
      original_dtype: 'float32',
    });
    assert.deepEqual(Array.from(new Uint8Array(weightData)), [0, 0, 0, 0, 0, 0]);
    assert.deepEqual(tfjsDecode(weightSpecs, weightData).c, [0.25, 0.25, 0.25, 0.25, 0.25, 0.25]);
  });

  it('decodes converter-quantized input (re-quantizing a quantized model) and rejects short data', () => {
    const kernel = values(64, -1, 1, 21);
    const u16 = encodeWeights([weight('k', [64], kernel)], 'uint16');
    const back = decodeWeightData(u16.weightSpecs, u16.weightData)[0].values;
    const viaTfjs = tfjsDecode(u16.weightSpecs, u16.weightData).k;
    assert.deepEqual(Array.from(back), viaTfjs);
    assert.throws(() => decodeWeightData(u16.weightSpecs, u16.weightData.slice(0, 100)), /too short/);
  });

  describe('layers model saved quantized', () => {
    let dir: string;
    let model: tfl.LayersModel;
    const probe = values(8 * 64, -1, 1, 99);

    before(async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-quant-'));
      model = tfl.sequential({
        layers: [
          tfl.layers.dense({ units: 128, inputShape: [64], activation: 'relu' }),
          tfl.layers.dense({ units: 10 }),
        ],
      });
      await model.save(fileSaveHandler(path.join(dir)));
    });
    after(async () => {
      model.dispose();
      await fs.rm(dir, { recursive: true, force: true });
    });

    async function predictFrom(modelJson: string): Promise<Float32Array> {
      const loaded = await tfl.loadLayersModel(fileLoadHandler(modelJson));
      const out = tf.tidy(() => loaded.predict(tf.tensor2d(probe, [8, 64])) as tf.Tensor);
      const data = (await out.data()) as Float32Array;
      out.dispose();
      loaded.dispose();
      return data;
    }

    for (const [dtype, ratio, tolerance] of [
      ['uint8', 4, 0.05],
      ['uint16', 2, 3e-4],
      ['float16', 2, 3e-3],
    ] as const) {
      it(`${dtype}: ${ratio}x smaller on disk, loads with tf.loadLayersModel, outputs close`, async () => {
        const before = tf.memory().numTensors;
        const target = path.join(dir, dtype);
        await fs.mkdir(target);
        const quantized = await quantizeLayersModel(model, dtype);
        await fileSaveHandler(target).save?.(quantized);

        const original = (await fs.stat(path.join(dir, 'weights.bin'))).size;
        const compressed = (await fs.stat(path.join(target, 'weights.bin'))).size;
        assert.equal(original, (64 * 128 + 128 + 128 * 10 + 10) * 4);
        assert.equal(original / compressed, ratio);

        const written = JSON.parse(await fs.readFile(path.join(target, 'model.json'), 'utf8'));
        for (const spec of written.weightsManifest[0].weights) {
          assert.equal(spec.dtype, 'float32');
          assert.equal(spec.quantization.dtype, dtype);
          assert.equal(spec.quantization.original_dtype, 'float32');
        }

        const reference = await predictFrom(path.join(dir, 'model.json'));
        const result = await predictFrom(path.join(target, 'model.json'));
        let worst = 0;
        for (let i = 0; i < reference.length; i++)
          worst = Math.max(worst, Math.abs(reference[i] - result[i]));
        assert.ok(worst > 0 || dtype !== 'uint8', 'uint8 weights must change the outputs a little');
        assert.ok(worst < tolerance, `max abs output difference ${worst} >= ${tolerance}`);
        assert.equal(tf.memory().numTensors, before);
      });
    }

    it('uint8 output error stays within the bound the weight error implies (linear layer)', async () => {
      const linear = tfl.sequential({ layers: [tfl.layers.dense({ units: 5, inputShape: [64] })] });
      try {
        const bias = tf.tensor1d(values(5, -0.3, 0.3, 4));
        linear.layers[0].setWeights([linear.layers[0].getWeights()[0], bias]);
        bias.dispose();
        const quantized = await quantizeLayersModel(linear, 'uint8');
        const [kernelSpec, biasSpec] = quantized.weightSpecs as ManifestEntry[];
        const loaded = await tfl.loadLayersModel(tf.io.fromMemory(quantized));
        const x = tf.tensor2d(probe, [8, 64]);
        const a = linear.predict(x) as tf.Tensor;
        const b = loaded.predict(x) as tf.Tensor;
        const [ya, yb] = [await a.data(), await b.data()];
        tf.dispose([x, a, b]);
        loaded.dispose();
        const halfK = (kernelSpec.quantization?.scale as number) / 2;
        const halfB = (biasSpec.quantization?.scale as number) / 2;
        for (let row = 0; row < 8; row++) {
          let l1 = 0;
          for (let i = 0; i < 64; i++) l1 += Math.abs(probe[row * 64 + i]);
          const bound = l1 * halfK + halfB + 1e-5;
          for (let j = 0; j < 5; j++) {
            const d = Math.abs(ya[row * 5 + j] - yb[row * 5 + j]);
            assert.ok(d <= bound, `row ${row} out ${j}: ${d} > ${bound}`);
          }
        }
      } finally {
        linear.dispose();
      }
    });
  });
});
