import assert from 'node:assert/strict';
import * as tfl from '@tensorflow/tfjs-layers';
import { onnx } from '../../lib/models/onnx-proto';
import { exportLayersModelToOnnx, OnnxExportUnsupported } from '../../lib/models/convert/onnx-export';
import {
  availableOrtRuntimes,
  createOrtSession,
  liveOrtSessionCount,
  loadOrt,
  ortSessionBackend,
} from '../../lib/models/runtime/ort-session';
import { tf, useBackend } from '../../lib/models/runtime/tfjs';
import {
  maxAbsDiff,
  predictTfjs,
  predictTfjsWithShape,
  randomInput,
  randomizeWeights,
  referenceModels,
  runOnnx,
} from '../helpers/onnx-models';

const L = tfl.layers;
const TOLERANCE = 1e-4;

type Build = () => tfl.LayersModel;

/** A sequential model of fresh layers behind an input layer. */
function seqOf(inputShape: number[], make: () => tfl.layers.Layer[]): Build {
  return () => tfl.sequential({ layers: [L.inputLayer({ inputShape }), ...make()] });
}

function functional(make: () => { inputs: tfl.SymbolicTensor; outputs: tfl.SymbolicTensor }): Build {
  return () => tfl.model(make());
}

const activations = [
  'relu',
  'relu6',
  'sigmoid',
  'hardSigmoid',
  'tanh',
  'softmax',
  'logSoftmax', // registered in TF.js, missing from its ActivationIdentifier type
  'linear',
  'elu',
  'selu',
  'softplus',
  'softsign',
  'swish',
  'mish',
  'gelu',
  'gelu_new',
] as const;

const layerCases: { name: string; build: Build; input?: (n: number) => Float32Array }[] = [
  ...activations.map((activation) => ({
    name: `Dense + ${activation}`,
    build: seqOf([7], () => [L.dense({ units: 5, activation: activation as 'linear' })]),
  })),
  {
    name: 'Dense without bias on a sequence',
    build: seqOf([4, 6], () => [L.dense({ units: 3, useBias: false })]),
  },
  { name: 'Activation layer', build: seqOf([6], () => [L.activation({ activation: 'tanh' })]) },
  { name: 'ReLU with maxValue', build: seqOf([6], () => [L.reLU({ maxValue: 0.2 })]) },
  { name: 'ReLU', build: seqOf([6], () => [L.reLU()]) },
  { name: 'LeakyReLU', build: seqOf([6], () => [L.leakyReLU({ alpha: 0.1 })]) },
  { name: 'ELU', build: seqOf([6], () => [L.elu()]) },
  { name: 'ThresholdedReLU', build: seqOf([6], () => [L.thresholdedReLU({ theta: 0.3 })]) },
  { name: 'PReLU', build: seqOf([4, 3], () => [L.prelu({ sharedAxes: [1] })]) },
  { name: 'Softmax layer', build: seqOf([6], () => [L.softmax()]) },
  {
    name: 'Conv1D valid, strides 2',
    build: seqOf([20, 3], () => [L.conv1d({ filters: 4, kernelSize: 3, strides: 2, activation: 'relu' })]),
  },
  {
    name: 'Conv1D same, then Flatten (channels-last order)',
    build: seqOf([9, 3], () => [L.conv1d({ filters: 4, kernelSize: 4, padding: 'same' }), L.flatten()]),
  },
  {
    name: 'Conv2D same, strides 2, Flatten',
    build: seqOf([9, 7, 2], () => [
      L.conv2d({ filters: 3, kernelSize: [3, 2], strides: 2, padding: 'same' }),
      L.flatten(),
    ]),
  },
  {
    name: 'Conv2D dilated',
    build: seqOf([10, 10, 2], () => [
      L.conv2d({ filters: 3, kernelSize: 3, dilationRate: 2, activation: 'elu' }),
    ]),
  },
  {
    name: 'Conv2D channelsFirst, Flatten channelsFirst',
    build: seqOf([2, 8, 8], () => [
      L.conv2d({ filters: 3, kernelSize: 3, dataFormat: 'channelsFirst' }),
      L.maxPooling2d({ poolSize: 2, dataFormat: 'channelsFirst' }),
      L.flatten({ dataFormat: 'channelsFirst' }),
    ]),
  },
  {
    name: 'Conv2D channelsFirst, plain Flatten',
    build: seqOf([2, 6, 5], () => [
      L.conv2d({ filters: 3, kernelSize: 2, dataFormat: 'channelsFirst' }),
      L.flatten(),
    ]),
  },
  {
    name: 'Conv3D + MaxPooling3D',
    build: seqOf([6, 6, 6, 2], () => [
      L.conv3d({ filters: 2, kernelSize: 3 }),
      L.maxPooling3d({ poolSize: 2 }),
    ]),
  },
  {
    name: 'Conv2DTranspose same, strides 2',
    build: seqOf([5, 4, 3], () => [
      L.conv2dTranspose({ filters: 2, kernelSize: 3, strides: 2, padding: 'same' }),
    ]),
  },
  {
    name: 'Conv2DTranspose valid, kernel smaller than strides',
    build: seqOf([4, 4, 2], () => [
      L.conv2dTranspose({ filters: 3, kernelSize: 2, strides: 3, padding: 'valid' }),
    ]),
  },
  {
    name: 'DepthwiseConv2D multiplier 2',
    build: seqOf([8, 8, 3], () => [
      L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same' }),
    ]),
  },
  {
    name: 'SeparableConv2D',
    build: seqOf([8, 8, 3], () => [
      L.separableConv2d({ filters: 4, kernelSize: 3, depthMultiplier: 2, strides: 2 }),
    ]),
  },
  {
    name: 'MaxPooling1D + AveragePooling1D (same)',
    build: seqOf([11, 3], () => [
      L.maxPooling1d({ poolSize: 2 }),
      L.averagePooling1d({ poolSize: 3, strides: 2, padding: 'same' }),
    ]),
  },
  {
    name: 'MaxPooling2D (same) + AveragePooling2D (same, strides 2)',
    build: seqOf([9, 9, 2], () => [
      L.maxPooling2d({ poolSize: 3, strides: 1, padding: 'same' }),
      L.averagePooling2d({ poolSize: 3, strides: 2, padding: 'same' }),
    ]),
  },
  {
    name: 'GlobalAveragePooling1D',
    build: seqOf([10, 3], () => [L.conv1d({ filters: 4, kernelSize: 3 }), L.globalAveragePooling1d()]),
  },
  { name: 'GlobalMaxPooling1D', build: seqOf([10, 3], () => [L.globalMaxPooling1d()]) },
  {
    name: 'GlobalAveragePooling2D after Conv2D',
    build: seqOf([8, 8, 2], () => [L.conv2d({ filters: 4, kernelSize: 3 }), L.globalAveragePooling2d({})]),
  },
  { name: 'GlobalMaxPooling2D', build: seqOf([6, 5, 3], () => [L.globalMaxPooling2d({})]) },
  {
    name: 'Dropout + BatchNormalization after Dense',
    build: seqOf([6], () => [L.dense({ units: 5 }), L.dropout({ rate: 0.5 }), L.batchNormalization()]),
  },
  {
    name: 'BatchNormalization after Conv2D, without scale',
    build: seqOf([6, 6, 2], () => [
      L.conv2d({ filters: 3, kernelSize: 3 }),
      L.batchNormalization({ scale: false }),
      L.flatten(),
    ]),
  },
  { name: 'LayerNormalization', build: seqOf([4, 6], () => [L.layerNormalization()]) },
  { name: 'Reshape', build: seqOf([12], () => [L.reshape({ targetShape: [3, 4] }), L.dense({ units: 2 })]) },
  {
    name: 'Reshape with -1 after Conv2D',
    build: seqOf([4, 4, 2], () => [
      L.conv2d({ filters: 3, kernelSize: 1 }),
      L.reshape({ targetShape: [-1, 3] }),
    ]),
  },
  { name: 'Permute', build: seqOf([5, 3], () => [L.permute({ dims: [2, 1] }), L.dense({ units: 2 })]) },
  {
    name: 'Permute between Conv1D layers',
    build: seqOf([8, 4], () => [
      L.conv1d({ filters: 6, kernelSize: 3 }),
      L.permute({ dims: [2, 1] }),
      L.conv1d({ filters: 2, kernelSize: 2 }),
    ]),
  },
  {
    name: 'RepeatVector + LSTM decoder + TimeDistributed(Dense)',
    build: seqOf([6], () => [
      L.dense({ units: 4 }),
      L.repeatVector({ n: 5 }),
      L.lstm({ units: 3, returnSequences: true }),
      L.timeDistributed({ layer: L.dense({ units: 6 }) }),
    ]),
  },
  {
    name: 'TimeDistributed(Conv1D)',
    build: seqOf([5, 8, 3], () => [L.timeDistributed({ layer: L.conv1d({ filters: 2, kernelSize: 3 }) })]),
  },
  {
    name: 'UpSampling2D nearest + ZeroPadding2D + Cropping2D',
    build: seqOf([4, 5, 2], () => [
      L.upSampling2d({ size: [2, 3] }),
      L.zeroPadding2d({
        padding: [
          [1, 2],
          [0, 1],
        ],
      }),
      L.cropping2D({
        cropping: [
          [2, 0],
          [1, 3],
        ],
      }),
    ]),
  },
  {
    name: 'UpSampling2D bilinear after Conv2D',
    build: seqOf([4, 4, 2], () => [
      L.conv2d({ filters: 2, kernelSize: 1 }),
      L.upSampling2d({ size: [2, 2], interpolation: 'bilinear' }),
    ]),
  },
  {
    name: 'Embedding + GRU',
    build: seqOf([7], () => [L.embedding({ inputDim: 10, outputDim: 4 }), L.gru({ units: 3 })]),
    input: (n) => Float32Array.from({ length: n }, () => Math.floor(Math.random() * 10)),
  },
  ...(['hardSigmoid', 'sigmoid'] as const).flatMap((recurrentActivation) => [
    {
      name: `LSTM (${recurrentActivation}) returning sequences, stacked`,
      build: seqOf([9, 3], () => [
        L.lstm({ units: 5, recurrentActivation, returnSequences: true }),
        L.lstm({ units: 4, recurrentActivation }),
      ]),
    },
    {
      name: `GRU (${recurrentActivation}) returning sequences and last output`,
      build: seqOf([9, 3], () => [
        L.gru({ units: 5, recurrentActivation, returnSequences: true }),
        L.gru({ units: 4, recurrentActivation }),
      ]),
    },
  ]),
  {
    name: 'LSTM with relu activation and no bias',
    build: seqOf([6, 2], () => [L.lstm({ units: 3, activation: 'relu', useBias: false })]),
  },
  {
    name: 'SimpleRNN',
    build: seqOf([6, 2], () => [L.simpleRNN({ units: 4, returnSequences: true }), L.simpleRNN({ units: 3 })]),
  },
  {
    name: 'LSTM and GRU going backwards',
    build: seqOf([7, 3], () => [
      L.lstm({ units: 4, goBackwards: true, returnSequences: true }),
      L.gru({ units: 3, goBackwards: true }),
    ]),
  },
  {
    name: 'Bidirectional LSTM (concat, sequences) + Bidirectional GRU (sum)',
    build: seqOf([6, 3], () => [
      L.bidirectional({ layer: L.lstm({ units: 4, returnSequences: true }) as tfl.RNN }),
      L.bidirectional({ layer: L.gru({ units: 3 }) as tfl.RNN, mergeMode: 'sum' }),
    ]),
  },
  {
    name: 'Bidirectional SimpleRNN (ave) and LSTM (mul)',
    build: seqOf([6, 3], () => [
      L.bidirectional({
        layer: L.simpleRNN({ units: 4, returnSequences: true }) as tfl.RNN,
        mergeMode: 'ave',
      }),
      L.bidirectional({ layer: L.lstm({ units: 2 }) as tfl.RNN, mergeMode: 'mul' }),
    ]),
  },
  {
    name: 'functional: Add, Concatenate of channels-first and channels-last tensors',
    build: functional(() => {
      const inputs = tfl.input({ shape: [8, 8, 3] });
      const a = L.conv2d({ filters: 4, kernelSize: 3, padding: 'same' }).apply(inputs) as tfl.SymbolicTensor;
      const b = L.conv2d({ filters: 4, kernelSize: 1 }).apply(inputs) as tfl.SymbolicTensor;
      const sum = L.add().apply([a, b]) as tfl.SymbolicTensor;
      const both = L.concatenate().apply([sum, inputs]) as tfl.SymbolicTensor;
      const rows = L.concatenate({ axis: 1 }).apply([both, both]) as tfl.SymbolicTensor;
      const flat = L.flatten().apply(rows) as tfl.SymbolicTensor;
      return { inputs, outputs: L.dense({ units: 3 }).apply(flat) as tfl.SymbolicTensor };
    }),
  },
  {
    name: 'functional: Multiply, Average, Maximum, Minimum',
    build: functional(() => {
      const inputs = tfl.input({ shape: [5] });
      const a = L.dense({ units: 4, activation: 'tanh' }).apply(inputs) as tfl.SymbolicTensor;
      const b = L.dense({ units: 4 }).apply(inputs) as tfl.SymbolicTensor;
      const c = L.dense({ units: 4, activation: 'sigmoid' }).apply(inputs) as tfl.SymbolicTensor;
      const merged = [
        L.multiply().apply([a, b, c]),
        L.average().apply([a, b]),
        L.maximum().apply([a, b, c]),
        L.minimum().apply([b, c]),
      ] as tfl.SymbolicTensor[];
      return { inputs, outputs: L.concatenate().apply(merged) as tfl.SymbolicTensor };
    }),
  },
  {
    name: 'nested model used as a layer',
    build: () => {
      const inner = tfl.sequential({
        layers: [L.dense({ inputShape: [4], units: 3, activation: 'relu' }), L.dense({ units: 2 })],
      });
      const inputs = tfl.input({ shape: [6] });
      const x = L.dense({ units: 4 }).apply(inputs) as tfl.SymbolicTensor;
      const y = inner.apply(x) as tfl.SymbolicTensor;
      return tfl.model({ inputs, outputs: L.dense({ units: 1 }).apply(y) as tfl.SymbolicTensor });
    },
  },
];

describe('ONNX export of TF.js layers models', function () {
  this.timeout(60000);
  const runtimes = availableOrtRuntimes();

  before(async () => {
    // The reference computation: exact float32 kernels.
    await useBackend(['cpu']);
  });

  afterEach(() => {
    assert.equal(liveOrtSessionCount(), 0, 'every ORT session is released');
  });

  it('runs onnxruntime-web sessions on WebAssembly and onnxruntime-node ones natively, side by side', async () => {
    assert.ok(runtimes.includes('onnxruntime-web'), `runtimes: ${runtimes.join(', ')}`);
    if (!runtimes.includes('onnxruntime-node')) {
      console.log('      onnxruntime-node is not installed; testing onnxruntime-web only');
    }
    const model = referenceModels.autoencoder();
    try {
      const bytes = exportLayersModelToOnnx(model);
      for (const runtime of [...runtimes, ...runtimes]) {
        const session = await createOrtSession(bytes, runtime);
        try {
          assert.equal(session.runtime, runtime);
          assert.equal(ortSessionBackend(session.session), runtime);
        } finally {
          await session.release();
        }
      }
    } finally {
      model.dispose();
    }
  });

  for (const c of layerCases) {
    it(`matches TF.js: ${c.name}`, async () => {
      const model = c.build();
      try {
        randomizeWeights(model);
        const before = tf.memory().numTensors;
        const bytes = exportLayersModelToOnnx(model);
        assert.equal(tf.memory().numTensors, before, 'export leaves no tensors behind');
        const input = randomInput(model, 3, c.input);
        const expected = predictTfjsWithShape(model, input);
        for (const runtime of runtimes) {
          const got = await runOnnx(bytes, runtime, input);
          assert.deepEqual(got.dims, expected.dims, `${runtime} output shape`);
          const diff = maxAbsDiff(expected.data, got.data);
          assert.ok(diff < TOLERANCE, `${runtime}: max abs difference ${diff}`);
        }
      } finally {
        model.dispose();
      }
    });
  }

  it('exports a functional model with two inputs and two outputs (Concatenate and Add merges)', async () => {
    // An image branch (Conv2D, channels-last in TF.js, NCHW in ONNX) joined with a vector branch.
    const image = tfl.input({ shape: [6, 6, 2], name: 'image' });
    const vector = tfl.input({ shape: [4], name: 'vector' });
    const conv = L.conv2d({ filters: 3, kernelSize: 3, activation: 'relu' }).apply(
      image,
    ) as tfl.SymbolicTensor;
    const flat = L.flatten().apply(conv) as tfl.SymbolicTensor;
    const a = L.dense({ units: 5, activation: 'tanh' }).apply(flat) as tfl.SymbolicTensor;
    const b = L.dense({ units: 5 }).apply(vector) as tfl.SymbolicTensor;
    const joined = L.concatenate().apply([a, b, vector]) as tfl.SymbolicTensor;
    const summed = L.add().apply([a, b]) as tfl.SymbolicTensor;
    const cls = L.dense({ units: 3, activation: 'softmax', name: 'cls' }).apply(joined) as tfl.SymbolicTensor;
    const level = L.dense({ units: 2, name: 'level' }).apply(summed) as tfl.SymbolicTensor;
    const model = tfl.model({ inputs: [image, vector], outputs: [cls, level] });
    try {
      randomizeWeights(model);
      const bytes = exportLayersModelToOnnx(model);
      const proto = onnx.ModelProto.decode(bytes);
      assert.deepEqual(
        proto.graph!.input!.map((v) => v.name),
        ['input_0', 'input_1'],
      );
      assert.deepEqual(
        proto.graph!.output!.map((v) => v.name),
        ['output_0', 'output_1'],
      );
      const batch = 3;
      const inputOf = (k: number) => {
        const dims = [batch, ...(model.inputs[k].shape.slice(1) as number[])];
        const n = dims.reduce((p, d) => p * d, 1);
        const data = tf.tidy(() => tf.randomNormal([n], 0, 1, 'float32', 31 + k).dataSync() as Float32Array);
        return { data, dims };
      };
      const x0 = inputOf(0);
      const x1 = inputOf(1);
      const expected = tf.tidy(() => {
        const ys = model.predict([tf.tensor(x0.data, x0.dims), tf.tensor(x1.data, x1.dims)]) as tf.Tensor[];
        return ys.map((y) => ({ data: y.dataSync() as Float32Array, dims: y.shape }));
      });
      for (const runtime of runtimes) {
        const session = await createOrtSession(bytes, runtime);
        try {
          const ort = loadOrt(runtime)!;
          const out = await session.session.run({
            input_0: new ort.Tensor('float32', x0.data, x0.dims),
            input_1: new ort.Tensor('float32', x1.data, x1.dims),
          });
          ['output_0', 'output_1'].forEach((name, k) => {
            assert.deepEqual(Array.from(out[name].dims), expected[k].dims, `${runtime} ${name} shape`);
            const diff = maxAbsDiff(expected[k].data, out[name].data as Float32Array);
            assert.ok(diff < TOLERANCE, `${runtime} ${name}: max abs difference ${diff}`);
          });
        } finally {
          await session.release();
        }
      }
    } finally {
      model.dispose();
    }
  });

  it('exports causal Conv1D (which TF.js cannot run) as a valid convolution of the left-padded input', async () => {
    const [steps, channels, kernelSize, dilationRate] = [16, 2, 3, 2];
    const pad = (kernelSize - 1) * dilationRate;
    const conv = (padding: 'causal' | 'valid', length: number) =>
      tfl.sequential({
        layers: [
          L.inputLayer({ inputShape: [length, channels] }),
          L.conv1d({ filters: 3, kernelSize, dilationRate, padding, activation: 'tanh' }),
        ],
      });
    const causal = conv('causal', steps);
    const valid = conv('valid', steps + pad);
    try {
      randomizeWeights(causal);
      valid.setWeights(causal.getWeights());
      const input = randomInput(causal, 3);
      const padded = new Float32Array(3 * (steps + pad) * channels);
      for (let b = 0; b < 3; b++) {
        padded.set(
          input.data.subarray(b * steps * channels, (b + 1) * steps * channels),
          (b * (steps + pad) + pad) * channels,
        );
      }
      const expected = predictTfjs(valid, { data: padded, dims: [3, steps + pad, channels] });
      const bytes = exportLayersModelToOnnx(causal);
      for (const runtime of runtimes) {
        const got = await runOnnx(bytes, runtime, input);
        assert.deepEqual(got.dims, [3, steps, 3]);
        const diff = maxAbsDiff(expected, got.data);
        assert.ok(diff < TOLERANCE, `${runtime}: max abs difference ${diff}`);
      }
    } finally {
      causal.dispose();
      valid.dispose();
    }
  });

  const references: [string, Build][] = [
    ['MNIST CNN', referenceModels.mnistCnn],
    [
      'LSTM(64) 50x6 + Dense(1), TF.js default hardSigmoid',
      () => referenceModels.lstm(undefined, 'glorotUniform'),
    ],
    ['LSTM(64) 50x6 + Dense(1), sigmoid', () => referenceModels.lstm('sigmoid', 'glorotUniform')],
    ['dense autoencoder 60-32-8-32-60', referenceModels.autoencoder],
  ];
  for (const [name, build] of references) {
    it(`matches TF.js on the reference model ${name} at batch 1 and 5`, async () => {
      const model = build();
      try {
        randomizeWeights(model, 0.2);
        const bytes = exportLayersModelToOnnx(model);
        const parsed = onnx.ModelProto.decode(bytes);
        assert.equal(Number(parsed.irVersion), 8);
        assert.equal(Number(parsed.opsetImport[0].version), 17);
        assert.equal(parsed.graph?.input?.[0].type?.tensorType?.shape?.dim?.[0].dimParam, 'batch');
        for (const batch of [1, 5]) {
          const input = randomInput(model, batch);
          const expected = predictTfjs(model, input);
          for (const runtime of runtimes) {
            const got = await runOnnx(bytes, runtime, input);
            const diff = maxAbsDiff(expected, got.data);
            assert.ok(diff < TOLERANCE, `${runtime} batch ${batch}: max abs difference ${diff}`);
          }
        }
      } finally {
        model.dispose();
      }
    });
  }

  const unsupported: [string, Build][] = [
    ['Masking', seqOf([5, 3], () => [L.masking({ maskValue: 0 }), L.lstm({ units: 2 })])],
    ['ConvLSTM2D', seqOf([3, 6, 6, 2], () => [L.convLstm2d({ filters: 2, kernelSize: 3 })])],
    [
      'Embedding with maskZero',
      seqOf([4], () => [L.embedding({ inputDim: 5, outputDim: 2, maskZero: true })]),
    ],
    [
      'stateful LSTM',
      () => tfl.sequential({ layers: [L.lstm({ units: 2, stateful: true, batchInputShape: [1, 4, 3] })] }),
    ],
    [
      'Dot',
      functional(() => {
        const inputs = tfl.input({ shape: [3] });
        const a = L.dense({ units: 2 }).apply(inputs) as tfl.SymbolicTensor;
        return { inputs, outputs: L.dot({ axes: 1 }).apply([a, a]) as tfl.SymbolicTensor };
      }),
    ],
  ];
  for (const [name, build] of unsupported) {
    it(`throws OnnxExportUnsupported for ${name}`, () => {
      const model = build();
      try {
        assert.throws(() => exportLayersModelToOnnx(model), OnnxExportUnsupported);
      } finally {
        model.dispose();
      }
    });
  }
});
