/**
 * Neural sequence detectors: an autoencoder (dense, Conv1D or LSTM) reconstructing windows,
 * or an LSTM forecasting the next sample. The networks come from the training catalogue
 * (lib/train/architectures) and train through its trainer in the training worker, which then
 * holds the model to score; the raw statistic is the per-channel reconstruction (or forecast)
 * error of the newest window.
 */

import { defaultTrainingThreads } from '../train/threads';
import type { ModelRunner } from '../models/runtime/runner';
import type { ArchitectureName, ArchitectureOptions } from '../train/architectures';
import type {
  EpochProgress,
  TrainData,
  TrainedArtifacts,
  TrainResult,
  TrainSettings,
} from '../train/trainer';
import { dataBuffers, trainingWorkerClient } from '../train/training-worker';
import type { LoadParams, PredictParams, TrainParams } from '../train/worker-protocol';
import type { WorkerClient } from '../util/worker-rpc';
import { sizeOf } from '../preprocess/shape';
import { scaleFloor, type ScoreModel, type ScoreModelState } from './stat-models';
import type { SequenceArchitecture, TrainingProgress } from './sequence-protocol';

export type { SequenceArchitecture } from './sequence-protocol';

/** The worker thread that trains, then holds and runs, one sequence model. */
export type SequenceWorker = WorkerClient;

export interface SequenceModelOptions {
  /** Samples per window. The Conv1D autoencoder needs a multiple of 4. */
  window: number;
  epochs: number;
  /** Size of the autoencoder's bottleneck. */
  latent: number;
  batchSize: number;
  /** Latest fraction of the learning windows held out to calibrate the scores. */
  validationSplit: number;
  seed: number;
  /** Training uses at most this many windows, evenly spaced. */
  maxTrainWindows?: number;
  learningRate?: number;
  onProgress?: (progress: TrainingProgress) => void;
  /** Receives the training worker while it trains, so the caller can stop it. */
  onWorker?: (worker: SequenceWorker | null) => void;
}

/** TF.js backends of the sequence models: wasm, cpu as fallback (as the detector always used). */
const BACKEND = 'wasm';

/** Each detector network as a catalogue architecture with its sizes. */
function catalogueEntry(
  arch: SequenceArchitecture,
  window: number,
  d: number,
  latent: number,
  seed: number,
): { architecture: ArchitectureName; sizes: Omit<ArchitectureOptions, 'inputShape' | 'outputSize'> } {
  const recurrentUnits = Math.max(8, Math.min(32, 4 * d));
  switch (arch) {
    case 'ae-dense': {
      const hidden = Math.max(8, Math.min(64, Math.round((window * d) / 4)));
      return {
        architecture: 'dense-autoencoder',
        sizes: { units: [hidden], latent, latentActivation: 'linear', seed },
      };
    }
    case 'ae-conv':
      // Two stride-2 convolutions down, upsampling back (window divisible by 4).
      return {
        architecture: 'conv1d-autoencoder',
        sizes: { filters: [16], latent: 8, kernelSize: 7, strides: 2, seed },
      };
    case 'ae-lstm':
      return {
        architecture: 'lstm-autoencoder',
        sizes: { units: [recurrentUnits], latent, latentActivation: 'linear', seed },
      };
    case 'forecast':
      return { architecture: 'lstm-forecaster', sizes: { units: [recurrentUnits], seed } };
  }
}

/** Model input of standardised windows: all of each window, or (forecast) all but the newest sample. */
function inputsOf(
  arch: SequenceArchitecture,
  data: Float32Array,
  count: number,
  w: number,
  d: number,
): Float32Array {
  if (arch !== 'forecast') return data;
  const out = new Float32Array(count * (w - 1) * d);
  for (let i = 0; i < count; i++) out.set(data.subarray(i * w * d, (i * w + w - 1) * d), i * (w - 1) * d);
  return out;
}

/** The forecaster's targets: the newest sample of each window. */
function newestOf(data: Float32Array, count: number, w: number, d: number): Float32Array {
  const out = new Float32Array(count * d);
  for (let i = 0; i < count; i++) out.set(data.subarray((i * w + w - 1) * d, (i * w + w) * d), i * d);
  return out;
}

/** Per-window, per-channel squared error: mean over the window (autoencoders) or of the newest sample. */
function errorsOf(
  arch: SequenceArchitecture,
  data: Float32Array,
  output: Float32Array,
  count: number,
  w: number,
  d: number,
): number[][] {
  return Array.from({ length: count }, (_, i) => {
    const errs = new Array<number>(d).fill(0);
    if (arch === 'forecast') {
      for (let j = 0; j < d; j++) errs[j] = (output[i * d + j] - data[(i * w + w - 1) * d + j]) ** 2;
    } else {
      for (let t = 0; t < w; t++)
        for (let j = 0; j < d; j++) {
          const k = (i * w + t) * d + j;
          errs[j] += (output[k] - data[k]) ** 2 / w;
        }
    }
    return errs;
  });
}

export interface SequenceModelState {
  type: 'sequence';
  arch: SequenceArchitecture;
  window: number;
  channels: string[];
  mean: number[];
  scale: number[];
  centred: boolean[];
  artifacts: { modelTopology: object; weightSpecs: unknown[]; weightData: string };
  loss: number;
}

/**
 * Standardises flat windows per channel. Channels marked `centred` (slowly wandering ones)
 * are centred on their own mean within each window, so the model sees their shape, not
 * their level.
 */
export function standardise(
  features: readonly number[][],
  mean: readonly number[],
  scale: readonly number[],
  centred: readonly boolean[] = [],
): Float32Array {
  const d = mean.length;
  const size = features[0]?.length ?? 0;
  const steps = size / d;
  const out = new Float32Array(features.length * size);
  const level = new Array<number>(d);
  features.forEach((f, i) => {
    for (let j = 0; j < d; j++) {
      level[j] = mean[j];
      if (!centred[j]) continue;
      let sum = 0;
      for (let t = 0; t < steps; t++) sum += f[t * d + j];
      level[j] = sum / steps;
    }
    for (let k = 0; k < size; k++) out[i * size + k] = (f[k] - level[k % d]) / scale[k % d];
  });
  return out;
}

export class SequenceModel implements ScoreModel {
  readonly statistics: string[];

  constructor(
    private readonly worker: SequenceWorker,
    readonly arch: SequenceArchitecture,
    readonly window: number,
    private readonly channels: string[],
    private readonly mean: number[],
    private readonly scale: number[],
    private readonly centred: boolean[],
    private readonly artifacts: TrainedArtifacts,
    readonly loss: number,
  ) {
    this.statistics = channels.slice();
  }

  async evaluate(features: readonly number[][]): Promise<number[][]> {
    return this.errors(standardise(features, this.mean, this.scale, this.centred), features.length);
  }

  /** Errors of standardised windows, flat [count x window x channels]. */
  async errors(data: Float32Array, count: number): Promise<number[][]> {
    const d = this.channels.length;
    const w = this.window;
    const params: PredictParams = { x: inputsOf(this.arch, data, count, w, d), count };
    const output = await this.worker.request<Float32Array>('predict', params);
    return errorsOf(this.arch, data, output, count, w, d);
  }

  /** The network stays as trained; adapting it online would need training in the stream. */
  update(): void {}

  /** Number of tensors the worker holds (for leak checks). */
  async workerTensors(): Promise<number> {
    return this.worker.request<number>('memory');
  }

  state(): ScoreModelState {
    const s: SequenceModelState = {
      type: 'sequence',
      arch: this.arch,
      window: this.window,
      channels: this.channels.slice(),
      mean: this.mean.slice(),
      scale: this.scale.slice(),
      centred: this.centred.slice(),
      artifacts: {
        modelTopology: this.artifacts.modelTopology,
        weightSpecs: this.artifacts.weightSpecs,
        weightData: Buffer.from(this.artifacts.weightData).toString('base64'),
      },
      loss: this.loss,
    };
    return s as unknown as ScoreModelState;
  }

  async dispose(): Promise<void> {
    await this.worker.terminate();
  }
}

/** Trains a sequence model on learning windows (flat rows of window x channels) in the training worker. */
export async function fitSequenceModel(
  arch: SequenceArchitecture,
  features: number[][],
  window: number,
  channels: string[],
  options: SequenceModelOptions,
  centred: boolean[] = [],
): Promise<{ model: ScoreModel; calibration: number[][] }> {
  const d = channels.length;
  if (arch === 'ae-conv' && window % 4 !== 0)
    throw new Error(`the Conv1D autoencoder needs a window that is a multiple of 4, got ${window}`);
  if (features.length < 8) throw new Error(`too few learning windows (${features.length}) to train on`);
  const mean = new Array<number>(d).fill(0);
  const sq = new Array<number>(d).fill(0);
  let n = 0;
  for (const f of features) {
    for (let k = 0; k < f.length; k++) mean[k % d] += f[k];
    n += window;
  }
  for (let j = 0; j < d; j++) mean[j] /= n;
  for (const f of features) for (let k = 0; k < f.length; k++) sq[k % d] += (f[k] - mean[k % d]) ** 2;
  const scale = sq.map((s, j) => scaleFloor(Math.sqrt(s / Math.max(1, n - 1)), mean[j]));

  // Validation = the latest windows (they calibrate the scores); training = evenly spaced
  // earlier windows (overlapping neighbours add little), in the trainer's seeded order.
  const all = standardise(features, mean, scale, centred);
  const count = features.length;
  const size = window * d;
  const nVal = Math.min(count - 1, Math.max(1, Math.round(count * options.validationSplit)));
  const nTrain = count - nVal;
  const step = Math.max(1, Math.ceil(nTrain / Math.max(1, options.maxTrainWindows ?? 128)));
  const picked = Math.ceil(nTrain / step);
  const windows = new Float32Array(picked * size);
  for (let i = 0; i < picked; i++)
    windows.set(all.subarray(i * step * size, (i * step + 1) * size), i * size);
  const held = all.slice(nTrain * size);

  const { architecture, sizes } = catalogueEntry(arch, window, d, options.latent, options.seed);
  const forecast = arch === 'forecast';
  const settings: TrainSettings = {
    task: forecast ? 'regression' : 'autoencoder',
    architecture,
    sizes,
    optimizer: 'adam',
    learningRate: options.learningRate ?? 0.005,
    batchSize: options.batchSize,
    epochs: options.epochs,
    validationSplit: 0,
    backend: BACKEND,
    threads: defaultTrainingThreads(),
    seed: options.seed,
    shuffle: false,
  };
  const data: TrainData = forecast
    ? {
        x: inputsOf(arch, windows, picked, window, d),
        y: newestOf(windows, picked, window, d),
        count: picked,
        inputShape: [window - 1, d],
        outputSize: d,
      }
    : { x: windows, count: picked, inputShape: [window, d], outputSize: size };

  const worker = trainingWorkerClient();
  options.onWorker?.(worker);
  try {
    const params: TrainParams = { settings, data, keep: true };
    const result = await worker.request<TrainResult, EpochProgress>('train', params, {
      transfer: dataBuffers(data),
      onProgress: (p) =>
        options.onProgress?.({ type: 'progress', epoch: p.epoch, epochs: p.epochs, loss: p.loss }),
    });
    const model = new SequenceModel(
      worker,
      arch,
      window,
      channels,
      mean,
      scale,
      centred,
      result.artifacts,
      result.metrics.loss,
    );
    return { model, calibration: await model.errors(held, nVal) };
  } catch (err) {
    await worker.terminate();
    throw err;
  } finally {
    options.onWorker?.(null);
  }
}

export async function restoreSequenceModel(state: ScoreModelState): Promise<ScoreModel> {
  const s = state as unknown as SequenceModelState;
  const weights = Buffer.from(s.artifacts.weightData, 'base64');
  const artifacts: TrainedArtifacts = {
    modelTopology: s.artifacts.modelTopology,
    weightSpecs: s.artifacts.weightSpecs as TrainedArtifacts['weightSpecs'],
    weightData: weights.buffer.slice(weights.byteOffset, weights.byteOffset + weights.byteLength),
  };
  const worker = trainingWorkerClient();
  try {
    const params: LoadParams = { artifacts, backend: BACKEND };
    await worker.request('load', params);
  } catch (err) {
    await worker.terminate();
    throw err;
  }
  return new SequenceModel(
    worker,
    s.arch,
    s.window,
    s.channels,
    s.mean,
    s.scale,
    s.centred ?? [],
    artifacts,
    s.loss,
  );
}

/**
 * A model the user supplies (through edge-model) used as a detector: when its output has the
 * window's shape it is an autoencoder (error per channel over the window); when it has one
 * value per channel it forecasts the newest sample from the ones before it. It is used as
 * given (no standardisation here: normalise upstream the way the model was trained).
 */
export class ExternalSequenceModel implements ScoreModel {
  readonly statistics: string[];

  constructor(
    private readonly runner: ModelRunner,
    private readonly window: number,
    channels: string[],
  ) {
    this.statistics = channels.slice();
  }

  private get forecasting(): boolean {
    const out = sizeOf(this.runner.outputShape);
    return out === this.statistics.length;
  }

  async evaluate(features: readonly number[][]): Promise<number[][]> {
    const d = this.statistics.length;
    const w = this.window;
    const steps = this.forecasting ? w - 1 : w;
    const input = new Float32Array(features.length * steps * d);
    features.forEach((f, i) => input.set(f.slice(0, steps * d), i * steps * d));
    const output = await this.runner.predict(input, features.length);
    return features.map((f, i) => {
      const errs = new Array<number>(d).fill(0);
      if (this.forecasting) {
        for (let j = 0; j < d; j++) errs[j] = (output[i * d + j] - f[(w - 1) * d + j]) ** 2;
      } else {
        for (let t = 0; t < w; t++)
          for (let j = 0; j < d; j++) errs[j] += (output[i * w * d + t * d + j] - f[t * d + j]) ** 2 / w;
      }
      return errs;
    });
  }

  update(): void {}

  state(): ScoreModelState {
    return { type: 'external', window: this.window };
  }

  /** The runner belongs to the edge-model node that supplied it. */
  async dispose(): Promise<void> {}
}
