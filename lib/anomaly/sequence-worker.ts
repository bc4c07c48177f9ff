/**
 * Worker thread that trains and runs the neural sequence detectors (autoencoders over windows,
 * one-step forecaster) with TF.js, so training never blocks the Node-RED event loop.
 * Protocol: see SequenceRequest / SequenceReply in sequence-protocol.ts.
 */

import { parentPort } from 'node:worker_threads';
import * as tfl from '@tensorflow/tfjs-layers';
import { tf, useBackend, type TfBackendName } from '../models/runtime/tfjs';
import { registerWasmGradients } from '../train/wasm-gradients';
import { seededRandom } from '../util/random';
import type {
  SequenceArchitecture,
  SequenceArtifacts,
  SequenceReply,
  SequenceRequest,
  TrainRequest,
} from './sequence-protocol';

let model: tfl.LayersModel | null = null;
let arch: SequenceArchitecture = 'ae-dense';
let inferenceBackend: TfBackendName = 'cpu';

function build(req: TrainRequest): tfl.LayersModel {
  const { window: w, channels: d, latent, seed } = req;
  const init = (k: number) => tfl.initializers.glorotUniform({ seed: seed + k });
  const steps = req.arch === 'forecast' ? w - 1 : w;
  const m = tfl.sequential();
  switch (req.arch) {
    case 'ae-dense': {
      const hidden = Math.max(8, Math.min(64, Math.round((w * d) / 4)));
      m.add(tfl.layers.flatten({ inputShape: [w, d] }));
      m.add(tfl.layers.dense({ units: hidden, activation: 'relu', kernelInitializer: init(1) }));
      m.add(tfl.layers.dense({ units: latent, kernelInitializer: init(2) }));
      m.add(tfl.layers.dense({ units: hidden, activation: 'relu', kernelInitializer: init(3) }));
      m.add(tfl.layers.dense({ units: w * d, kernelInitializer: init(4) }));
      m.add(tfl.layers.reshape({ targetShape: [w, d] }));
      break;
    }
    case 'ae-conv': {
      // Conv1D encoder with stride 2 twice; decoder upsamples back (window divisible by 4).
      const conv = (filters: number, strides: number, k: number, activation?: 'relu') =>
        tfl.layers.conv1d({
          filters,
          kernelSize: 7,
          strides,
          padding: 'same',
          activation,
          kernelInitializer: init(k),
        });
      m.add(tfl.layers.inputLayer({ inputShape: [w, d] }));
      m.add(conv(16, 2, 1, 'relu'));
      m.add(conv(8, 2, 2, 'relu'));
      m.add(tfl.layers.reshape({ targetShape: [w / 4, 1, 8] }));
      m.add(tfl.layers.upSampling2d({ size: [2, 1] }));
      m.add(tfl.layers.reshape({ targetShape: [w / 2, 8] }));
      m.add(conv(16, 1, 3, 'relu'));
      m.add(tfl.layers.reshape({ targetShape: [w / 2, 1, 16] }));
      m.add(tfl.layers.upSampling2d({ size: [2, 1] }));
      m.add(tfl.layers.reshape({ targetShape: [w, 16] }));
      m.add(conv(d, 1, 4));
      break;
    }
    case 'ae-lstm': {
      const units = Math.max(8, Math.min(32, 4 * d));
      m.add(
        tfl.layers.lstm({
          units,
          inputShape: [w, d],
          recurrentActivation: 'sigmoid',
          kernelInitializer: init(1),
          recurrentInitializer: init(11),
        }),
      );
      m.add(tfl.layers.dense({ units: latent, kernelInitializer: init(2) }));
      m.add(tfl.layers.repeatVector({ n: w }));
      m.add(
        tfl.layers.lstm({
          units,
          returnSequences: true,
          recurrentActivation: 'sigmoid',
          kernelInitializer: init(3),
          recurrentInitializer: init(13),
        }),
      );
      m.add(
        tfl.layers.timeDistributed({ layer: tfl.layers.dense({ units: d, kernelInitializer: init(4) }) }),
      );
      break;
    }
    case 'forecast': {
      const units = Math.max(8, Math.min(32, 4 * d));
      m.add(
        tfl.layers.lstm({
          units,
          inputShape: [steps, d],
          recurrentActivation: 'sigmoid',
          kernelInitializer: init(1),
          recurrentInitializer: init(11),
        }),
      );
      m.add(tfl.layers.dense({ units: d, kernelInitializer: init(2) }));
      break;
    }
  }
  m.compile({ optimizer: tf.train.adam(req.learningRate), loss: 'meanSquaredError' });
  return m;
}

/** Splits flat windows into model input and target. */
function inputsAndTargets(
  a: SequenceArchitecture,
  data: Float32Array,
  count: number,
  w: number,
  d: number,
): { x: tf.Tensor; y: tf.Tensor } {
  return tf.tidy(() => {
    const all = tf.tensor3d(data, [count, w, d]);
    if (a !== 'forecast') return { x: all, y: all.clone() };
    return {
      x: tf.slice(all, [0, 0, 0], [count, w - 1, d]),
      y: tf.reshape(tf.slice(all, [0, w - 1, 0], [count, 1, d]), [count, d]),
    };
  });
}

/** Per-window, per-channel mean squared error, flat [count * d]. */
async function errors(data: Float32Array, count: number, w: number, d: number): Promise<Float32Array> {
  const { x, y } = inputsAndTargets(arch, data, count, w, d);
  const err = tf.tidy(() => {
    const pred = (model as tfl.LayersModel).predict(x) as tf.Tensor;
    const sq = tf.squaredDifference(pred, y);
    return arch === 'forecast' ? sq : tf.mean(sq, 1);
  });
  const out = (await err.data()) as Float32Array;
  tf.dispose([x, y, err]);
  return out;
}

async function captureArtifacts(m: tfl.LayersModel): Promise<SequenceArtifacts> {
  let captured: SequenceArtifacts | null = null;
  await m.save({
    save: async (artifacts) => {
      const weights = artifacts.weightData
        ? tf.io.CompositeArrayBuffer.join(artifacts.weightData)
        : new ArrayBuffer(0);
      captured = {
        modelTopology: artifacts.modelTopology as object,
        weightSpecs: artifacts.weightSpecs ?? [],
        weightData: new Uint8Array(weights),
      };
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    },
  });
  return captured as unknown as SequenceArtifacts;
}

async function load(
  artifacts: SequenceArtifacts,
  backends: TfBackendName[] = ['wasm', 'cpu'],
): Promise<void> {
  inferenceBackend = await useBackend(backends);
  model?.dispose();
  const buffer = artifacts.weightData.buffer.slice(
    artifacts.weightData.byteOffset,
    artifacts.weightData.byteOffset + artifacts.weightData.byteLength,
  );
  model = await tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: artifacts.modelTopology,
      weightSpecs: artifacts.weightSpecs as tf.io.WeightsManifestEntry[],
      weightData: buffer as ArrayBuffer,
    }),
  );
}

async function train(req: TrainRequest): Promise<SequenceReply> {
  arch = req.arch;
  const trainingBackend = await useBackend(req.backends ?? ['wasm', 'cpu']);
  // The WASM backend lacks some gradient kernels (the Conv2D filter gradient among them).
  if (trainingBackend === 'wasm') registerWasmGradients();
  const { window: w, channels: d, count } = req;
  const size = w * d;
  const nVal = Math.min(count - 1, Math.max(1, Math.round(count * req.validationSplit)));
  const nTrain = count - nVal;
  // Evenly spaced training windows (overlapping neighbours add little), shuffled once with a
  // seeded generator; validation = the latest windows.
  const step = Math.max(1, Math.ceil(nTrain / Math.max(1, req.maxTrainWindows)));
  const order = Array.from({ length: Math.ceil(nTrain / step) }, (_, i) => i * step);
  const rand = seededRandom(req.seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const trainData = new Float32Array(order.length * size);
  order.forEach((src, i) => trainData.set(req.data.subarray(src * size, (src + 1) * size), i * size));
  const valData = req.data.slice(nTrain * size);

  const m = build(req);
  const { x, y } = inputsAndTargets(req.arch, trainData, order.length, w, d);
  let loss = NaN;
  try {
    const history = await m.fit(x, y, {
      epochs: req.epochs,
      batchSize: req.batchSize,
      shuffle: false,
      verbose: 0,
      // A worker has no event loop to keep responsive; yielding per batch only costs time.
      yieldEvery: 'never',
      callbacks: {
        onEpochEnd: async (epoch, logs) => {
          loss = Number(logs?.loss);
          parentPort?.postMessage({ type: 'progress', epoch: epoch + 1, epochs: req.epochs, loss });
        },
      },
    });
    loss = Number(history.history.loss[history.history.loss.length - 1]);
  } finally {
    tf.dispose([x, y]);
  }
  const artifacts = await captureArtifacts(m);
  m.dispose();
  await load(artifacts, req.backends);
  const calibration = await errors(valData, nVal, w, d);
  return { type: 'trained', artifacts, calibration, loss, trainingBackend, inferenceBackend };
}

async function handle(req: SequenceRequest): Promise<SequenceReply> {
  switch (req.type) {
    case 'train':
      return train(req);
    case 'load':
      arch = req.arch;
      await load(req.artifacts, req.backends);
      return { type: 'loaded', inferenceBackend };
    case 'score':
      if (!model) throw new Error('no model loaded');
      return { type: 'scored', errors: await errors(req.data, req.count, req.window, req.channels) };
    case 'memory':
      return { type: 'memory', numTensors: tf.memory().numTensors };
  }
}

parentPort?.on('message', (msg: { id: number; request: SequenceRequest }) => {
  handle(msg.request).then(
    (reply) => parentPort?.postMessage({ id: msg.id, reply }),
    (err: unknown) =>
      parentPort?.postMessage({ id: msg.id, error: err instanceof Error ? err.message : String(err) }),
  );
});
