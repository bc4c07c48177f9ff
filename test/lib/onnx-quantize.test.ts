import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { onnx } from '../../lib/models/onnx-proto';
import { exportLayersModelToOnnx } from '../../lib/models/convert/onnx-export';
import { attr, GraphBuilder, OnnxType, tensorValueInfo } from '../../lib/models/convert/onnx-graph';
import {
  calibrateOnnxActivations,
  int8WeightsNeedReducedRange,
  quantizeOnnxInt8,
  quantizeOnnxInt8Calibrated,
  quantizeSymmetric,
  type OnnxInt8Report,
} from '../../lib/models/compress/onnx-quantize';
import { availableOrtRuntimes, liveOrtSessionCount, loadOrt } from '../../lib/models/runtime/ort-session';
import { useBackend } from '../../lib/models/runtime/tfjs';
import { maxAbsDiff, randomInput, randomizeWeights, referenceModels, runOnnx } from '../helpers/onnx-models';

const L = tfl.layers;

/**
 * The int8 error bound: the largest output difference may be at most this fraction of the
 * float model's largest output magnitude (8-bit weights and activations: ~1% is typical).
 */
const RELATIVE_BOUND = 0.05;
/** 7-bit weights (x86 without VNNI, see int8WeightsNeedReducedRange) have twice the step. */
const boundFor = (report: { reduceRange: boolean }): number => RELATIVE_BOUND * (report.reduceRange ? 2 : 1);

function maxAbs(values: Float32Array): number {
  return values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

/** Op types of the graph ORT actually runs, after its optimizations (onnxruntime-node only). */
async function optimizedOpTypes(bytes: Uint8Array): Promise<string[]> {
  const ort = loadOrt('onnxruntime-node');
  if (!ort) throw new Error('onnxruntime-node is not installed');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-onnx-opt-'));
  try {
    const file = path.join(dir, 'optimized.onnx');
    const session = await ort.InferenceSession.create(bytes, {
      optimizedModelFilePath: file,
      logSeverityLevel: 3,
    });
    await session.release();
    const optimized = onnx.ModelProto.decode(await fs.readFile(file));
    return (optimized.graph?.node ?? []).map((n) => n.opType ?? '');
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }
}

describe('int8 quantization of ONNX models', function () {
  this.timeout(60000);
  const runtimes = availableOrtRuntimes();
  const hasNode = runtimes.includes('onnxruntime-node');

  before(async () => {
    await useBackend(['cpu']);
  });

  afterEach(() => {
    assert.equal(liveOrtSessionCount(), 0, 'every ORT session is released');
  });

  it('uses 7-bit weights exactly where ONNX Runtime int8 kernels would saturate (x86 without VNNI)', () => {
    assert.equal(int8WeightsNeedReducedRange('x64', ['sse4_2', 'avx', 'avx2']), true);
    assert.equal(int8WeightsNeedReducedRange('x64', ['avx2', 'avx512f', 'avx512_vnni']), false);
    assert.equal(int8WeightsNeedReducedRange('x64', ['avx2', 'avx_vnni']), false);
    assert.equal(int8WeightsNeedReducedRange('x64', null), true);
    assert.equal(int8WeightsNeedReducedRange('arm64', ['fp', 'asimd']), false);
    const q = quantizeSymmetric(Float32Array.from([1, -0.25]), [2], null, true);
    assert.deepEqual(Array.from(q.values), [63, -16]);
  });

  it('quantizes symmetrically per channel within half a step', () => {
    const data = Float32Array.from([0.6, -1, 0.25, 0.03, -0.04, 0.01]);
    const q = quantizeSymmetric(data, [2, 3], 0);
    assert.deepEqual(Array.from(q.scales), [1 / 127, 0.04 / 127].map(Math.fround));
    assert.deepEqual(Array.from(q.values), [76, -127, 32, 95, -127, 32]);
    for (let i = 0; i < data.length; i++) {
      const scale = q.scales[Math.floor(i / 3)];
      assert.ok(Math.abs(q.values[i] * scale - data[i]) <= scale / 2 + 1e-9);
    }
    const perTensor = quantizeSymmetric(data, [2, 3], null, true);
    assert.equal(perTensor.scales.length, 1);
    assert.equal(Math.max(...Array.from(perTensor.values, Math.abs)), 63, 'reduced range is 7 bits');
  });

  const references: {
    name: string;
    build: () => tfl.LayersModel;
    weightScale: number;
    maxRatio: number;
    int8Ops: string[];
    floatOps: string[];
  }[] = [
    {
      name: 'MNIST CNN (Conv as QDQ)',
      build: referenceModels.mnistCnn,
      weightScale: 0.1,
      maxRatio: 0.3,
      int8Ops: ['QLinearConv', 'DynamicQuantizeMatMul'],
      floatOps: ['Conv', 'MatMul', 'Gemm'],
    },
    {
      name: 'LSTM(64) 50x6 + Dense(1)',
      build: () => referenceModels.lstm(undefined, 'glorotUniform'),
      weightScale: 0.2,
      maxRatio: 0.4,
      int8Ops: ['DynamicQuantizeLSTM'],
      floatOps: ['LSTM'],
    },
    {
      name: 'dense autoencoder 60-32-8-32-60',
      build: referenceModels.autoencoder,
      weightScale: 0.2,
      maxRatio: 0.5,
      int8Ops: ['DynamicQuantizeMatMul'],
      floatOps: ['MatMul', 'Gemm'],
    },
  ];

  for (const ref of references) {
    it(`${ref.name}: int8 in every runtime, within the bound, smaller`, async () => {
      const model = ref.build();
      try {
        randomizeWeights(model, ref.weightScale);
        const float = exportLayersModelToOnnx(model);
        const calibration = [randomInput(model, 16)];
        const { model: int8, report } = await quantizeOnnxInt8Calibrated(float, calibration);
        assert.equal(report.skipped.length, 0, JSON.stringify(report.skipped));
        assert.ok(report.sizeRatio < ref.maxRatio, `size ratio ${report.sizeRatio}`);
        assert.equal(report.bytesAfter, int8.byteLength);
        const input = randomInput(model, 8);
        for (const runtime of runtimes) {
          const expected = await runOnnx(float, runtime, input);
          const got = await runOnnx(int8, runtime, input);
          assert.deepEqual(got.dims, expected.dims);
          const diff = maxAbsDiff(expected.data, got.data);
          const bound = boundFor(report) * maxAbs(expected.data);
          assert.ok(diff > 0, `${runtime}: the int8 model computes something different from the float one`);
          assert.ok(diff <= bound, `${runtime}: max abs difference ${diff} > ${bound}`);
        }
        if (hasNode) {
          const ops = await optimizedOpTypes(int8);
          for (const op of ref.int8Ops) assert.ok(ops.includes(op), `ORT runs ${op}: ${ops.join(' ')}`);
          for (const op of ref.floatOps)
            assert.ok(!ops.includes(op), `no float ${op} left: ${ops.join(' ')}`);
        }
      } finally {
        model.dispose();
      }
    });
  }

  it('measures the ranges of every Conv input and output (after its Relu)', async () => {
    const model = referenceModels.mnistCnn();
    try {
      randomizeWeights(model, 0.1);
      const float = exportLayersModelToOnnx(model);
      const ranges = await calibrateOnnxActivations(float, [randomInput(model, 4)]);
      const nodes = onnx.ModelProto.decode(float).graph?.node ?? [];
      const convInputs = nodes.filter((n) => n.opType === 'Conv').map((n) => n.input?.[0] ?? '');
      assert.equal(convInputs.length, 2);
      for (const name of convInputs) assert.ok(ranges[name], `range of ${name}`);
      const reluOutputs = nodes.filter((n) => n.opType === 'Relu').map((n) => n.output?.[0] ?? '');
      const measuredReluOutputs = reluOutputs.filter((name) => ranges[name]);
      assert.equal(measuredReluOutputs.length, 2, 'both conv+relu outputs');
      for (const name of measuredReluOutputs) assert.equal(ranges[name].min, 0);
    } finally {
      model.dispose();
    }
  });

  it('keeps Conv float without calibration, or quantizes it dynamically (ConvInteger) on request', async () => {
    const model = tfl.sequential({
      layers: [
        L.inputLayer({ inputShape: [12, 12, 3] }),
        L.conv2d({ filters: 8, kernelSize: 3, padding: 'same', activation: 'relu' }),
        L.conv2d({ filters: 4, kernelSize: 3, strides: 2 }),
        L.globalAveragePooling2d({}),
      ],
    });
    try {
      randomizeWeights(model);
      const float = exportLayersModelToOnnx(model);
      const plain = quantizeOnnxInt8(float);
      assert.deepEqual(
        plain.report.skipped.map((s) => s.op),
        ['Conv', 'Conv'],
      );
      const dynamic = quantizeOnnxInt8(float, { convWithoutRanges: 'dynamic', perChannel: false });
      assert.deepEqual(
        dynamic.report.quantized.map((q) => q.as),
        ['ConvInteger', 'ConvInteger'],
      );
      const input = randomInput(model, 4);
      for (const runtime of runtimes) {
        const expected = await runOnnx(float, runtime, input);
        const got = await runOnnx(dynamic.model, runtime, input);
        const diff = maxAbsDiff(expected.data, got.data);
        assert.ok(diff <= RELATIVE_BOUND * maxAbs(expected.data), `${runtime}: ${diff}`);
      }
    } finally {
      model.dispose();
    }
  });

  it('quantizes a bidirectional LSTM and reports that GRU stays float', async () => {
    const model = tfl.sequential({
      layers: [
        L.inputLayer({ inputShape: [10, 4] }),
        L.bidirectional({ layer: L.lstm({ units: 8, returnSequences: true }) as tfl.RNN }),
        L.gru({ units: 6 }),
        L.dense({ units: 3 }),
      ],
    });
    try {
      randomizeWeights(model);
      const float = exportLayersModelToOnnx(model);
      const { model: int8, report } = quantizeOnnxInt8(float);
      assert.deepEqual(
        report.quantized.map((q) => q.as),
        ['DynamicQuantizeLSTM', 'MatMulInteger'],
      );
      assert.deepEqual(
        report.skipped.map((s) => s.op),
        ['GRU'],
      );
      const input = randomInput(model, 4);
      for (const runtime of runtimes) {
        const expected = await runOnnx(float, runtime, input);
        const got = await runOnnx(int8, runtime, input);
        const diff = maxAbsDiff(expected.data, got.data);
        assert.ok(diff <= RELATIVE_BOUND * maxAbs(expected.data), `${runtime}: ${diff}`);
      }
    } finally {
      model.dispose();
    }
  });

  it('quantizes Gemm with transposed B, alpha, beta and bias (PyTorch Linear export)', async () => {
    const [inDim, outDim] = [20, 7];
    const g = new GraphBuilder();
    g.reserve('x', 'y');
    const random = (n: number) => Float32Array.from({ length: n }, () => Math.random() * 2 - 1);
    const w = g.floats('weight', random(outDim * inDim), [outDim, inDim]);
    const c = g.floats('bias', random(outDim), [outDim]);
    g.node('Gemm', ['x', w, c], {
      attrs: [attr.int('transB', 1), attr.float('alpha', 0.5), attr.float('beta', 2)],
      outputs: ['y'],
    });
    const float = onnx.ModelProto.encode({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 13 }],
      graph: {
        name: 'linear',
        node: g.nodes,
        initializer: g.initializers,
        input: [tensorValueInfo('x', OnnxType.FLOAT, ['batch', inDim])],
        output: [tensorValueInfo('y', OnnxType.FLOAT, ['batch', outDim])],
      },
    }).finish();
    const { model: int8, report } = quantizeOnnxInt8(float);
    assert.deepEqual(
      report.quantized.map((q) => q.op),
      ['Gemm'],
    );
    const input = { data: random(5 * inDim), dims: [5, inDim] };
    for (const runtime of runtimes) {
      const expected = await runOnnx(float, runtime, input);
      const got = await runOnnx(int8, runtime, input);
      const diff = maxAbsDiff(expected.data, got.data);
      assert.ok(diff <= RELATIVE_BOUND * maxAbs(expected.data), `${runtime}: ${diff}`);
    }
  });

  it('leaves tiny weights float and rejects models older than opset 11', () => {
    const model = referenceModels.autoencoder();
    try {
      const float = exportLayersModelToOnnx(model);
      const { report } = quantizeOnnxInt8(float, { minWeightElements: 1000 });
      const skippedWeights = (r: OnnxInt8Report) => r.skipped.map((s) => s.reason);
      assert.equal(report.quantized.length, 2, 'the two 60x32 / 32x60 matrices');
      assert.equal(skippedWeights(report).length, 2);
      assert.equal(report.weightsInt8, 2 * 60 * 32);
      assert.equal(report.weightsFloat, 2 * 32 * 8 + (32 + 8 + 32 + 60), 'small matrices and biases');
      const old = onnx.ModelProto.decode(float);
      old.opsetImport[0].version = 10;
      assert.throws(() => quantizeOnnxInt8(onnx.ModelProto.encode(old).finish()), /opset 11/);
    } finally {
      model.dispose();
    }
  });
});
