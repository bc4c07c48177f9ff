import assert from 'node:assert/strict';
import { promises as fs, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sharedDir } from '../helpers/shared-data';
import * as ort from 'onnxruntime-web';
import {
  convertTfliteToOnnx,
  isTfliteBuffer,
  readTflite,
  TfliteError,
  type TfliteConversion,
} from '../../lib/models/convert/tflite';
import * as S from '../../lib/models/convert/tflite/schema/tflite-schema';
import {
  availableOrtRuntimes,
  createOrtSession,
  loadOrt,
  type OrtSessionOptions,
} from '../../lib/models/runtime/ort-session';
import { OrtRunner } from '../../lib/models/runtime/ort-runner';
import { mixedQdqModel, qdqSessionOptions, type QdqKernels } from '../../lib/models/runtime/qdq-kernels';
import { onnx } from '../../lib/models/onnx-proto';
import { GraphBuilder, OnnxType, tensorFloats, tensorValueInfo } from '../../lib/models/convert/onnx-graph';
import { readModelFiles } from '../../lib/models/store/model-files';
import { ModelHandle } from '../../lib/models/serve/model-handle';
import { rng } from '../fixtures/reference';
import { Net, TfliteBuilder } from '../fixtures/tflite-builder';
import {
  closeReference,
  loadReference,
  randomInputs,
  tfliteReferenceUnavailable,
} from '../helpers/tflite-reference';

const MODELS = sharedDir('models', 'tflite');
const REAL_FILES = ['hello_world_float', 'hello_world_int8', 'trained_lstm', 'micro_speech_quantized'];

type Typed = Float32Array | Int8Array | Uint8Array | Int16Array | Int32Array;

async function runOnnx(
  conv: TfliteConversion,
  inputs: Typed[],
  options: OrtSessionOptions = {},
): Promise<number[][]> {
  const session = await createOrtSession(conv.onnx, 'auto', { graphOptimizationLevel: 'all', ...options });
  try {
    const ortMod = loadOrt(session.runtime)!;
    const feeds: Record<string, ort.Tensor> = {};
    conv.inputs.forEach((io, k) => {
      const data = inputs[k];
      const type =
        data instanceof Float32Array ? 'float32' : (io.type as 'int8' | 'uint8' | 'int16' | 'int32');
      feeds[io.onnxName] = new ortMod.Tensor(type, data, io.shape);
    });
    const out = await session.session.run(feeds);
    return conv.outputs.map((io) => Array.from(out[io.onnxName].data as ArrayLike<number>, Number));
  } finally {
    await session.release();
  }
}

/** Runs the model in TFLite's interpreter (a fresh one: LSTM state tensors carry over between runs). */
async function runReference(bytes: Uint8Array, inputs: Typed[]): Promise<number[][]> {
  const ref = await loadReference(bytes);
  if (!ref) throw new Error(tfliteReferenceUnavailable());
  try {
    return await ref.run(inputs);
  } finally {
    await ref.close();
  }
}

function maxDiff(a: number[], b: number[]): number {
  assert.equal(a.length, b.length, 'output sizes differ');
  return a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
}

/**
 * Compares converted ONNX (raw types) with the reference on `trials` random inputs. Float outputs
 * must agree within `floatTol`, integer outputs within one quantization step. A quantized model
 * is checked on every kernel choice (ONNX Runtime's fused integer kernels, float kernels between
 * the quantize steps and, with a quantized convolution, convolutions on float kernels).
 */
async function checkAgainstReference(bytes: Uint8Array, trials = 3, floatTol = 1e-5): Promise<number> {
  const conv = convertTfliteToOnnx(bytes, { io: 'raw' });
  const mixed = mixedQdqModel(conv.onnx);
  const kernels: QdqKernels[] =
    conv.quantization === 'float'
      ? ['integer']
      : ['integer', 'float', ...(mixed ? (['mixed'] as const) : [])];
  let worst = 0;
  for (let trial = 0; trial < trials; trial++) {
    const inputs = randomInputs(conv, 100 + trial);
    const want = await runReference(bytes, inputs);
    for (const k of kernels) {
      const got = await runOnnx(
        k === 'mixed' ? { ...conv, onnx: mixed! } : conv,
        inputs,
        qdqSessionOptions(k),
      );
      conv.outputs.forEach((io, i) => {
        const d = maxDiff(got[i], want[i]);
        const tol = io.type === 'float32' ? floatTol : 1;
        assert.ok(d <= tol, `output ${io.name} (${io.type}), ${k} kernels: max |diff| ${d} > ${tol}`);
        worst = Math.max(worst, d);
      });
    }
  }
  return worst;
}

describe('TFLite models converted to ONNX', function () {
  this.timeout(60000);
  let reason = '';
  before(() => {
    reason = tfliteReferenceUnavailable();
    if (reason) console.log(`      skipping comparisons with TFLite's interpreter: ${reason}`);
  });
  after(() => closeReference());
  const withReference = (title: string, fn: () => Promise<void>) =>
    it(title, async function () {
      if (reason) this.skip();
      await fn();
    });

  describe('the real TFLite files', () => {
    for (const file of REAL_FILES) {
      withReference(`${file}: matches TFLite's interpreter`, async () => {
        const bytes = new Uint8Array(readFileSync(path.join(MODELS, `${file}.tflite`)));
        assert.ok(isTfliteBuffer(bytes));
        await checkAgainstReference(bytes, 4);
      });
    }

    withReference(
      'int8 inputs and outputs take and give real numbers (scale and zero point applied)',
      async () => {
        const bytes = new Uint8Array(readFileSync(path.join(MODELS, 'micro_speech_quantized.tflite')));
        const real = convertTfliteToOnnx(bytes);
        assert.equal(real.quantization, 'int8');
        const [inQ] = real.inputs.map((io) => io.quantization!);
        const [outQ] = real.outputs.map((io) => io.quantization!);
        const raw = randomInputs(convertTfliteToOnnx(bytes, { io: 'raw' }), 7)[0] as Int8Array;
        // Real values that quantize exactly to the raw ones.
        const x = Float32Array.from(raw, (q) => (q - inQ.zeroPoint) * inQ.scale);
        const [got] = await runOnnx(real, [x]);
        const [want] = await runReference(bytes, [raw]);
        const wantReal = want.map((q) => (q - outQ.zeroPoint) * outQ.scale);
        assert.ok(maxDiff(got, wantReal) <= outQ.scale * 1.0001, `real outputs differ by more than one step`);
        assert.ok(
          Math.abs(got.reduce((a, b) => a + b, 0) - 1) < 0.05,
          'softmax probabilities sum to about 1',
        );
      },
    );

    it('keeps the int8 computation in int8 kernels (QLinear/QDQ) and reports the ops', () => {
      const bytes = new Uint8Array(readFileSync(path.join(MODELS, 'micro_speech_quantized.tflite')));
      const conv = convertTfliteToOnnx(bytes);
      assert.deepEqual(conv.opCounts, { RESHAPE: 1, DEPTHWISE_CONV_2D: 1, FULLY_CONNECTED: 1, SOFTMAX: 1 });
      const text = Buffer.from(conv.onnx).toString('latin1');
      assert.ok(text.includes('DequantizeLinear') && text.includes('QuantizeLinear'));
      const graph = readTflite(bytes);
      assert.equal(graph.tensors[graph.inputs[0]].type, S.TensorType.INT8);
    });
  });

  describe('int8 models run fast and give the same numbers', () => {
    const file = (name: string) => new Uint8Array(readFileSync(path.join(MODELS, `${name}.tflite`)));

    it('int8 activations are carried as uint8 so ONNX Runtime fuses the ops into integer kernels', async function () {
      if (!loadOrt('onnxruntime-node')) {
        console.log('      skipped: onnxruntime-node does not load here (it writes the optimized graph)');
        this.skip();
      }
      const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-tflite-opt-'));
      try {
        const opTypes = async (conv: TfliteConversion) => {
          const out = path.join(dir, `opt-${Math.random()}.onnx`);
          const s = await createOrtSession(conv.onnx, 'onnxruntime-node', {
            graphOptimizationLevel: 'extended',
            optimizedModelFilePath: out,
          });
          await s.release();
          return (onnx.ModelProto.decode(await fs.readFile(out)).graph?.node ?? []).map((n) => n.opType);
        };
        const bytes = file('micro_speech_quantized');
        const now = await opTypes(convertTfliteToOnnx(bytes));
        assert.ok(now.includes('QLinearConv') && now.includes('QGemm'), now.join(' '));
        assert.ok(!now.includes('Conv') && !now.includes('Gemm'), now.join(' '));
      } finally {
        await fs.rm(dir, { recursive: true, force: true });
      }
    });

    it('mixed kernels: the convolution on float kernels with its exact weights, the rest fused, on both runtimes', async function () {
      const bytes = file('micro_speech_quantized');
      const conv = convertTfliteToOnnx(bytes, { io: 'quantized' });
      const mixed = mixedQdqModel(conv.onnx);
      assert.ok(mixed, 'the model has a quantized convolution');
      assert.equal(mixedQdqModel(convertTfliteToOnnx(file('hello_world_int8')).onnx), undefined);
      const nodesOf = (model: Uint8Array) =>
        (onnx.ModelProto.decode(model).graph?.node ?? []).map((n) => ({
          op: n.opType ?? '',
          inputs: n.input ?? [],
          outputs: n.output ?? [],
        }));
      const initOf = (model: Uint8Array, name: string) => {
        const t = onnx.ModelProto.decode(model).graph?.initializer?.find((i) => i.name === name);
        assert.ok(t, `initializer ${name}`);
        return t;
      };
      const after = nodesOf(mixed);
      const convAfter = after.find((n) => n.op === 'Conv')!;
      assert.ok(
        !after.some((n) => n.outputs.includes(convAfter.inputs[1])),
        'Conv weights are an initializer',
      );
      assert.ok(
        after.some((n) => n.op === 'DequantizeLinear'),
        'the other groups keep their QDQ',
      );
      // The float weights are what DequantizeLinear computes from the int8 ones, bit for bit.
      const before = nodesOf(conv.onnx);
      const convBefore = before.find((n) => n.op === 'Conv')!;
      const dq = before.find((n) => n.outputs[0] === convBefore.inputs[1])!;
      const q = initOf(conv.onnx, dq.inputs[0]).rawData!;
      const raw = new Int8Array(q.buffer, q.byteOffset, q.byteLength);
      const scales = tensorFloats(initOf(conv.onnx, dq.inputs[1]));
      const zp = initOf(conv.onnx, dq.inputs[2]).rawData!;
      const zps = new Int8Array(zp.buffer, zp.byteOffset, zp.byteLength);
      const w = tensorFloats(initOf(mixed, convAfter.inputs[1]));
      const inner = w.length / scales.length;
      w.forEach((v, i) => {
        const c = Math.floor(i / inner);
        assert.equal(v, Math.fround((raw[i] - zps[zps.length > 1 ? c : 0]) * scales[c]), `weight ${i}`);
      });
      const size = conv.inputs[0].shape.reduce((a, b) => a * b, 1);
      const x = Float32Array.from({ length: size }, (_, i) => ((i * 7) % 50) / 2 - 12);
      const outQ = conv.outputs[0].quantization!;
      for (const runtime of availableOrtRuntimes()) {
        const outputs: Record<string, number[]> = {};
        for (const k of ['mixed', 'integer', 'float'] as const) {
          const runner = await OrtRunner.create(conv.onnx, runtime, { qdqKernels: k });
          try {
            outputs[k] = Array.from(await runner.predict(x, 1));
            if (k === 'mixed') assert.match(runner.notes.join(' '), /convolutions on float kernels/);
          } finally {
            await runner.dispose();
          }
        }
        for (const k of ['integer', 'float']) {
          assert.ok(maxDiff(outputs.mixed, outputs[k]) <= outQ.scale * 1.0001, `${runtime}: mixed vs ${k}`);
        }
      }
    });

    it('small int8 inputs and outputs mapped by the runner equal the graph doing it, bit for bit', async () => {
      for (const name of ['hello_world_int8', 'micro_speech_quantized']) {
        const bytes = file(name);
        const inGraph = convertTfliteToOnnx(bytes);
        const byRunner = convertTfliteToOnnx(bytes, { io: 'quantized' });
        assert.ok(byRunner.ioQuantization && Object.keys(byRunner.ioQuantization).length > 0, name);
        const runner = await OrtRunner.create(byRunner.onnx, 'onnxruntime-web', { qdqKernels: 'integer' });
        try {
          assert.equal(runner.inputs[0].dtype, 'float32');
          assert.equal(runner.outputs[0].dtype, 'float32');
          const q = inGraph.inputs[0].quantization!;
          const size = inGraph.inputs[0].shape.reduce((a, b) => a * b, 1);
          const random = rng(11);
          for (let trial = 0; trial < 4; trial++) {
            // Exact halves between steps (rounded half to even), values far outside the range, noise.
            const x = Float32Array.from({ length: size }, (_, i) => {
              const step = Math.floor(random() * 300) - 150;
              if (trial === 0) return (step - q.zeroPoint + 0.5) * q.scale;
              if (trial === 1) return (i % 2 ? 1 : -1) * 1e6;
              return (random() * 280 - 140) * q.scale;
            });
            const got = await runner.run({ [runner.inputs[0].name]: x }, 1);
            const [want] = await runOnnx(inGraph, [x], { executionProviders: ['wasm'] });
            assert.deepEqual(Array.from(got[runner.outputs[0].name]), want, `${name}, trial ${trial}`);
          }
        } finally {
          await runner.dispose();
        }
      }
    });

    it('inputs written into reused buffers: queued runs keep their own inputs and outputs', async () => {
      // A float model whose output is its input plus one (small enough to be copied into the
      // runner's reused buffer) and the int8 model with integer inputs and outputs.
      const g = new GraphBuilder();
      g.reserve('x', 'y');
      g.node('Add', ['x', g.floats('one', [1], [])], { outputs: ['y'] });
      const plusOne = onnx.ModelProto.encode(
        onnx.ModelProto.create({
          irVersion: 10,
          opsetImport: [{ domain: '', version: 17 }],
          graph: {
            name: 'plus_one',
            node: g.nodes,
            initializer: g.initializers,
            input: [tensorValueInfo('x', OnnxType.FLOAT, ['batch', 4])],
            output: [tensorValueInfo('y', OnnxType.FLOAT, ['batch', 4])],
          },
        }),
      ).finish();
      const int8 = convertTfliteToOnnx(file('hello_world_int8'), { io: 'quantized' }).onnx;
      for (const runtime of availableOrtRuntimes()) {
        for (const [model, size] of [
          [plusOne, 4],
          [int8, 1],
        ] as const) {
          const runner = await OrtRunner.create(model, runtime, { qdqKernels: 'integer' });
          try {
            const name = runner.inputs[0].name;
            const out = runner.outputs[0].name;
            const inputs = [0, 1, 2, 3].map((k) =>
              Float32Array.from({ length: size }, (_, i) => k - i * 0.5),
            );
            const alone: Float32Array[] = [];
            for (const x of inputs) alone.push(Float32Array.from((await runner.run({ [name]: x }, 1))[out]));
            // Queued together: each run's input is written into the same buffer after the run before.
            const queued = await Promise.all(inputs.map((x) => runner.run({ [name]: x }, 1)));
            queued.forEach((r, k) =>
              assert.deepEqual(Array.from(r[out]), Array.from(alone[k]), `${runtime}, run ${k}`),
            );
            if (model === plusOne) assert.deepEqual(Array.from(alone[2]), [3, 2.5, 2, 1.5]);
            // Batches (another length) and the caller's arrays are left as they were.
            const batch = Float32Array.from({ length: 2 * size }, (_, i) => i);
            const before = Array.from(batch);
            const both = (await runner.run({ [name]: batch }, 2))[out];
            assert.equal(both.length, 2 * size);
            assert.deepEqual(Array.from(batch), before);
            assert.deepEqual(
              Array.from(inputs[3]),
              Array.from({ length: size }, (_, i) => 3 - i * 0.5),
            );
          } finally {
            await runner.dispose();
          }
        }
      }
    });

    withReference('the kernels chosen at load are named and stay within one step of TFLite', async () => {
      const bytes = file('micro_speech_quantized');
      const conv = convertTfliteToOnnx(bytes, { io: 'quantized' });
      const runner = await OrtRunner.create(conv.onnx, availableOrtRuntimes()[0]);
      try {
        assert.ok(['integer', 'float', 'mixed'].includes(runner.qdqKernels ?? ''));
        assert.match(
          runner.notes.join(' '),
          /quantized ops run on (integer|float) kernels.*measured at load/,
        );
        const raw = randomInputs(convertTfliteToOnnx(bytes, { io: 'raw' }), 5)[0] as Int8Array;
        const inQ = conv.inputs[0].quantization!;
        const outQ = conv.outputs[0].quantization!;
        const x = Float32Array.from(raw, (v) => (v - inQ.zeroPoint) * inQ.scale);
        const got = await runner.predict(x, 1);
        const [want] = await runReference(bytes, [raw]);
        const wantReal = want.map((v) => (v - outQ.zeroPoint) * outQ.scale);
        assert.ok(maxDiff(Array.from(got), wantReal) <= outQ.scale * 1.0001);
      } finally {
        await runner.dispose();
      }
    });
  });

  describe('operators, on small models written with the generated builder', () => {
    const P = S.Padding;
    const A = S.ActivationFunctionType;
    const O = S.BuiltinOptions;
    const Op = S.BuiltinOperator;
    const cases: Record<string, (n: Net) => [number[], number[]]> = {
      'CONV_2D (SAME, RELU) and CONV_2D (VALID, stride 2, dilation 2, RELU6)': (n) => {
        const x = n.act([1, 9, 9, 3]);
        const w1 = n.weight([4, 3, 3, 3], 0);
        const y1 = n.act([1, 9, 9, 4], 0, 3);
        n.b.op(
          Op.CONV_2D,
          [x, w1, n.bias(4, x, w1)],
          [y1],
          O.Conv2DOptions,
          new S.Conv2DOptionsT(P.SAME, 1, 1, A.RELU),
        );
        const w2 = n.weight([5, 3, 3, 4], 0);
        const y2 = n.act([1, 3, 3, 5], 0, 6);
        n.b.op(
          Op.CONV_2D,
          [y1, w2, n.bias(5, y1, w2)],
          [y2],
          O.Conv2DOptions,
          new S.Conv2DOptionsT(P.VALID, 2, 2, A.RELU6, 2, 2),
        );
        return [[x], [y2]];
      },
      'DEPTHWISE_CONV_2D (multiplier 2, stride 2, SAME) and MAX_POOL_2D / AVERAGE_POOL_2D': (n) => {
        const x = n.act([1, 8, 8, 3]);
        const w = n.weight([1, 3, 3, 6], 3);
        const y = n.act([1, 4, 4, 6], -2, 2);
        n.b.op(
          Op.DEPTHWISE_CONV_2D,
          [x, w, n.bias(6, x, w)],
          [y],
          O.DepthwiseConv2DOptions,
          new S.DepthwiseConv2DOptionsT(P.SAME, 2, 2, 2, A.NONE),
        );
        const m = n.act([1, 2, 2, 6], -2, 2);
        n.b.op(Op.MAX_POOL_2D, [y], [m], O.Pool2DOptions, new S.Pool2DOptionsT(P.VALID, 2, 2, 2, 2, A.NONE));
        const a = n.act([1, 4, 4, 6], -2, 2);
        n.b.op(
          Op.AVERAGE_POOL_2D,
          [y],
          [a],
          O.Pool2DOptions,
          new S.Pool2DOptionsT(P.SAME, 1, 1, 3, 3, A.NONE),
        );
        return [[x], [m, a]];
      },
      'FULLY_CONNECTED (RELU, and keep_num_dims)': (n) => {
        const x = n.act([1, 3, 6]);
        const w = n.weightPerTensor([5, 6]);
        const y = n.act([3, 5], 0, 2);
        n.b.op(
          Op.FULLY_CONNECTED,
          [x, w, n.bias(5, x, w)],
          [y],
          O.FullyConnectedOptions,
          new S.FullyConnectedOptionsT(A.RELU),
        );
        const w2 = n.weightPerTensor([4, 5]);
        const z = n.act([3, 4], -2, 2);
        n.b.op(
          Op.FULLY_CONNECTED,
          [y, w2, -1],
          [z],
          O.FullyConnectedOptions,
          new S.FullyConnectedOptionsT(A.NONE),
        );
        return [[x], [z]];
      },
      // Each op on the input: chained int8 ops may add up their one-step rounding differences.
      'ADD / SUB / MUL with broadcasting constants and fused activations': (n) => {
        const x = n.act([1, 4, 4, 3]);
        const a = n.act([1, 4, 4, 3], 0, 2);
        n.b.op(Op.ADD, [x, n.constant([3])], [a], O.AddOptions, new S.AddOptionsT(A.RELU));
        const s = n.act([1, 4, 4, 3], -2, 2);
        n.b.op(Op.SUB, [n.constant([1, 1, 1, 3]), x], [s], O.SubOptions, new S.SubOptionsT(A.NONE));
        const m = n.act([1, 4, 4, 3], -1, 1);
        n.b.op(Op.MUL, [x, n.constant([3])], [m], O.MulOptions, new S.MulOptionsT(A.RELU_N1_TO_1));
        const sq = n.act([1, 4, 4, 3], 0, 1);
        n.b.op(Op.MUL, [x, x], [sq], O.MulOptions, new S.MulOptionsT(A.NONE));
        return [[x], [a, s, m, sq]];
      },
      'RESHAPE / SQUEEZE / EXPAND_DIMS / TRANSPOSE / CONCATENATION / PAD': (n) => {
        const x = n.act([1, 2, 3, 4]);
        const r = n.act([1, 6, 4]);
        n.b.op(
          Op.RESHAPE,
          [x, n.b.int32('shape', [1, 6, 4])],
          [r],
          O.ReshapeOptions,
          new S.ReshapeOptionsT([1, 6, 4]),
        );
        const q = n.act([6, 4]);
        n.b.op(Op.SQUEEZE, [r], [q], O.SqueezeOptions, new S.SqueezeOptionsT([0]));
        const e = n.act([6, 1, 4]);
        n.b.op(Op.EXPAND_DIMS, [q, n.b.int32('axis', [1], [])], [e]);
        const t = n.act([4, 6, 1]);
        n.b.op(Op.TRANSPOSE, [e, n.b.int32('perm', [2, 0, 1])], [t]);
        const c = n.act([4, 6, 2]);
        n.b.op(
          Op.CONCATENATION,
          [t, t],
          [c],
          O.ConcatenationOptions,
          new S.ConcatenationOptionsT(-1, A.NONE),
        );
        const p = n.act([5, 8, 2]);
        n.b.op(Op.PAD, [c, n.b.int32('pads', [0, 1, 1, 1, 0, 0], [3, 2])], [p]);
        return [[x], [p]];
      },
      'MEAN and STRIDED_SLICE (masks, negative stride, shrink)': (n) => {
        const x = n.act([1, 6, 5, 4]);
        const m = n.act([1, 1, 1, 4], -1, 1);
        n.b.op(Op.MEAN, [x, n.b.int32('axes', [1, 2])], [m], O.ReducerOptions, new S.ReducerOptionsT(true));
        const s = n.act([3, 4]);
        // x[0, 5:0:-2, 1, :] with the batch axis shrunk, begin mask on the last axis.
        n.b.op(
          Op.STRIDED_SLICE,
          [
            x,
            n.b.int32('begin', [0, 5, 1, 2]),
            n.b.int32('end', [1, 0, 2, 4]),
            n.b.int32('strides', [1, -2, 1, 1]),
          ],
          [s],
          O.StridedSliceOptions,
          new S.StridedSliceOptionsT(0b1000, 0, 0, 0, 0b0101),
        );
        const m2 = n.act([4], -1, 1);
        n.b.op(
          Op.MEAN,
          [x, n.b.int32('axes2', [0, 1, 2])],
          [m2],
          O.ReducerOptions,
          new S.ReducerOptionsT(false),
        );
        return [[x], [m, s, m2]];
      },
      'SOFTMAX (beta 0.5) / LOGISTIC / TANH': (n) => {
        const x = n.act([1, 10], -4, 4);
        const s = n.actQ([1, 10], 1 / 256, -128);
        n.b.op(Op.SOFTMAX, [x], [s], O.SoftmaxOptions, new S.SoftmaxOptionsT(0.5));
        const l = n.actQ([1, 10], 1 / 256, -128);
        n.b.op(Op.LOGISTIC, [x], [l]);
        const t = n.actQ([1, 10], 1 / 128, 0);
        n.b.op(Op.TANH, [x], [t]);
        return [[x], [s, l, t]];
      },
      'TRANSPOSE_CONV (SAME, stride 2; VALID, stride 2, odd output)': (n) => {
        const x = n.act([1, 3, 4, 3]);
        const w1 = n.weight([5, 3, 3, 3], 0);
        const y1 = n.act([1, 6, 8, 5], -3, 3);
        n.b.op(
          Op.TRANSPOSE_CONV,
          [n.b.int32('shape1', [1, 6, 8, 5]), w1, x, n.bias(5, x, w1)],
          [y1],
          O.TransposeConvOptions,
          // No fused activation: the reference interpreter predates TRANSPOSE_CONV's.
          new S.TransposeConvOptionsT(P.SAME, 2, 2, A.NONE),
        );
        const w2 = n.weight([2, 3, 2, 3], 0);
        const y2 = n.act([1, 8, 9, 2], -3, 3);
        n.b.op(
          Op.TRANSPOSE_CONV,
          [n.b.int32('shape2', [1, 8, 9, 2]), w2, x, n.bias(2, x, w2)],
          [y2],
          O.TransposeConvOptions,
          new S.TransposeConvOptionsT(P.VALID, 2, 2, A.NONE),
        );
        return [[x], [y1, y2]];
      },
      'RESIZE_BILINEAR (half-pixel centers; corners aligned) and RESIZE_NEAREST_NEIGHBOR': (n) => {
        const x = n.act([1, 3, 4, 2]);
        const size = n.b.int32('size', [6, 7]);
        const half = n.act([1, 6, 7, 2]);
        n.b.op(
          Op.RESIZE_BILINEAR,
          [x, size],
          [half],
          O.ResizeBilinearOptions,
          new S.ResizeBilinearOptionsT(false, true),
        );
        const corners = n.act([1, 6, 7, 2]);
        n.b.op(
          Op.RESIZE_BILINEAR,
          [x, size],
          [corners],
          O.ResizeBilinearOptions,
          new S.ResizeBilinearOptionsT(true, false),
        );
        const nearest = n.act([1, 6, 7, 2]);
        n.b.op(
          Op.RESIZE_NEAREST_NEIGHBOR,
          [x, size],
          [nearest],
          O.ResizeNearestNeighborOptions,
          new S.ResizeNearestNeighborOptionsT(false, true),
        );
        return [[x], [half, corners, nearest]];
      },
      'RELU / RELU6 / LEAKY_RELU / HARD_SWISH': (n) => {
        const x = n.act([1, 4, 4, 2], -8, 8);
        const r = n.act([1, 4, 4, 2], 0, 8);
        n.b.op(Op.RELU, [x], [r]);
        const r6 = n.act([1, 4, 4, 2], 0, 6);
        n.b.op(Op.RELU6, [x], [r6]);
        const lr = n.act([1, 4, 4, 2], -3, 8);
        n.b.op(Op.LEAKY_RELU, [x], [lr], O.LeakyReluOptions, new S.LeakyReluOptionsT(0.3));
        const hs = n.act([1, 4, 4, 2], -1, 8);
        n.b.op(Op.HARD_SWISH, [x], [hs]);
        return [[x], [r, r6, lr, hs]];
      },
    };

    for (const [title, build] of Object.entries(cases)) {
      for (const mode of ['float', 'int8'] as const) {
        withReference(`${title}: ${mode}`, async () => {
          const net = new Net(mode, 3);
          const [ins, outs] = build(net);
          await checkAgainstReference(net.b.finish(ins, outs), 2);
        });
      }
    }

    withReference(
      'QUANTIZE and DEQUANTIZE around an int8 network with float inputs and outputs',
      async () => {
        const n = new Net('int8', 5);
        const xf = n.b.float('x', [1, 6, 6, 2]);
        const xq = n.act([1, 6, 6, 2]);
        n.b.op(Op.QUANTIZE, [xf], [xq]);
        const w = n.weight([3, 3, 3, 2], 0);
        const y = n.act([1, 6, 6, 3], -3, 3);
        n.b.op(
          Op.CONV_2D,
          [xq, w, n.bias(3, xq, w)],
          [y],
          O.Conv2DOptions,
          new S.Conv2DOptionsT(P.SAME, 1, 1, A.NONE),
        );
        const yf = n.b.float('y', [1, 6, 6, 3]);
        n.b.op(Op.DEQUANTIZE, [y], [yf]);
        const bytes = n.b.finish([xf], [yf]);
        const conv = convertTfliteToOnnx(bytes);
        assert.equal(conv.quantization, 'int8');
        // Float output of an int8 conv: within one step of the conv's output scale.
        await checkAgainstReference(bytes, 2, 6 / 255 + 1e-6);
      },
    );

    const lstmModel = (opts: {
      clip: number;
      peephole: boolean;
      cifg: boolean;
      projection: boolean;
      timeMajor?: boolean;
    }) => {
      const b = new TfliteBuilder();
      const next = rng(11);
      const H = 5;
      const I = 3;
      const T = 4;
      const P2 = opts.projection ? 4 : H;
      const m = (shape: number[], range = 0.6) =>
        b.float(
          `c${next()}`,
          shape,
          Array.from({ length: shape.reduce((x, y) => x * y, 1) }, () => (next() * 2 - 1) * range),
        );
      const x = b.float('x', opts.timeMajor ? [T, 1, I] : [1, T, I]);
      const gateW = () => m([H, I]);
      const gateR = () => m([H, P2]);
      const inputs = [
        x,
        opts.cifg ? -1 : gateW(),
        gateW(),
        gateW(),
        gateW(),
        opts.cifg ? -1 : gateR(),
        gateR(),
        gateR(),
        gateR(),
        opts.peephole && !opts.cifg ? m([H]) : -1,
        opts.peephole ? m([H]) : -1,
        opts.peephole ? m([H]) : -1,
        opts.cifg ? -1 : m([H], 0.2),
        m([H], 0.2),
        m([H], 0.2),
        m([H], 0.2),
        opts.projection ? m([P2, H]) : -1,
        opts.projection ? m([P2], 0.1) : -1,
        b.tensor('h', [1, P2], S.TensorType.FLOAT32, { variable: true }),
        b.tensor('c', [1, H], S.TensorType.FLOAT32, { variable: true }),
        -1,
        -1,
        -1,
        -1,
      ];
      const y = b.float('y', opts.timeMajor ? [T, 1, P2] : [1, T, P2]);
      b.op(
        Op.UNIDIRECTIONAL_SEQUENCE_LSTM,
        inputs,
        [y],
        O.UnidirectionalSequenceLSTMOptions,
        new S.UnidirectionalSequenceLSTMOptionsT(A.TANH, opts.clip, 0, opts.timeMajor ?? false),
      );
      return b.finish([x], [y]);
    };
    withReference('UNIDIRECTIONAL_SEQUENCE_LSTM as ONNX LSTM (plain, time-major)', async () => {
      const bytes = lstmModel({ clip: 0, peephole: false, cifg: false, projection: false, timeMajor: true });
      assert.ok(Buffer.from(convertTfliteToOnnx(bytes).onnx).toString('latin1').includes('LSTM'));
      await checkAgainstReference(bytes);
    });
    withReference(
      'UNIDIRECTIONAL_SEQUENCE_LSTM unrolled: cell clip, peepholes, CIFG, projection',
      async () => {
        await checkAgainstReference(lstmModel({ clip: 0.5, peephole: true, cifg: false, projection: false }));
        await checkAgainstReference(lstmModel({ clip: 0, peephole: true, cifg: true, projection: true }));
      },
    );
  });

  it("MediaPipe's custom Convolution2DTransposeBias computes what TRANSPOSE_CONV with the same weights does", async function () {
    const runtime = availableOrtRuntimes()[0];
    if (!runtime) {
      console.log('      no ONNX Runtime loads here; skipping');
      this.skip();
    }
    const next = rng(29);
    const values = (n: number) => Array.from({ length: n }, () => next() * 2 - 1);
    const [weights, bias] = [values(4 * 3 * 3 * 2), values(4)];
    const model = (custom: boolean): Uint8Array => {
      const b = new TfliteBuilder();
      const x = b.float('x', [1, 5, 3, 2]);
      const w = b.float('w', [4, 3, 3, 2], weights);
      const c = b.float('bias', [4], bias);
      const y = b.float('y', [1, 10, 6, 4]);
      if (custom) {
        // TfLiteTransposeConvParams: padding (kTfLitePaddingSame = 1), stride width, stride height.
        b.custom('Convolution2DTransposeBias', [x, w, c], [y], new Uint8Array(Int32Array.of(1, 2, 2).buffer));
      } else {
        b.op(
          S.BuiltinOperator.TRANSPOSE_CONV,
          [b.int32('shape', [1, 10, 6, 4]), w, x, c],
          [y],
          S.BuiltinOptions.TransposeConvOptions,
          new S.TransposeConvOptionsT(S.Padding.SAME, 2, 2),
        );
      }
      return b.finish([x], [y]);
    };
    const x = Float32Array.from(values(5 * 3 * 2));
    const outputs: Float32Array[] = [];
    for (const custom of [true, false]) {
      const runner = await OrtRunner.create(convertTfliteToOnnx(model(custom)).onnx, runtime);
      try {
        outputs.push(await runner.predict(x, 1));
      } finally {
        await runner.dispose();
      }
    }
    assert.equal(outputs[0].length, 10 * 6 * 4);
    assert.deepEqual(Array.from(outputs[0]), Array.from(outputs[1]));
    assert.ok(outputs[0].some((v) => v !== 0));
  });

  describe('errors', () => {
    it('names an unsupported operator (code tflite-unsupported-op)', () => {
      const b = new TfliteBuilder();
      const x = b.float('x', [1, 4]);
      const y = b.float('y', [1, 4]);
      b.op(S.BuiltinOperator.CUMSUM, [x, b.int32('axis', [1], [])], [y]);
      assert.throws(
        () => convertTfliteToOnnx(b.finish([x], [y])),
        (err: unknown) =>
          err instanceof TfliteError && err.code === 'tflite-unsupported-op' && /CUMSUM/.test(err.message),
      );
    });

    it('refuses bytes that are not TFLite, and damaged files, with tflite-invalid', () => {
      assert.throws(
        () => convertTfliteToOnnx(new Uint8Array(64)),
        (e: unknown) => (e as TfliteError).code === 'tflite-invalid',
      );
      const bytes = new Uint8Array(readFileSync(path.join(MODELS, 'hello_world_float.tflite')));
      for (const cut of [12, 200, bytes.length >> 1]) {
        assert.throws(
          () => convertTfliteToOnnx(bytes.slice(0, cut)),
          (e: unknown) => e instanceof TfliteError,
          `cut at ${cut}`,
        );
      }
    });
  });

  describe('loading a .tflite file like an .onnx one', () => {
    let dir: string;
    before(async () => {
      dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-tflite-'));
      await fs.copyFile(path.join(MODELS, 'hello_world_int8.tflite'), path.join(dir, 'sine.tflite'));
    });
    after(() => fs.rm(dir, { recursive: true, force: true }));

    it('readModelFiles detects TFLite and returns the converted ONNX with a note', async () => {
      const files = await readModelFiles('sine.tflite', { root: dir });
      assert.equal(files.format, 'onnx');
      assert.ok(files.format === 'onnx' && files.tflite?.quantization === 'int8');
      assert.match(files.notes.join(' '), /TFLite model \(int8\) converted to ONNX: FULLY_CONNECTED x3/);
    });

    withReference('a model handle runs it on ONNX Runtime with real-number input and output', async () => {
      const handle = new ModelHandle({ userDir: dir });
      try {
        await handle.load('sine.tflite');
        const lease = handle.lease();
        const bytes = new Uint8Array(readFileSync(path.join(MODELS, 'hello_world_int8.tflite')));
        const conv = convertTfliteToOnnx(bytes);
        const inQ = conv.inputs[0].quantization!;
        const outQ = conv.outputs[0].quantization!;
        for (const q of [-128, -60, 0, 77, 127]) {
          const x = (q - inQ.zeroPoint) * inQ.scale;
          const got = (await lease.runner.predict(Float32Array.of(x), 1))[0];
          const [[want]] = await runReference(bytes, [Int8Array.of(q)]);
          assert.ok(Math.abs(got - (want - outQ.zeroPoint) * outQ.scale) <= outQ.scale * 1.0001, `x=${x}`);
        }
        lease.release();
      } finally {
        await handle.close();
      }
    });
  });
});
