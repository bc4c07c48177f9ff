/**
 * One training run: builds (or loads and adapts) a model, fits it epoch by epoch with progress,
 * early stopping, learning-rate decay, augmentation and cancellation, and hands back the trained
 * model as TF.js artifacts. Runs wherever TF.js runs: in the training worker, or on the main
 * thread (benchmarks compare the two).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import { fileLoadHandler, useBackend, type TfBackendName } from '../models/runtime/tfjs';
import {
  buildModel,
  lossFor,
  metricsFor,
  modelShapes,
  transferModel,
  type ArchitectureName,
  type ArchitectureOptions,
  type Task,
} from './architectures';
import { registerWasmGradients } from './wasm-gradients';
import { ParallelTrainer } from './parallel';
import { fusedAdam } from './fused-adam';
import { seededRandom } from '../util/random';
import { CancelledError } from '../errors';
import { sizeOf } from '../preprocess/shape';
import { adjustedLoss, addProximalTerm, logitsHead, type LogitAdjust } from './logit-adjust';

export { CancelledError };

export type OptimizerName = 'adam' | 'sgd' | 'rmsprop';
export type BackendChoice = 'auto' | 'wasm' | 'cpu';

export interface TrainSettings {
  task: Task;
  /** The architecture to build; ignored when `base` is given. */
  architecture?: ArchitectureName;
  sizes?: Omit<ArchitectureOptions, 'inputShape' | 'outputSize'>;
  /**
   * Transfer learning: the stored model's model.json and how many of its first layers stay
   * frozen. With `whole`, the model trains as it is (its own output layer kept, nothing frozen):
   * continued training, as a federated round does from the fleet's global model.
   */
  base?: { modelJsonPath: string; freeze: number; whole?: boolean };
  optimizer: OptimizerName;
  learningRate: number;
  /** SGD momentum (0 = plain SGD). */
  momentum?: number;
  /** The learning rate is multiplied by this after every epoch (1 = constant). */
  learningRateDecay?: number;
  batchSize: number;
  epochs: number;
  /** Fraction of the samples held out for validation (0 = none). */
  validationSplit: number;
  /** Stop when the validation loss has not improved for this many epochs (0 = never); the best weights are kept. */
  earlyStoppingPatience?: number;
  /** Per class index; omitted = all 1. */
  classWeights?: number[];
  /** Random shifts of up to this many pixels for image inputs (0 = none). */
  augmentShift?: number;
  backend?: BackendChoice;
  /**
   * Threads that share every batch (data-parallel: gradients summed, one optimizer step);
   * default 1. More than the batch size gains nothing and is capped to it.
   */
  threads?: number;
  /** Seeds the validation split and augmentation, for repeatable runs. */
  seed?: number;
  /**
   * Reshuffle the training samples every epoch (default true). Off, they keep the seeded
   * order of the split, and a seeded architecture trains the same way every run.
   */
  shuffle?: boolean;
  /**
   * Classification with a softmax head only: per-class changes to the head's logits inside the
   * training loss, `logit_c x scale[c] + offset[c]` before the softmax (an offset of -Infinity
   * leaves class c out of the softmax). The loss trains on the changed logits; the saved model
   * and its predictions are the plain softmax model. Trains on one thread. See logit-adjust.ts.
   */
  logitAdjust?: LogitAdjust;
  /**
   * FedProx's proximal term (Li et al., "Federated optimization in heterogeneous networks",
   * MLSys 2020): mu / 2 x the squared distance of the trainable weights from those training
   * started with is added to the loss (0 or unset: none). Trains on one thread.
   */
  proximal?: number;
}

export interface TrainData {
  /** count x size(inputShape) values, row-major. */
  x: Float32Array;
  /** Classification: one class index per sample; regression: count x outputSize; autoencoder: unused. */
  y?: Float32Array;
  count: number;
  inputShape: number[];
  /** Number of classes (classification) or target values (regression). */
  outputSize: number;
}

export interface EpochProgress {
  epoch: number;
  epochs: number;
  loss: number;
  valLoss: number | null;
  metrics: Record<string, number>;
  learningRate: number;
  ms: number;
}

export interface TrainedArtifacts {
  modelTopology: object;
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightData: ArrayBuffer;
  format?: string;
  generatedBy?: string;
  convertedBy?: string | null;
}

export interface TrainResult {
  artifacts: TrainedArtifacts;
  inputShape: number[];
  outputShape: number[];
  /** Per epoch: loss, valLoss, accuracy, valAccuracy, mae, valMae (those that apply). */
  history: Record<string, number[]>;
  /** The kept epoch's values plus samples, epochs run and the stop reason. */
  metrics: Record<string, number>;
  stoppedBy: 'epochs' | 'early-stopping';
  backend: TfBackendName;
  epochMs: number[];
}

export interface TrainHooks {
  onEpoch?: (progress: EpochProgress) => void;
  /** Polled after every batch; true ends the run with a CancelledError. */
  isCancelled?: () => boolean;
}

/** Starts the requested backend (wasm with its gradient kernels, cpu as fallback). */
export async function prepareBackend(choice: BackendChoice = 'auto'): Promise<TfBackendName> {
  const preference: TfBackendName[] =
    choice === 'cpu' ? ['cpu'] : choice === 'wasm' ? ['wasm', 'cpu'] : ['tensorflow', 'wasm', 'cpu'];
  const backend = await useBackend(preference);
  if (backend === 'wasm') registerWasmGradients();
  return backend;
}

function shuffledIndices(count: number, random: () => number): Int32Array {
  const order = new Int32Array(count);
  for (let i = 0; i < count; i++) order[i] = i;
  for (let i = count - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

function gather(values: Float32Array, width: number, rows: Int32Array): Float32Array {
  const out = new Float32Array(rows.length * width);
  rows.forEach((row, i) => out.set(values.subarray(row * width, (row + 1) * width), i * width));
  return out;
}

/** Height, width and channels when the samples are images (2-D, 3-D, or a square vector). */
function imageDims(shape: number[]): [number, number, number] | undefined {
  if (shape.length === 3) return [shape[0], shape[1], shape[2]];
  if (shape.length === 2) return [shape[0], shape[1], 1];
  const side = Math.round(Math.sqrt(shape[0]));
  return shape.length === 1 && side > 1 && side * side === shape[0] ? [side, side, 1] : undefined;
}

/** Moves each image by a random whole number of pixels (up to `max` each way), filling with 0. */
export function shiftImages(
  x: Float32Array,
  count: number,
  dims: [number, number, number],
  max: number,
  random: () => number,
): Float32Array {
  const [h, w, c] = dims;
  const stride = h * w * c;
  const out = new Float32Array(x.length);
  for (let n = 0; n < count; n++) {
    const dy = Math.floor(random() * (2 * max + 1)) - max;
    const dx = Math.floor(random() * (2 * max + 1)) - max;
    const base = n * stride;
    for (let r = 0; r < h; r++) {
      const from = r - dy;
      if (from < 0 || from >= h) continue;
      const c0 = Math.max(0, dx);
      const c1 = Math.min(w, w + dx);
      if (c1 <= c0) continue;
      out.set(
        x.subarray(base + (from * w + c0 - dx) * c, base + (from * w + c1 - dx) * c),
        base + (r * w + c0) * c,
      );
    }
  }
  return out;
}

function makeOptimizer(settings: TrainSettings): tf.Optimizer {
  const lr = settings.learningRate;
  if (!(lr > 0)) throw new Error(`the learning rate must be above 0, got ${lr}`);
  switch (settings.optimizer) {
    case 'adam':
      return fusedAdam(lr);
    case 'sgd':
      return settings.momentum ? tf.train.momentum(lr, settings.momentum) : tf.train.sgd(lr);
    case 'rmsprop':
      return tf.train.rmsprop(lr);
    default:
      throw new Error(`unknown optimizer "${String(settings.optimizer)}": use adam, sgd or rmsprop`);
  }
}

/** TF.js optimizers read their learning rate on every step; it is a plain field at run time. */
function setLearningRate(optimizer: tf.Optimizer, lr: number): void {
  (optimizer as unknown as { learningRate: number }).learningRate = lr;
}

const HISTORY_NAMES: Record<string, string> = {
  loss: 'loss',
  val_loss: 'valLoss',
  acc: 'accuracy',
  accuracy: 'accuracy',
  val_acc: 'valAccuracy',
  val_accuracy: 'valAccuracy',
  mae: 'mae',
  val_mae: 'valMae',
};

/** The model to train, and the loaded base model (whose layers it shares) to dispose after. */
async function loadModel(
  settings: TrainSettings,
  data: TrainData,
): Promise<{ model: tfl.LayersModel; base?: tfl.LayersModel }> {
  if (settings.base) {
    const base = await tfl.loadLayersModel(fileLoadHandler(settings.base.modelJsonPath));
    if (settings.base.whole) return { model: base };
    try {
      return { model: transferModel(base, settings.base.freeze, settings.task, data.outputSize), base };
    } catch (err) {
      base.dispose();
      throw err;
    }
  }
  if (!settings.architecture) throw new Error('no architecture and no base model to train');
  return {
    model: buildModel(settings.architecture, {
      ...settings.sizes,
      inputShape: data.inputShape,
      outputSize: data.outputSize,
    }),
  };
}

function checkData(settings: TrainSettings, data: TrainData): { inSize: number; outSize: number } {
  const inSize = sizeOf(data.inputShape);
  if (data.x.length !== data.count * inSize) {
    throw new Error(`the dataset holds ${data.x.length} values, expected ${data.count} x ${inSize}`);
  }
  const outSize =
    settings.task === 'regression' ? data.outputSize : settings.task === 'classification' ? 1 : 0;
  if (outSize > 0 && (!data.y || data.y.length !== data.count * outSize)) {
    throw new Error(`the dataset holds ${data.y?.length ?? 0} targets, expected ${data.count} x ${outSize}`);
  }
  for (const [name, value, ok] of [
    ['batch size', settings.batchSize, Number.isInteger(settings.batchSize) && settings.batchSize > 0],
    ['epochs', settings.epochs, Number.isInteger(settings.epochs) && settings.epochs > 0],
    [
      'thread count',
      settings.threads ?? 1,
      Number.isInteger(settings.threads ?? 1) && (settings.threads ?? 1) >= 1,
    ],
    [
      'validation split',
      settings.validationSplit,
      settings.validationSplit >= 0 && settings.validationSplit < 1,
    ],
  ] as const) {
    if (!ok) throw new Error(`invalid ${name}: ${value}`);
  }
  return { inSize, outSize };
}

/** Trains one model on `data`; the caller saves the artifacts. Frees every tensor it made. */
export async function trainModel(
  settings: TrainSettings,
  data: TrainData,
  hooks: TrainHooks = {},
): Promise<TrainResult> {
  const backend = await prepareBackend(settings.backend);
  const { inSize } = checkData(settings, data);
  const random = seededRandom(settings.seed ?? Date.now());
  const order = shuffledIndices(data.count, random);
  const valCount = settings.validationSplit > 0 ? Math.floor(data.count * settings.validationSplit) : 0;
  const trainRows = order.subarray(0, data.count - valCount);
  const valRows = order.subarray(data.count - valCount);
  const task = settings.task;
  const targetWidth = task === 'regression' ? data.outputSize : task === 'classification' ? 1 : inSize;
  const targetsOf = (rows: Int32Array): Float32Array =>
    task === 'autoencoder' ? gather(data.x, inSize, rows) : gather(data.y as Float32Array, targetWidth, rows);
  const trainX = gather(data.x, inSize, trainRows);
  const trainY = targetsOf(trainRows);
  const image = settings.augmentShift ? imageDims(data.inputShape) : undefined;

  const toTensors = (x: Float32Array, y: Float32Array, count: number): [tf.Tensor, tf.Tensor] =>
    tf.tidy(() => {
      const xs = tf.tensor(x, [count, ...data.inputShape]);
      if (task === 'classification') {
        return [xs, tf.cast(tf.oneHot(tf.tensor1d(Int32Array.from(y), 'int32'), data.outputSize), 'float32')];
      }
      return [
        xs,
        task === 'autoencoder'
          ? tf.tensor(y, [count, ...data.inputShape])
          : tf.tensor2d(y, [count, targetWidth]),
      ];
    });

  const optimizer = makeOptimizer(settings);
  const { model, base } = await loadModel(settings, data).catch((err: unknown) => {
    optimizer.dispose();
    throw err;
  });
  const owned: tf.Tensor[] = [];
  let parallel: ParallelTrainer | undefined;
  let best: { loss: number; epoch: number; weights: tf.Tensor[] } | undefined;
  let head: { restore(): void } | undefined;
  try {
    if (settings.logitAdjust && task === 'classification') {
      head = logitsHead(model);
      model.compile({
        optimizer,
        loss: adjustedLoss(settings.logitAdjust, data.outputSize),
        metrics: metricsFor(task),
      });
    } else {
      model.compile({ optimizer, loss: lossFor(task), metrics: metricsFor(task) });
    }
    if (settings.proximal) owned.push(...addProximalTerm(model, settings.proximal));
    const threads = head || settings.proximal ? 1 : Math.min(settings.threads ?? 1, settings.batchSize);
    if (threads > 1) {
      parallel = await ParallelTrainer.start(model, {
        threads,
        backend: backend === 'tensorflow' ? 'auto' : backend,
        loss: lossFor(task),
        metrics: metricsFor(task),
        inputShape: data.inputShape,
        targetShape:
          task === 'autoencoder'
            ? data.inputShape
            : [task === 'classification' ? data.outputSize : targetWidth],
        maxRows: settings.batchSize,
      });
      parallel.install();
    }
    const validation =
      valCount > 0 ? toTensors(gather(data.x, inSize, valRows), targetsOf(valRows), valCount) : undefined;
    if (validation) owned.push(...validation);
    let fixedTrain: [tf.Tensor, tf.Tensor] | undefined;
    if (!image) {
      fixedTrain = toTensors(trainX, trainY, trainRows.length);
      owned.push(...fixedTrain);
    }
    const classWeight =
      task === 'classification' && settings.classWeights
        ? Object.fromEntries(settings.classWeights.map((w, i) => [i, w]))
        : undefined;
    const history: Record<string, number[]> = {};
    const epochMs: number[] = [];
    let stoppedBy: TrainResult['stoppedBy'] = 'epochs';
    let cancelled = false;
    const patience = settings.earlyStoppingPatience ?? 0;
    let stale = 0;

    for (let epoch = 0; epoch < settings.epochs; epoch++) {
      const lr = settings.learningRate * Math.pow(settings.learningRateDecay ?? 1, epoch);
      setLearningRate(optimizer, lr);
      const started = performance.now();
      const [xs, ys] =
        fixedTrain ??
        toTensors(
          shiftImages(
            trainX,
            trainRows.length,
            image as [number, number, number],
            settings.augmentShift ?? 0,
            random,
          ),
          trainY,
          trainRows.length,
        );
      let fitted: tfl.History;
      try {
        fitted = await model.fit(xs, ys, {
          epochs: 1,
          batchSize: settings.batchSize,
          shuffle: settings.shuffle ?? true,
          validationData: validation,
          classWeight,
          verbose: 0,
          callbacks: {
            onBatchEnd: async () => {
              if (hooks.isCancelled?.()) {
                cancelled = true;
                model.stopTraining = true;
              }
            },
          },
        });
      } finally {
        if (!fixedTrain) tf.dispose([xs, ys]);
      }
      if (cancelled) throw new CancelledError();
      epochMs.push(performance.now() - started);
      const values: Record<string, number> = {};
      for (const [key, series] of Object.entries(fitted.history)) {
        const name = HISTORY_NAMES[key] ?? key;
        const value = Number(series[series.length - 1]);
        values[name] = value;
        (history[name] ??= []).push(value);
      }
      const { loss, valLoss, ...metrics } = values;
      hooks.onEpoch?.({
        epoch: epoch + 1,
        epochs: settings.epochs,
        loss,
        valLoss: valLoss ?? null,
        metrics,
        learningRate: lr,
        ms: epochMs[epochMs.length - 1],
      });
      if (patience > 0 && valLoss !== undefined) {
        if (!best || valLoss < best.loss) {
          tf.dispose(best?.weights ?? []);
          best = { loss: valLoss, epoch, weights: model.getWeights().map((w) => w.clone()) };
          stale = 0;
        } else if (++stale >= patience && epoch < settings.epochs - 1) {
          // Patience running out on the last epoch is not an early stop.
          stoppedBy = 'early-stopping';
          break;
        }
      }
    }
    const kept = best ? best.epoch : epochMs.length - 1;
    if (best && best.epoch !== epochMs.length - 1) model.setWeights(best.weights);
    head?.restore();
    const metrics: Record<string, number> = {
      samples: data.count,
      epochs: epochMs.length,
      bestEpoch: kept + 1,
    };
    for (const [name, series] of Object.entries(history)) metrics[name] = series[kept];

    let artifacts: TrainedArtifacts | undefined;
    await model.save(
      tf.io.withSaveHandler(async (a) => {
        artifacts = {
          modelTopology: a.modelTopology as object,
          weightSpecs: a.weightSpecs ?? [],
          weightData: a.weightData ? tf.io.CompositeArrayBuffer.join(a.weightData) : new ArrayBuffer(0),
          format: a.format,
          generatedBy: a.generatedBy,
          convertedBy: a.convertedBy,
        };
        return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(a) };
      }),
    );
    return {
      artifacts: artifacts as TrainedArtifacts,
      ...modelShapes(model),
      history,
      metrics,
      stoppedBy,
      backend,
      epochMs,
    };
  } finally {
    head?.restore();
    await parallel?.close();
    tf.dispose(owned);
    tf.dispose(best?.weights ?? []);
    model.dispose();
    // The new model owns the base layers it kept; the base's dropped head is freed here.
    for (const layer of base?.layers ?? []) if (!model.layers.includes(layer)) layer.dispose();
    optimizer.dispose();
  }
}

/** Class weights that balance the classes: count / (classes x samples of the class). */
export function balancedClassWeights(labels: Float32Array, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (const label of labels) counts[label]++;
  return counts.map((n) => (n > 0 ? labels.length / (classes * n) : 1));
}
