/**
 * Model architectures the trainer builds, with sizes from the node's settings, and transfer
 * learning from a stored model. Everything here is TF.js layers; nothing trains yet.
 */
import * as tfl from '@tensorflow/tfjs-layers';
// Registers the backends and the chained tensor methods tfjs-layers needs.
import '../models/runtime/tfjs';
import { sizeOf } from '../preprocess/shape';

export type Task = 'classification' | 'regression' | 'autoencoder';

export const ARCHITECTURES = {
  'dense-classifier': 'classification',
  'dense-regressor': 'regression',
  'cnn1d-classifier': 'classification',
  'lstm-classifier': 'classification',
  'gru-classifier': 'classification',
  'lstm-forecaster': 'regression',
  'gru-forecaster': 'regression',
  'dense-autoencoder': 'autoencoder',
  'conv1d-autoencoder': 'autoencoder',
  'lstm-autoencoder': 'autoencoder',
  'mnist-cnn': 'classification',
} as const satisfies Record<string, Task>;

export type ArchitectureName = keyof typeof ARCHITECTURES;

export interface ArchitectureOptions {
  /** Per-sample input shape, e.g. [8] for 8 features, [50, 6] for windows, [28, 28] for images. */
  inputShape: number[];
  /** Classes (classification) or target values (regression); ignored by autoencoders. */
  outputSize: number;
  /** Hidden dense units, or recurrent units for LSTM/GRU, one entry per layer. */
  units?: number[];
  /** Convolution filters, one entry per convolution layer. */
  filters?: number[];
  kernelSize?: number;
  /** Dropout rate before the output layer (0 = none). */
  dropout?: number;
  /** Bottleneck size of autoencoders. */
  latent?: number;
  /** Activation of the autoencoders' bottleneck (default relu). */
  latentActivation?: 'relu' | 'linear';
  /**
   * Conv1D autoencoder: each encoder convolution strides by this (the decoder upsamples back),
   * so the window must divide by strides^(filters + 1). Default 1.
   */
  strides?: number;
  /** Seeds the initial weights (repeatable runs); default: TF.js' unseeded initialisers. */
  seed?: number;
}

export function isArchitecture(name: unknown): name is ArchitectureName {
  return typeof name === 'string' && Object.prototype.hasOwnProperty.call(ARCHITECTURES, name);
}

export function taskOf(name: ArchitectureName): Task {
  return ARCHITECTURES[name];
}

/** The loss that fits the task: cross-entropy over softmax outputs, else mean squared error. */
export function lossFor(task: Task): string {
  return task === 'classification' ? 'categoricalCrossentropy' : 'meanSquaredError';
}

export function metricsFor(task: Task): string[] {
  return task === 'classification' ? ['accuracy'] : ['mae'];
}

function positive(list: number[] | undefined, fallback: number[], what: string): number[] {
  const values = list && list.length > 0 ? list : fallback;
  for (const v of values) {
    if (!Number.isInteger(v) || v < 1)
      throw new Error(`${what} must be positive whole numbers, got ${values.join(',')}`);
  }
  return values;
}

/** Treats the input as [timesteps, features]: a flat vector becomes `length` timesteps of 1 feature. */
function sequenceShape(inputShape: number[], arch: string): [number, number] {
  if (inputShape.length === 1) return [inputShape[0], 1];
  if (inputShape.length === 2) return [inputShape[0], inputShape[1]];
  throw new Error(`${arch} needs samples of timesteps x features, got shape [${inputShape.join(', ')}]`);
}

/** Image shape [height, width, channels] for the CNN: [h, w] adds a channel, a square vector is folded. */
function imageShape(inputShape: number[]): [number, number, number] {
  if (inputShape.length === 3) return [inputShape[0], inputShape[1], inputShape[2]];
  if (inputShape.length === 2) return [inputShape[0], inputShape[1], 1];
  const side = Math.round(Math.sqrt(inputShape[0]));
  if (inputShape.length === 1 && side * side === inputShape[0]) return [side, side, 1];
  throw new Error(
    `mnist-cnn needs images (height x width, or a square number of pixels), got shape [${inputShape.join(', ')}]`,
  );
}

function inputLayers(inputShape: number[], target: number[]): tfl.layers.Layer[] {
  const same = inputShape.length === target.length && inputShape.every((v, i) => v === target[i]);
  return same
    ? [tfl.layers.inputLayer({ inputShape })]
    : [tfl.layers.inputLayer({ inputShape }), tfl.layers.reshape({ targetShape: target })];
}

function head(
  task: Task,
  outputs: number,
  dropout: number,
  init: Record<string, unknown> = {},
): tfl.layers.Layer[] {
  const layers: tfl.layers.Layer[] = [];
  if (dropout > 0) layers.push(tfl.layers.dropout({ rate: dropout }));
  layers.push(
    tfl.layers.dense({
      units: outputs,
      activation: task === 'classification' ? 'softmax' : 'linear',
      name: 'head',
      ...init,
    }),
  );
  return layers;
}

/** Seeded initialisers for the k-th weighted layer; none when unseeded. */
function initialisers(seed: number | undefined, k: number, recurrent = false): Record<string, unknown> {
  if (seed === undefined) return {};
  const glorot = (s: number) => tfl.initializers.glorotUniform({ seed: s });
  return recurrent
    ? { kernelInitializer: glorot(seed + k), recurrentInitializer: glorot(seed + 10 + k) }
    : { kernelInitializer: glorot(seed + k) };
}

/** Doubles the length of [steps, channels] sequences (TF.js layers has no UpSampling1D). */
function upsample1d(steps: number, channels: number): tfl.layers.Layer[] {
  return [
    tfl.layers.reshape({ targetShape: [steps, 1, channels] }),
    tfl.layers.upSampling2d({ size: [2, 1] }),
    tfl.layers.reshape({ targetShape: [steps * 2, channels] }),
  ];
}

/** Builds an untrained model of the named architecture. */
export function buildModel(arch: ArchitectureName, options: ArchitectureOptions): tfl.Sequential {
  const { inputShape } = options;
  if (inputShape.length === 0 || !inputShape.every((v) => Number.isInteger(v) && v > 0)) {
    throw new Error(`invalid input shape [${inputShape.join(', ')}]`);
  }
  const task = taskOf(arch);
  const outputs = options.outputSize;
  if (task !== 'autoencoder' && (!Number.isInteger(outputs) || outputs < 1)) {
    throw new Error(`the output size must be a positive whole number, got ${outputs}`);
  }
  const dropout = options.dropout ?? 0;
  const kernelSize = options.kernelSize ?? 3;
  const layers: tfl.layers.Layer[] = [];
  let k = 0;
  const init = (recurrent = false) => initialisers(options.seed, ++k, recurrent);
  const latentActivation = options.latentActivation ?? 'relu';

  switch (arch) {
    case 'dense-classifier':
    case 'dense-regressor': {
      layers.push(tfl.layers.inputLayer({ inputShape }));
      if (inputShape.length > 1) layers.push(tfl.layers.flatten());
      for (const units of positive(options.units, [32, 16], 'units')) {
        layers.push(tfl.layers.dense({ units, activation: 'relu' }));
      }
      layers.push(...head(task, outputs, dropout));
      break;
    }
    case 'cnn1d-classifier': {
      const shape = sequenceShape(inputShape, arch);
      layers.push(...inputLayers(inputShape, shape));
      for (const filters of positive(options.filters, [16, 32], 'filters')) {
        layers.push(tfl.layers.conv1d({ filters, kernelSize, activation: 'relu', padding: 'same' }));
        layers.push(tfl.layers.maxPooling1d({ poolSize: 2, padding: 'same' }));
      }
      layers.push(tfl.layers.globalAveragePooling1d({}));
      for (const units of options.units ?? []) layers.push(tfl.layers.dense({ units, activation: 'relu' }));
      layers.push(...head(task, outputs, dropout));
      break;
    }
    case 'lstm-classifier':
    case 'gru-classifier':
    case 'lstm-forecaster':
    case 'gru-forecaster': {
      const shape = sequenceShape(inputShape, arch);
      layers.push(...inputLayers(inputShape, shape));
      const units = positive(options.units, [32], 'units');
      units.forEach((u, i) => {
        const returnSequences = i < units.length - 1;
        // Keras' default recurrent activation (TF.js defaults LSTM to hardSigmoid).
        layers.push(
          arch.startsWith('lstm')
            ? tfl.layers.lstm({ units: u, returnSequences, recurrentActivation: 'sigmoid', ...init(true) })
            : tfl.layers.gru({ units: u, returnSequences, recurrentActivation: 'sigmoid', ...init(true) }),
        );
      });
      layers.push(...head(task, outputs, dropout, init()));
      break;
    }
    case 'dense-autoencoder': {
      const features = sizeOf(inputShape);
      layers.push(tfl.layers.inputLayer({ inputShape }));
      if (inputShape.length > 1) layers.push(tfl.layers.flatten());
      const hidden = positive(options.units, [Math.max(4, Math.ceil(features / 2))], 'units');
      const latent = options.latent ?? Math.max(2, Math.ceil(features / 4));
      for (const u of hidden) layers.push(tfl.layers.dense({ units: u, activation: 'relu', ...init() }));
      layers.push(
        tfl.layers.dense({ units: latent, activation: latentActivation, name: 'latent', ...init() }),
      );
      for (const u of [...hidden].reverse())
        layers.push(tfl.layers.dense({ units: u, activation: 'relu', ...init() }));
      layers.push(tfl.layers.dense({ units: features, activation: 'linear', ...init() }));
      if (inputShape.length > 1) layers.push(tfl.layers.reshape({ targetShape: inputShape }));
      break;
    }
    case 'conv1d-autoencoder': {
      const shape = sequenceShape(inputShape, arch);
      layers.push(...inputLayers(inputShape, shape));
      const filters = positive(options.filters, [16], 'filters');
      const strides = positive(
        options.strides === undefined ? undefined : [options.strides],
        [1],
        'strides',
      )[0];
      const factor = strides ** (filters.length + 1);
      if (shape[0] % factor !== 0) {
        throw new Error(
          `${arch} with strides ${strides} needs a window that divides by ${factor}, got ${shape[0]}`,
        );
      }
      // Upsampling undoes a stride of 2 per encoder convolution (the only stride it can undo).
      if (strides !== 1 && strides !== 2) throw new Error(`${arch} supports strides 1 or 2, got ${strides}`);
      const conv = (f: number, activation: 'relu' | 'linear', s = 1, name?: string) =>
        tfl.layers.conv1d({
          filters: f,
          kernelSize,
          strides: s,
          activation,
          padding: 'same',
          name,
          ...init(),
        });
      let steps = shape[0];
      for (const f of filters) {
        layers.push(conv(f, 'relu', strides));
        steps /= strides;
      }
      const latent = options.latent ?? Math.max(2, Math.ceil(filters[filters.length - 1] / 2));
      layers.push(conv(latent, latentActivation, strides, 'latent'));
      steps /= strides;
      let channels = latent;
      for (const f of [...filters].reverse()) {
        if (strides === 2) {
          layers.push(...upsample1d(steps, channels));
          steps *= 2;
        }
        layers.push(conv(f, 'relu'));
        channels = f;
      }
      if (strides === 2) layers.push(...upsample1d(steps, channels));
      layers.push(conv(shape[1], 'linear'));
      if (inputShape.length !== 2) layers.push(tfl.layers.reshape({ targetShape: inputShape }));
      break;
    }
    case 'lstm-autoencoder': {
      const shape = sequenceShape(inputShape, arch);
      layers.push(...inputLayers(inputShape, shape));
      const units = positive(options.units, [32], 'units')[0];
      const latent = options.latent ?? Math.max(2, Math.ceil(units / 2));
      layers.push(
        tfl.layers.lstm({ units, recurrentActivation: 'sigmoid', returnSequences: false, ...init(true) }),
      );
      layers.push(
        tfl.layers.dense({ units: latent, activation: latentActivation, name: 'latent', ...init() }),
      );
      layers.push(tfl.layers.repeatVector({ n: shape[0] }));
      layers.push(
        tfl.layers.lstm({ units, recurrentActivation: 'sigmoid', returnSequences: true, ...init(true) }),
      );
      layers.push(tfl.layers.timeDistributed({ layer: tfl.layers.dense({ units: shape[1], ...init() }) }));
      if (inputShape.length !== 2) layers.push(tfl.layers.reshape({ targetShape: inputShape }));
      break;
    }
    case 'mnist-cnn': {
      const shape = imageShape(inputShape);
      layers.push(...inputLayers(inputShape, shape));
      for (const filters of positive(options.filters, [32, 64], 'filters')) {
        layers.push(tfl.layers.conv2d({ filters, kernelSize, activation: 'relu', ...init() }));
        layers.push(tfl.layers.maxPooling2d({ poolSize: 2 }));
      }
      layers.push(tfl.layers.flatten());
      for (const units of positive(options.units, [64], 'units')) {
        layers.push(tfl.layers.dense({ units, activation: 'relu', ...init() }));
      }
      layers.push(...head(task, outputs, dropout, init()));
      break;
    }
  }
  return tfl.sequential({ layers });
}

/** The layers a user counts (the input placeholder is not one). */
export function countedLayers(model: tfl.LayersModel): tfl.layers.Layer[] {
  return model.layers.filter((layer) => layer.getClassName() !== 'InputLayer');
}

/**
 * Transfer learning: keeps every layer of `base` but its last (the old head), freezes the first
 * `freeze` of them (the input placeholder not counted), and adds a fresh output layer for the new
 * task and output size. An autoencoder keeps its own output layer.
 */
export function transferModel(
  base: tfl.LayersModel,
  freeze: number,
  task: Task,
  outputSize: number,
): tfl.LayersModel {
  const layers = countedLayers(base);
  const keep = task === 'autoencoder' ? layers.length : layers.length - 1;
  if (layers.length < 1) throw new Error('the base model has no layers');
  if (!Number.isInteger(freeze) || freeze < 0 || freeze > keep) {
    throw new Error(`can freeze 0 to ${keep} layers of the base model, got ${freeze}`);
  }
  layers.forEach((layer, i) => {
    layer.trainable = i >= freeze;
  });
  if (task === 'autoencoder') return tfl.model({ inputs: base.inputs, outputs: base.outputs });
  const features = (keep > 0 ? layers[keep - 1].output : base.inputs[0]) as tfl.SymbolicTensor;
  const flat =
    features.shape.length > 2 ? (tfl.layers.flatten().apply(features) as tfl.SymbolicTensor) : features;
  const output = tfl.layers
    .dense({
      units: outputSize,
      activation: task === 'classification' ? 'softmax' : 'linear',
      name: `head_${Date.now().toString(36)}`,
    })
    .apply(flat) as tfl.SymbolicTensor;
  return tfl.model({ inputs: base.inputs, outputs: output });
}

/** Input and output shapes of a model without the batch dimension. */
export function modelShapes(model: tfl.LayersModel): { inputShape: number[]; outputShape: number[] } {
  const strip = (shape: (number | null)[]): number[] => shape.slice(1).map((v) => v ?? -1);
  return { inputShape: strip(model.inputs[0].shape), outputShape: strip(model.outputs[0].shape) };
}
