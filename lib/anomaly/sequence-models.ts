/**
 * Neural sequence detectors: an autoencoder (dense, Conv1D or LSTM) reconstructing windows,
 * or an LSTM forecasting the next sample. Training and inference run in a worker thread; the
 * raw statistic is the per-channel reconstruction (or forecast) error of the newest window.
 */

import path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { ModelRunner } from '../models/runtime/runner';
import { scaleFloor, type ScoreModel, type ScoreModelState } from './stat-models';
import type {
  SequenceArchitecture,
  SequenceArtifacts,
  SequenceReply,
  SequenceRequest,
  TrainingProgress,
} from './sequence-protocol';
import { sizeOf } from '../preprocess/shape';

export type { SequenceArchitecture } from './sequence-protocol';

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

interface Pending {
  resolve: (reply: SequenceReply) => void;
  reject: (err: Error) => void;
}

/** One worker thread owning one TF.js model. */
export class SequenceWorker {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private exited = false;
  onProgress?: (progress: TrainingProgress) => void;

  constructor() {
    this.worker = new Worker(path.join(__dirname, 'sequence-worker.js'));
    this.worker.on(
      'message',
      (msg: { id?: number; reply?: SequenceReply; error?: string } & Partial<TrainingProgress>) => {
        if (msg.type === 'progress') {
          this.onProgress?.(msg as TrainingProgress);
          return;
        }
        const p = msg.id !== undefined ? this.pending.get(msg.id) : undefined;
        if (!p) return;
        this.pending.delete(msg.id as number);
        if (msg.error !== undefined) p.reject(new Error(msg.error));
        else p.resolve(msg.reply as SequenceReply);
      },
    );
    const fail = (err: Error) => {
      this.exited = true;
      for (const p of this.pending.values()) p.reject(err);
      this.pending.clear();
    };
    this.worker.on('error', fail);
    this.worker.on('exit', (code) => fail(new Error(`model worker stopped (exit code ${code})`)));
  }

  request<T extends SequenceReply['type']>(
    request: SequenceRequest,
    expect: T,
  ): Promise<Extract<SequenceReply, { type: T }>> {
    if (this.exited) return Promise.reject(new Error('model worker is not running'));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, {
        resolve: (reply) =>
          reply.type === expect
            ? resolve(reply as Extract<SequenceReply, { type: T }>)
            : reject(new Error(`unexpected reply ${reply.type}`)),
        reject,
      });
      this.worker.postMessage({ id, request });
    });
  }

  async terminate(): Promise<void> {
    if (this.exited) return;
    this.exited = true;
    await this.worker.terminate();
  }
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

function rowsOf(flat: Float32Array, d: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < flat.length; i += d) out.push(Array.from(flat.subarray(i, i + d)));
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
    private readonly artifacts: SequenceArtifacts,
    readonly loss: number,
  ) {
    this.statistics = channels.slice();
  }

  async evaluate(features: readonly number[][]): Promise<number[][]> {
    const d = this.channels.length;
    const reply = await this.worker.request(
      {
        type: 'score',
        data: standardise(features, this.mean, this.scale, this.centred),
        count: features.length,
        window: this.window,
        channels: d,
      },
      'scored',
    );
    return rowsOf(reply.errors, d);
  }

  /** The network stays as trained; adapting it online would need training in the stream. */
  update(): void {}

  /** Number of tensors the worker holds (for leak checks). */
  async workerTensors(): Promise<number> {
    return (await this.worker.request({ type: 'memory' }, 'memory')).numTensors;
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

/** Trains a sequence model on learning windows (flat rows of window x channels) in a worker. */
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

  const worker = new SequenceWorker();
  worker.onProgress = options.onProgress;
  options.onWorker?.(worker);
  try {
    const reply = await worker.request(
      {
        type: 'train',
        arch,
        data: standardise(features, mean, scale, centred),
        count: features.length,
        window,
        channels: d,
        latent: options.latent,
        epochs: options.epochs,
        batchSize: options.batchSize,
        learningRate: options.learningRate ?? 0.005,
        validationSplit: options.validationSplit,
        seed: options.seed,
        maxTrainWindows: options.maxTrainWindows ?? 128,
      },
      'trained',
    );
    worker.onProgress = undefined;
    const model = new SequenceModel(
      worker,
      arch,
      window,
      channels,
      mean,
      scale,
      centred,
      reply.artifacts,
      reply.loss,
    );
    return { model, calibration: rowsOf(reply.calibration, d) };
  } catch (err) {
    await worker.terminate();
    throw err;
  } finally {
    options.onWorker?.(null);
  }
}

export async function restoreSequenceModel(state: ScoreModelState): Promise<ScoreModel> {
  const s = state as unknown as SequenceModelState;
  const artifacts: SequenceArtifacts = {
    modelTopology: s.artifacts.modelTopology,
    weightSpecs: s.artifacts.weightSpecs,
    weightData: new Uint8Array(Buffer.from(s.artifacts.weightData, 'base64')),
  };
  const worker = new SequenceWorker();
  try {
    await worker.request({ type: 'load', arch: s.arch, artifacts }, 'loaded');
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
