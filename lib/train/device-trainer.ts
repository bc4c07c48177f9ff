/**
 * Everything edge-train does, without Node-RED: collects samples into the node's on-disk
 * dataset, trains in a worker thread, and saves the result as a new version in the model store
 * (on this thread, so the store's 'saved' event reaches every edge-model following the name).
 */
import path from 'node:path';
import { fileSaveHandler } from '../models/runtime/tfjs';
import { ModelStore, type StoredModel } from '../models/store/store';
import { ARCHITECTURES, type ArchitectureName, type Task } from './architectures';
import { Dataset, type ExportedDataset, type LabelKind, type RetentionPolicy } from './dataset';
import { TrainingWorker } from './training-worker';
import { defaultTrainingThreads } from './threads';
import { balancedClassWeights, type EpochProgress, type TrainResult, type TrainSettings } from './trainer';
import { CancelledError, TooFewSamplesError } from '../errors';
import { labelSkewAdjust, type LabelSkewCorrection } from './logit-adjust';

export { TooFewSamplesError };

export type ClassWeighting = 'none' | 'balanced' | Record<string, number>;

export interface DeviceTrainerConfig {
  /** Name the trained model is saved under (a new version each run). */
  modelName: string;
  store: ModelStore;
  /** This node's dataset directory, e.g. `<userDir>/edge-ai/datasets/<node id>`. */
  datasetDir: string;
  capacity: number;
  policy: RetentionPolicy;
  /** The architecture to build, or the task when fine-tuning `baseModel`. */
  architecture?: ArchitectureName;
  task?: Task;
  baseModel?: { name: string; version?: number; freeze: number };
  /** Fixes the sample shape (else the first sample does). */
  inputShape?: number[];
  /** Fixes the class names (else they are learnt). */
  classes?: string[];
  classWeights?: ClassWeighting;
  /** Training needs at least this many samples. */
  minSamples: number;
  /** `threads` 0 or unset: every core but one. */
  training: Omit<TrainSettings, 'task' | 'architecture' | 'base' | 'classWeights'>;
}

/** The global model a federated round continues, and the fleet's class order. */
export interface FederatedRoundBase {
  base: { name: string; version?: number };
  labels?: string[];
  /** The factor on the configured learning rate announced for the round (decay over rounds). */
  learningRateScale?: number;
  /**
   * The label-skew correction of the local loss (FedRS restricted softmax or FedLC logit
   * calibration, from this device's class counts; see logit-adjust.ts). Unset: plain loss.
   */
  labelSkew?: LabelSkewCorrection;
  /** FedProx's mu: the local loss adds mu/2 |w - w_global|^2 (0 or unset: none). */
  proximal?: number;
}

/** When training starts without a 'train' command. */
export interface AutoTraining {
  trigger: 'message' | 'interval' | 'samples';
  intervalMinutes: number;
  everySamples: number;
}

const round = (value: number | null | undefined, digits = 4): number | null =>
  typeof value === 'number' && Number.isFinite(value) ? Number(value.toFixed(digits)) : null;

/** The payload of a progress message. */
export function progressPayload(p: EpochProgress): Record<string, unknown> {
  return {
    epoch: p.epoch,
    epochs: p.epochs,
    loss: round(p.loss, 6),
    valLoss: round(p.valLoss, 6),
    metrics: p.metrics,
  };
}

/** The payload of the message saying a run finished. */
export function outcomePayload(outcome: TrainOutcome): Record<string, unknown> {
  return {
    model: outcome.model,
    version: outcome.version,
    metrics: outcome.metrics,
    history: outcome.history,
    samples: outcome.samples,
    stoppedBy: outcome.stoppedBy,
    backend: outcome.backend,
    durationMs: outcome.durationMs,
  };
}

/** A short summary for a status line: accuracy in percent when known, else the loss. */
export function outcomeSummary(outcome: TrainOutcome): { accuracy?: string; loss: number | string } {
  const accuracy = outcome.metrics.valAccuracy ?? outcome.metrics.accuracy;
  return {
    accuracy: accuracy === undefined ? undefined : (accuracy * 100).toFixed(1),
    loss: round(outcome.metrics.loss) ?? '-',
  };
}

export { round as roundMetric };

export interface TrainOutcome {
  model: string;
  version: number;
  metrics: Record<string, number>;
  history: Record<string, number[]>;
  stoppedBy: TrainResult['stoppedBy'];
  backend: string;
  samples: number;
  durationMs: number;
  stored: StoredModel;
}

function labelKindOf(task: Task): LabelKind {
  return task === 'classification' ? 'class' : task === 'regression' ? 'vector' : 'none';
}

export class DeviceTrainer {
  private worker: TrainingWorker | undefined;
  private closed = false;
  private auto: { settings: AutoTraining; start: () => void; timer?: NodeJS.Timeout } | undefined;
  /** Samples added since the last training run started. */
  samplesSinceTraining = 0;

  private constructor(
    readonly config: DeviceTrainerConfig,
    readonly task: Task,
    readonly dataset: Dataset,
    /** Why stored samples were dropped on open (shape or label kind changed), if they were. */
    readonly resetReason?: string,
  ) {}

  static async open(config: DeviceTrainerConfig): Promise<DeviceTrainer> {
    ModelStore.checkName(config.modelName);
    const task = config.baseModel
      ? (config.task ?? 'classification')
      : config.architecture && ARCHITECTURES[config.architecture];
    if (!task) throw new Error('choose an architecture, or a base model to fine-tune');
    if (!(config.minSamples >= 1)) throw new Error('the minimum sample count must be at least 1');
    const { dataset, reset } = await Dataset.open({
      dir: config.datasetDir,
      capacity: config.capacity,
      policy: config.policy,
      labelKind: labelKindOf(task),
      inputShape: config.inputShape,
      classes: config.classes,
    });
    return new DeviceTrainer(config, task, dataset, reset);
  }

  get training(): boolean {
    return this.worker !== undefined;
  }

  /** Stores one sample (rejects bad ones with a DatasetError); resolves once it is on disk. */
  async addSample(payload: unknown, label?: unknown): Promise<void> {
    await this.dataset.add(payload, label);
    this.samplesSinceTraining++;
    const auto = this.auto;
    if (
      auto?.settings.trigger === 'samples' &&
      this.samplesSinceTraining >= auto.settings.everySamples &&
      !this.training
    )
      auto.start();
  }

  /**
   * Starts training without a command: `start` is called every `intervalMinutes` (trigger
   * 'interval') or once `everySamples` samples arrived since the last run (trigger 'samples'),
   * never while a run is in progress; close() ends it.
   */
  autoTrain(settings: AutoTraining, start: () => void): void {
    if (this.auto?.timer) clearInterval(this.auto.timer);
    const guarded = (): void => {
      if (!this.closed && !this.training) start();
    };
    this.auto = { settings, start: guarded };
    if (settings.trigger === 'interval' && settings.intervalMinutes > 0)
      this.auto.timer = setInterval(guarded, settings.intervalMinutes * 60_000);
  }

  /** Remembers the normalisation statistics in use, saved with the next model. */
  setNormalisation(stats: unknown): Promise<void> {
    return this.dataset.setNormalisation(stats);
  }

  private classWeights(y: Float32Array, classes: string[]): number[] | undefined {
    const weighting = this.config.classWeights;
    if (this.task !== 'classification' || !weighting || weighting === 'none') return undefined;
    if (weighting === 'balanced') return balancedClassWeights(y, classes.length);
    return classes.map((name) => {
      const w = weighting[name];
      if (w === undefined) return 1;
      if (!(typeof w === 'number' && w > 0))
        throw new Error(`class weight of "${name}" must be a positive number`);
      return w;
    });
  }

  /**
   * Trains on the whole dataset in a worker thread and saves the model as a new version.
   * Rejects with TooFewSamplesError, CancelledError (cancel/close) or the training error; in
   * every such case nothing is saved and the previous version stays current.
   *
   * `round`: a federated round: training continues the whole stored model `round.base` (its own
   * output layer kept, nothing frozen), with the class indices of `round.labels` (the fleet's
   * order; a class the fleet model does not know is an error). A device may hold one class only.
   */
  async train(
    onProgress?: (progress: EpochProgress) => void,
    round?: FederatedRoundBase,
  ): Promise<TrainOutcome> {
    if (this.closed) throw new Error('the trainer is closed');
    if (this.worker) throw new Error('a training run is already in progress');
    const started = Date.now();
    const worker = new TrainingWorker();
    this.worker = worker;
    try {
      const data = await this.dataset.load();
      if (data.count < this.config.minSamples)
        throw new TooFewSamplesError(data.count, this.config.minSamples);
      if (round?.labels && this.task === 'classification' && data.y) {
        const labels = round.labels;
        const index = data.classes.map((name) => labels.indexOf(name));
        const unknown = data.classes.filter((_, i) => index[i] < 0);
        if (unknown.length > 0) {
          throw new Error(
            `class ${unknown.join(', ')} is not one of the fleet model's classes (${labels.join(', ')})`,
          );
        }
        data.y = data.y.map((c) => index[c]);
        data.classes = [...labels];
      } else if (this.task === 'classification' && data.classes.length < 2 && !round) {
        throw new Error(
          `need samples of at least 2 classes to train a classifier, have ${data.classes.join(', ') || 'none'}`,
        );
      }
      this.samplesSinceTraining = 0;
      let base: TrainSettings['base'];
      const baseModel = round ? { ...round.base, freeze: 0 } : this.config.baseModel;
      if (baseModel) {
        const stored = await this.config.store.get(baseModel.name, baseModel.version);
        if (!stored) throw new Error(`base model "${baseModel.name}" is not in the model store`);
        if (stored.meta.format !== 'tfjs-layers') {
          throw new Error(
            `base model "${stored.meta.name}" is ${stored.meta.format}; fine-tuning needs a TF.js layers model`,
          );
        }
        await this.config.store.verify(stored);
        base = {
          modelJsonPath: path.join(stored.dir, stored.meta.entry),
          freeze: baseModel.freeze,
          whole: round !== undefined,
        };
      }
      const settings: TrainSettings = {
        ...this.config.training,
        learningRate: this.config.training.learningRate * (round?.learningRateScale ?? 1),
        threads: this.config.training.threads || defaultTrainingThreads(),
        task: this.task,
        architecture: this.config.architecture,
        base,
        classWeights: data.y ? this.classWeights(data.y, data.classes) : undefined,
        logitAdjust:
          this.task === 'classification' && data.y
            ? labelSkewAdjust(round?.labelSkew, data.y, data.classes.length)
            : undefined,
        proximal: round?.proximal ? round.proximal : undefined,
      };
      const outputSize = this.task === 'classification' ? data.classes.length : data.targetSize;
      const result = await worker.run(
        settings,
        { x: data.x, y: data.y, count: data.count, inputShape: data.inputShape, outputSize },
        onProgress,
      );
      // Closed (redeploy) after the worker finished: a cancellation like any other, nothing saved.
      if (this.closed) throw new CancelledError();
      const stored = await this.config.store.save(
        this.config.modelName,
        {
          format: 'tfjs-layers',
          entry: 'model.json',
          task: this.task,
          inputShape: result.inputShape,
          outputShape: result.outputShape,
          labels: this.task === 'classification' ? data.classes : undefined,
          channels: data.channels ?? undefined,
          normalisation: data.normalisation,
          metrics: result.metrics,
          history: result.history,
          source: 'edge-train',
          training: {
            architecture: this.config.architecture ?? null,
            baseModel: baseModel ?? null,
            optimizer: settings.optimizer,
            learningRate: settings.learningRate,
            batchSize: settings.batchSize,
            epochs: settings.epochs,
            validationSplit: settings.validationSplit,
            backend: result.backend,
            threads: settings.threads,
            epochMs: result.epochMs.map((ms) => Math.round(ms)),
            stoppedBy: result.stoppedBy,
            ...(settings.logitAdjust && round?.labelSkew ? { labelSkew: round.labelSkew } : {}),
            ...(settings.proximal ? { proximal: settings.proximal } : {}),
          },
        },
        async (dir) => {
          const handler = fileSaveHandler(dir);
          if (!handler.save) throw new Error('the TF.js file handler cannot save');
          await handler.save({ ...result.artifacts });
        },
      );
      return {
        model: stored.meta.name,
        version: stored.meta.version,
        metrics: result.metrics,
        history: result.history,
        stoppedBy: result.stoppedBy,
        backend: result.backend,
        samples: data.count,
        durationMs: Date.now() - started,
        stored,
      };
    } finally {
      if (this.worker === worker) this.worker = undefined;
      await worker.terminate();
    }
  }

  /** The newest saved version of the model this trainer saves, if any. */
  async saved(): Promise<StoredModel | undefined> {
    return this.config.store.get(this.config.modelName);
  }

  /**
   * Lets the saved version stand in for a training the schedule or the sample count would
   * start: the payload of a 'reused' message, or undefined when nothing is saved yet.
   */
  async reuseSaved(): Promise<
    { model: string; version: number; metrics: unknown; created: unknown; reused: true } | undefined
  > {
    const saved = await this.saved();
    if (!saved) return undefined;
    this.samplesSinceTraining = 0;
    const { name, version, metrics, created } = saved.meta;
    return { model: name, version, metrics: metrics ?? {}, created, reused: true };
  }

  /** Stops a running training after its current batch (nothing is saved). */
  cancel(): boolean {
    if (!this.worker) return false;
    this.worker.cancel();
    return true;
  }

  exportDataset(): Promise<ExportedDataset> {
    return this.dataset.export();
  }

  async clearDataset(): Promise<void> {
    await this.dataset.clear();
    this.samplesSinceTraining = 0;
  }

  /** Ends a running training at once (its worker is terminated) and closes the dataset. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.auto?.timer) clearInterval(this.auto.timer);
    this.auto = undefined;
    const worker = this.worker;
    this.worker = undefined;
    await worker?.terminate();
    await this.dataset.close();
  }
}
