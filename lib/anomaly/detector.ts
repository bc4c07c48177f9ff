/**
 * The streaming anomaly detector behind the edge-anomaly node: learning period, feature
 * extraction, model, calibration to [0, 1], decision with hysteresis and minimum duration,
 * and a JSON state that survives restarts. Calls to `process` are handled strictly one after
 * another in call order, also while a model trains asynchronously.
 */

import { InputError } from '../preprocess/numeric-input';
import type { ModelRunner } from '../models/runtime/runner';
import { Calibrator, combineSurprise, scoreOfSurprise, type CalibratorState } from './calibrate';
import { Decision, type DecisionState, type Episode } from './decision';
import { Likelihood, type LikelihoodState } from './likelihood';
import { DEFAULT_NEIGHBOUR_OPTIONS, NeighbourModel } from './neighbours';
import {
  Featurizer,
  persistentChannels,
  spreadFloors,
  type FeatureKind,
  type FeaturizerState,
} from './features';
import {
  MahalanobisModel,
  PcaModel,
  UnivariateModel,
  restoreStatModel,
  type ScoreModel,
  type ScoreModelState,
} from './stat-models';
import {
  fitSequenceModel,
  restoreSequenceModel,
  ExternalSequenceModel,
  SequenceWorker,
  type SequenceArchitecture,
  type SequenceModelOptions,
} from './sequence-models';
export type { SequenceModelOptions } from './sequence-models';
import type { TrainingProgress } from './sequence-protocol';
import { SerialQueue, type QueueEntry } from '../util/serial-queue';

export const METHODS = [
  'auto',
  'zscore',
  'ewma',
  'mad',
  'mahalanobis',
  'pca',
  'knn',
  'ae-dense',
  'ae-conv',
  'ae-lstm',
  'forecast',
  'model',
] as const;
export type Method = (typeof METHODS)[number];

export type NanPolicy = 'hold' | 'mean' | 'error';

export interface DetectorOptions {
  method: Method;
  /** Samples in the rolling window of the statistical methods (1 = each sample on its own). */
  window: number;
  /** Weight of the newest sample in the EWMA method. */
  alpha: number;
  /** Learning period in samples; used when `learningMs` is 0. */
  learningSamples: number;
  /** Learning period in milliseconds of message time; 0 to count samples instead. */
  learningMs: number;
  /** Calibrated score at or above which a sample counts as anomalous. */
  threshold: number;
  /** An episode ends only once the score falls below threshold - hysteresis. */
  hysteresis: number;
  /** Consecutive samples needed to start (and to end) an episode. */
  minDuration: number;
  nanPolicy: NanPolicy;
  /** Weight with which samples judged normal update the model after learning (0 = fixed). */
  adaptRate: number;
  /**
   * The learned spread of each z-score statistic follows samples judged normal with this share
   * of `adaptRate` (0 = the learning period's spread stays).
   */
  spreadShare: number;
  /**
   * 'auto' on several channels also judges each channel's mean over this many windows, so a
   * small lasting shift shows sooner than in one window's mean (0 = off). It needs a learning
   * period of at least LONG_LEVEL_MIN_WINDOWS such spans to be calibrated.
   */
  longLevel: number;
  /**
   * 'auto' on one channel: when the learning period repeats with at least this autocorrelation
   * (a daily or weekly cycle), each window is also compared with the windows whole periods ago,
   * so a cycle that changes its shape shows (0 = off).
   */
  season: number;
  /**
   * Samples an episode may last before its data becomes the new normal: the detector re-learns
   * from the episode's samples and the episode ends (0 = never). Used when `relearnMs` is 0.
   */
  relearnAfter: number;
  /** The same in milliseconds of message time; 0 to count samples instead. */
  relearnMs: number;
  /** Keep a lasting change in alarm: never re-learn during an episode. */
  keepAlarm: boolean;
  /**
   * Surprises averaged by the likelihood stage (0 = off: the score is the sample's own
   * calibrated surprise); their mean is judged against its long-term distribution.
   */
  likelihood: number;
  /** Samples over which the likelihood stage's long-term statistics forget. */
  horizon: number;
  /**
   * After a detection (a score at or above the threshold) the score of this many following
   * samples is halved, so one event ranks once (0 = off).
   * Episodes and isAnomaly follow the unmasked score (details.unmasked).
   */
  suppress: number;
  /** Variance fraction the PCA model keeps in its principal subspace. */
  explained: number;
  /** Options of the neural sequence models (autoencoders, forecaster). */
  sequence: SequenceModelOptions;
}

export const DEFAULT_OPTIONS: DetectorOptions = {
  method: 'auto',
  window: 10,
  alpha: 0.1,
  learningSamples: 400,
  learningMs: 0,
  threshold: 0.5,
  hysteresis: 0.125,
  minDuration: 5,
  nanPolicy: 'hold',
  adaptRate: 0.01,
  spreadShare: 0.25,
  longLevel: 2,
  season: 0.7,
  relearnAfter: 400,
  relearnMs: 0,
  keepAlarm: false,
  likelihood: 0,
  horizon: 5000,
  suppress: 200,
  explained: 0.9,
  sequence: { window: 16, epochs: 20, latent: 4, batchSize: 64, validationSplit: 0.25, seed: 1 },
};

/**
 * A channel keeping more than this share of its variance after averaging over the window
 * wanders slowly (temperatures); 'auto' watches its changes as well as its level.
 */
export const PERSISTENCE_LIMIT = 0.4;

/**
 * The long level is only used when the first learning period spans at least this many of its
 * windows: a rolling mean over few independent spans is calibrated too narrow (chance alarms).
 */
export const LONG_LEVEL_MIN_WINDOWS = 20;

/**
 * Largest magnitude accepted: far beyond any reading, small enough that sums of squares over a
 * learning period stay finite (one ±1e308 would otherwise wedge the learned statistics).
 */
export const MAX_ABS_VALUE = 1e100;

/** A learning period never ends before this many usable samples (models need data to fit). */
export const MIN_LEARNING_SAMPLES = 20;
/** A learning period counted in time stops growing here, to bound memory. */
export const MAX_LEARNING_SAMPLES = 20000;

export interface DetectorResult {
  score: number;
  isAnomaly: boolean;
  threshold: number;
  learning: boolean;
  details: DetectorDetails;
}

export interface DetectorDetails {
  method: Method;
  phase: 'learning' | 'ready';
  /** Samples processed since the last reset. */
  index: number;
  /** Learning progress 0..1 while learning. */
  progress?: number;
  /** Tail probability of the sample under the learned distribution (surprise = -log10(pValue)). */
  pValue?: number;
  /** -log10(pValue), kept where pValue underflows; score = surprise / (surprise + 3). */
  surprise?: number;
  /** Calibrated score of every statistic, e.g. per channel or T² and SPE. */
  statistics?: Record<string, number>;
  /** The statistic with the highest score: what deviates most. */
  top?: string;
  event?: 'start' | 'end';
  episode?: Episode;
  /** Channels whose value was missing and filled in by the NaN policy. */
  imputed?: string[];
  /** Set on the sample after which the detector re-learned: a lasting change is the new normal. */
  relearned?: boolean;
  /** The score before masking, on samples whose score was halved after a recent detection. */
  unmasked?: number;
}

interface PipelineSpec {
  feature: FeatureKind;
  window: number;
  model: 'univariate' | 'robust' | 'pca' | 'mahalanobis' | 'knn' | SequenceArchitecture | 'external';
  /** Prefix of the statistic names when several pipelines are combined. */
  label: string;
  /** Samples averaged into one by the shape model. */
  pool?: number;
  /** False: the learned levels stay (adaptation would chase a cycle and then flag its peaks). */
  adapt?: boolean;
  /** Seasonal shape view: the autocorrelation at which the learning period counts as periodic. */
  season?: number;
}

interface PipelineState {
  featurizer: FeaturizerState;
  model: ScoreModelState;
  calibrators: CalibratorState[];
}

export interface DetectorState {
  version: 1;
  fingerprint: string;
  channels: string[] | null;
  phase: 'learning' | 'ready';
  learningRows: number[][];
  learningStart: number | null;
  index: number;
  lastValues: number[] | null;
  channelMeans: number[] | null;
  pipelines: PipelineState[] | null;
  decision: DecisionState;
  /** Samples of the episode in progress (re-learning material). */
  episodeRows?: number[][];
  /** The latest samples judged normal, as many as the learning period had. */
  normalRows?: number[][];
  normalLimit?: number;
  likelihood?: LikelihoodState | null;
  /** Samples still masked after the last detection. */
  masked?: number;
}

interface Prepared {
  index: number;
  timestamp: number;
  /** The sample after the NaN policy; null when it could not be filled (learning only). */
  row: number[] | null;
  imputed?: string[];
  /** Per pipeline: its feature vector, or null while its window fills. */
  features: (number[] | null)[];
}

interface Sample {
  values: readonly number[];
  channels: readonly string[];
  timestamp: number;
}

const closedError = (): Error => new Error('detector closed');

/** Most samples scored in one model call. */
const MAX_BATCH = 256;

class Pipeline {
  /** Names of the statistics, prefixed by the pipeline's label (computed once: used per sample). */
  readonly statistics: string[];

  constructor(
    readonly spec: PipelineSpec,
    readonly featurizer: Featurizer,
    readonly model: ScoreModel,
    readonly calibrators: Calibrator[],
  ) {
    this.statistics = model.statistics.map((s) => (spec.label ? `${spec.label}:${s}` : s));
  }
}

/** Samples averaged into one by the long view of the shape model. */
export const SHAPE_POOL = 4;

function shapeSpecs(window: number, season = 0): PipelineSpec[] {
  return [
    { feature: 'window', window, model: 'knn', label: '' },
    { feature: 'window', window: window * SHAPE_POOL, model: 'knn', label: 'long', pool: SHAPE_POOL },
    ...(season > 0
      ? [{ feature: 'window' as const, window, model: 'knn' as const, label: 'season', season }]
      : []),
  ];
}

/** Models fitted in-process from the learning rows alone (their fit fails the same way again). */
const STATISTICAL_MODELS = new Set<PipelineSpec['model']>([
  'univariate',
  'robust',
  'pca',
  'mahalanobis',
  'knn',
]);

/**
 * Which feature and model each method runs. 'auto' watches one channel by the shape of its
 * recent history (nothing else describes its context) and several channels by the level and
 * spread of each; `channels` is unknown (undefined) until the first sample, `learned` (rows of
 * the first learning period) until it ends.
 */
function pipelineSpecs(o: DetectorOptions, channels?: number, learned = 0): PipelineSpec[] {
  const w = o.window;
  const sw = o.sequence.window;
  switch (o.method) {
    case 'zscore':
      return [{ feature: w > 1 ? 'mean' : 'identity', window: w, model: 'univariate', label: '' }];
    case 'ewma':
      return [{ feature: 'ewma', window: 1, model: 'univariate', label: '' }];
    case 'mad':
      return [{ feature: w > 1 ? 'median' : 'identity', window: w, model: 'robust', label: '' }];
    case 'mahalanobis':
      return [{ feature: w > 1 ? 'mean' : 'identity', window: w, model: 'mahalanobis', label: '' }];
    case 'pca':
      return [{ feature: w > 1 ? 'mean' : 'identity', window: w, model: 'pca', label: '' }];
    case 'ae-dense':
    case 'ae-conv':
    case 'ae-lstm':
      return [{ feature: 'window', window: sw, model: o.method, label: '' }];
    case 'forecast':
      return [{ feature: 'window', window: sw + 1, model: 'forecast', label: '' }];
    case 'model':
      return [{ feature: 'window', window: sw, model: 'external', label: '' }];
    case 'knn':
      return shapeSpecs(sw);
    case 'auto':
      // One channel: its shape at two scales (the window, and four times as long averaged by 4),
      // against the same phase of past cycles when it repeats, and its robust level (rolling
      // median against the learned median, in robust spreads).
      if (channels === 1)
        return [
          ...shapeSpecs(sw, o.season),
          {
            feature: w > 1 ? 'median' : 'identity',
            window: w,
            model: 'robust',
            label: 'level',
            adapt: false,
          },
        ];
      // Level (or change, for wandering channels) and spread of every channel: shifts and
      // drifts move the level, a stuck sensor loses its spread, spikes and vibration add to it;
      // the level over a longer span shows a small lasting shift sooner.
      return [
        { feature: 'level-change', window: w, model: 'univariate', label: '' },
        { feature: 'spread', window: Math.max(w, 3), model: 'univariate', label: 'spread' },
        ...(o.longLevel > 1 && learned >= LONG_LEVEL_MIN_WINDOWS * w * o.longLevel
          ? [
              {
                feature: 'mean' as const,
                window: w * o.longLevel,
                model: 'univariate' as const,
                label: 'long',
              },
            ]
          : []),
      ];
  }
}

function fingerprintOf(o: DetectorOptions): string {
  const { method, window, alpha, learningSamples, learningMs, explained, sequence, likelihood, horizon } = o;
  const base = {
    method,
    window,
    alpha,
    learningSamples,
    learningMs,
    explained,
    sequence,
    ...(o.longLevel > 1 ? { longLevel: o.longLevel } : {}),
    ...(o.season > 0 ? { season: o.season } : {}),
  };
  return JSON.stringify(likelihood > 0 ? { ...base, likelihood, horizon } : base);
}

/**
 * Fits a statistical model on half of the features and scores the other half, both ways, so
 * the calibration sees out-of-sample scores: a channel that drifts during the learning period
 * then gets a wide calibration instead of false alarms later.
 */
async function crossFitted(
  features: number[][],
  fit: (f: number[][]) => ScoreModel,
): Promise<{ model: ScoreModel; calibration: number[][] }> {
  const half = Math.floor(features.length / 2);
  const a = features.slice(0, half);
  const b = features.slice(half);
  const calibration: number[][] = [];
  for (const [train, held] of [
    [a, b],
    [b, a],
  ]) {
    const m = fit(train);
    calibration.push(...(await m.evaluate(held)));
    await m.dispose();
  }
  return { model: fit(features), calibration };
}

/**
 * Combined surprise of each learning sample, from the held-out surprises of every statistic
 * of every pipeline (aligned at their ends: pipelines with longer windows start later).
 */
function combined(learned: number[][][]): number[] {
  const n = Math.min(...learned.map((l) => l.length));
  const out: number[] = [];
  for (let t = 0; t < n; t++) out.push(combineSurprise(learned.flatMap((l) => l[l.length - n + t])));
  return out;
}

export interface DetectorHooks {
  /** A model the user supplies (method 'model'): reconstructs or forecasts windows. */
  externalModel?: ModelRunner;
  /** Called after each training epoch of a neural method. */
  onTrainingProgress?: (progress: TrainingProgress) => void;
}

export class AnomalyDetector {
  readonly options: DetectorOptions;
  private readonly decision: Decision;
  private specs: PipelineSpec[];
  private channels: string[] | null = null;
  private phase: 'learning' | 'ready' = 'learning';
  private learningRows: number[][] = [];
  private learningStart: number | null = null;
  private index = 0;
  private lastValues: number[] | null = null;
  private channelMeans: number[] | null = null;
  private pipelines: Pipeline[] | null = null;
  private episodeRows: number[][] = [];
  /** Ring buffer of the latest normal samples; `normalNext` is where the next one goes. */
  private normalRows: number[][] = [];
  private normalNext = 0;
  private normalLimit = 0;
  private likelihood: Likelihood | null = null;
  private masked = 0;
  private relearnDue = false;
  private trainingWorker: SequenceWorker | null = null;
  /** Samples and tasks in call order; consecutive samples for a batching model go together. */
  private readonly queue = new SerialQueue<Sample, DetectorResult>({
    one: (s) => this.processNow(s.values, s.channels, s.timestamp),
    batch: (entries) => this.processBatch(entries),
    canBatch: () => this.phase === 'ready' && this.batching,
    maxBatch: MAX_BATCH,
  });

  constructor(
    options: Partial<DetectorOptions> = {},
    private readonly hooks: DetectorHooks = {},
  ) {
    this.options = {
      ...DEFAULT_OPTIONS,
      ...options,
      sequence: { ...DEFAULT_OPTIONS.sequence, ...(options.sequence ?? {}) },
    };
    const o = this.options;
    if (!METHODS.includes(o.method)) throw new Error(`unknown method "${String(o.method)}"`);
    if (!(o.window >= 1) || !Number.isInteger(o.window)) throw new Error('window must be an integer >= 1');
    if (!(o.learningSamples >= 1) && !(o.learningMs > 0)) throw new Error('learning period must be positive');
    if (!['hold', 'mean', 'error'].includes(o.nanPolicy))
      throw new Error(`unknown NaN policy "${o.nanPolicy}"`);
    if (!(o.adaptRate >= 0 && o.adaptRate < 1)) throw new Error('adapt rate must be in [0, 1)');
    if (!(o.spreadShare >= 0 && o.spreadShare <= 1)) throw new Error('spread share must be in [0, 1]');
    if (!(o.longLevel >= 0) || !Number.isInteger(o.longLevel))
      throw new Error('long level must be an integer >= 0 (windows; 0 = off)');
    if (!(o.season >= 0 && o.season < 1))
      throw new Error('season must be an autocorrelation in [0, 1) (0 = off)');
    if (!(o.relearnAfter >= 0 && o.relearnMs >= 0)) throw new Error('re-learning time must be >= 0');
    if (o.method === 'model' && !hooks.externalModel)
      throw new Error('method "model" needs a model (edge-model) to be supplied');
    this.decision = new Decision(o);
    this.specs = pipelineSpecs(o);
  }

  /** Fewest learning samples the configured method can be fitted on. */
  get minLearningSamples(): number {
    const warmup = Math.max(...this.specs.map((s) => new Featurizer(s.feature, s.window).warmup));
    return Math.max(MIN_LEARNING_SAMPLES, 2 * warmup + 10);
  }

  get learning(): boolean {
    return this.phase === 'learning';
  }

  get channelNames(): string[] | null {
    return this.channels ? this.channels.slice() : null;
  }

  /** Processes one sample (values in `channels` order); resolves in call order. */
  process(
    values: readonly number[],
    channels: readonly string[],
    timestamp = Date.now(),
  ): Promise<DetectorResult> {
    return this.queue.push({ values, channels, timestamp });
  }

  /** Processes consecutive samples (a window) and summarises them in one result. */
  processRows(
    rows: readonly (readonly number[])[],
    channels: readonly string[],
    timestamp = Date.now(),
  ): Promise<DetectorResult & { rows: { score: number; isAnomaly: boolean }[] }> {
    return this.enqueue(async () => {
      if (rows.length === 0) throw new InputError('no samples');
      for (const row of rows) this.validate(row, channels);
      const results: DetectorResult[] = [];
      for (const row of rows) results.push(await this.processNow(row, channels, timestamp));
      const last = results[results.length - 1];
      const worst = results.reduce((a, b) => (b.score > a.score ? b : a));
      return {
        ...last,
        score: worst.score,
        isAnomaly: results.some((r) => r.isAnomaly),
        details: { ...last.details, top: worst.details.top },
        rows: results.map((r) => ({ score: r.score, isAnomaly: r.isAnomaly })),
      };
    });
  }

  /** Forgets everything learned (also the channels); the next sample starts a new learning period. */
  reset(): Promise<void> {
    return this.enqueue(async () => {
      await this.disposePipelines();
      this.channels = null;
      this.phase = 'learning';
      this.learningRows = [];
      this.learningStart = null;
      this.index = 0;
      this.lastValues = null;
      this.channelMeans = null;
      this.episodeRows = [];
      this.normalRows = [];
      this.normalNext = 0;
      this.normalLimit = 0;
      this.relearnDue = false;
      this.likelihood = null;
      this.masked = 0;
      this.decision.restore(new Decision(this.options).state());
    });
  }

  /** Waits for everything queued so far. */
  idle(): Promise<void> {
    return this.queue.idle();
  }

  /** Samples waiting to be processed (e.g. while a model trains). */
  get queued(): number {
    return this.queue.length;
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    return this.queue.run(task);
  }

  /** Whether queued samples may be scored together: the networks do not change while scoring. */
  private get batching(): boolean {
    return this.specs.every((s) => s.feature === 'window' && s.model !== 'knn');
  }

  private validate(values: readonly number[], channels: readonly string[]): void {
    if (this.channels && values.length !== this.channels.length) {
      throw new InputError(
        `expected ${this.channels.length} channels (${this.channels.join(', ')}), got ${values.length}`,
      );
    }
    if (values.length !== channels.length) throw new InputError('channel names do not match the values');
    for (let j = 0; j < values.length; j++) {
      const v = values[j];
      if (typeof v !== 'number' || v === Infinity || v === -Infinity)
        throw new InputError(`channel ${channels[j]}: ${String(v)} is not a finite number`);
      if (Math.abs(v) > MAX_ABS_VALUE)
        throw new InputError(
          `channel ${channels[j]}: ${v} is beyond ±${MAX_ABS_VALUE} (its statistics would overflow); the sample was not used`,
        );
    }
    if (this.options.nanPolicy === 'error') {
      const missing = channels.filter((_, j) => Number.isNaN(values[j]));
      if (missing.length) throw new InputError(`missing value for ${missing.join(', ')}`);
    }
    if (values.every(Number.isNaN)) throw new InputError('every channel is missing');
  }

  /** Fills missing values by the NaN policy; null when nothing can fill them yet. */
  private impute(values: readonly number[]): { row: number[]; imputed: number[] } | null {
    const imputed: number[] = [];
    const row = values.slice();
    for (let j = 0; j < row.length; j++) {
      if (!Number.isNaN(row[j])) continue;
      const fill =
        this.options.nanPolicy === 'mean' && this.channelMeans
          ? this.channelMeans[j]
          : this.lastValues
            ? this.lastValues[j]
            : NaN;
      if (Number.isNaN(fill)) return null;
      row[j] = fill;
      imputed.push(j);
    }
    return { row, imputed };
  }

  /** Validates, imputes and extracts features of a sample; the only step that changes stream state. */
  private prepare(values: readonly number[], channels: readonly string[], timestamp: number): Prepared {
    this.validate(values, channels);
    if (!this.channels) {
      this.channels = channels.slice();
      this.specs = pipelineSpecs(this.options, channels.length);
    }
    const filled = this.impute(values);
    const index = this.index++;
    const imputed = filled?.imputed.map((j) => (this.channels as string[])[j]);
    if (filled) this.lastValues = filled.row;
    const features =
      this.phase === 'ready' && filled
        ? (this.pipelines as Pipeline[]).map((p) => p.featurizer.push(filled.row))
        : [];
    return { index, timestamp, row: filled?.row ?? null, imputed, features };
  }

  private async learn(p: Prepared): Promise<DetectorResult> {
    const o = this.options;
    if (this.learningStart === null) this.learningStart = p.timestamp;
    if (p.row) this.learningRows.push(p.row);
    const n = this.learningRows.length;
    const elapsed = p.timestamp - this.learningStart;
    const enoughTime = o.learningMs > 0 && elapsed >= o.learningMs;
    const enoughSamples = o.learningMs > 0 ? n >= MAX_LEARNING_SAMPLES : n >= o.learningSamples;
    const progress =
      o.learningMs > 0 ? Math.min(1, elapsed / o.learningMs) : Math.min(1, n / o.learningSamples);
    if ((enoughTime || enoughSamples) && n >= this.minLearningSamples) {
      try {
        await this.fit();
      } catch (err) {
        // Learning data no model can be fitted on would fail every later sample the same way:
        // start a new learning period instead (a network's training is retried as it was).
        if (this.specs.every((s) => STATISTICAL_MODELS.has(s.model)) && !this.queue.closed) {
          this.learningRows = [];
          this.learningStart = null;
          throw new InputError(
            `learning failed (${err instanceof Error ? err.message : String(err)}); a new learning period starts with the next sample`,
          );
        }
        throw err;
      }
    }
    return {
      score: 0,
      isAnomaly: false,
      threshold: o.threshold,
      learning: true,
      details: {
        method: o.method,
        phase: 'learning',
        index: p.index,
        progress,
        ...(p.imputed?.length ? { imputed: p.imputed } : {}),
      },
    };
  }

  /** Calibrates the raw statistics of a prepared sample and runs the decision. */
  private finish(p: Prepared, raws: (number[] | null)[]): DetectorResult {
    const o = this.options;
    const pipelines = this.pipelines as Pipeline[];
    const surprises: number[] = [];
    const statistics: Record<string, number> = {};
    pipelines.forEach((pipeline, i) => {
      const raw = raws[i];
      if (!raw) return;
      const names = pipeline.statistics;
      raw.forEach((r, k) => {
        const s = pipeline.calibrators[k].surprise(r);
        surprises.push(s);
        statistics[names[k]] = scoreOfSurprise(s);
      });
    });
    const own = combineSurprise(surprises);
    const surprise = this.likelihood ? this.likelihood.step(own) : own;
    const unmasked = scoreOfSurprise(surprise);
    const step = this.decision.step(unmasked, p.timestamp, p.index);
    this.trackEpisode(p, step.event);
    let score = unmasked;
    // One event ranks once: the first score at or above the threshold shows, the following
    // ones are halved; the episode follows the unmasked score.
    if (this.masked > 0) {
      this.masked--;
      score = unmasked / 2;
    } else if (unmasked >= o.threshold) this.masked = o.suppress;
    if (
      o.adaptRate > 0 &&
      !step.isAnomaly &&
      !this.decision.active &&
      unmasked < this.decision.releaseLevel
    ) {
      pipelines.forEach((pipeline, i) => {
        const f = p.features[i];
        if (f && pipeline.spec.adapt !== false)
          pipeline.model.update(f, o.adaptRate, o.adaptRate * o.spreadShare);
      });
    }
    let top: string | undefined;
    for (const [name, v] of Object.entries(statistics))
      if (top === undefined || v > statistics[top]) top = name;
    return {
      score,
      isAnomaly: step.isAnomaly,
      threshold: o.threshold,
      learning: false,
      details: {
        method: o.method,
        phase: 'ready',
        index: p.index,
        pValue: Math.pow(10, -surprise),
        surprise,
        statistics,
        top,
        ...(step.event ? { event: step.event } : {}),
        ...(step.episode ? { episode: step.episode } : {}),
        ...(p.imputed?.length ? { imputed: p.imputed } : {}),
        ...(score !== unmasked ? { unmasked } : {}),
      },
    };
  }

  private async processNow(
    values: readonly number[],
    channels: readonly string[],
    timestamp: number,
  ): Promise<DetectorResult> {
    const p = this.prepare(values, channels, timestamp);
    if (this.phase === 'learning') return this.learn(p);
    const frozen = this.options.keepAlarm && this.decision.active;
    const raws: (number[] | null)[] = [];
    for (let i = 0; i < p.features.length; i++) {
      const f = p.features[i];
      const model = (this.pipelines as Pipeline[])[i].model;
      // A broken machine kept in alarm must not become the new normal of an online model.
      if (model instanceof NeighbourModel) model.learning = !frozen;
      raws.push(f ? (await model.evaluate([f]))[0] : null);
    }
    const result = this.finish(p, raws);
    if (this.relearnDue) await this.relearn(result, timestamp);
    return result;
  }

  /** The normal samples kept for re-learning, oldest first. */
  private orderedNormalRows(): number[][] {
    const r = this.normalRows;
    return r.length < this.normalLimit
      ? r.slice()
      : r.slice(this.normalNext).concat(r.slice(0, this.normalNext));
  }

  /** Collects the samples of the episode in progress and notes when it has lasted long enough. */
  private trackEpisode(p: Prepared, event: 'start' | 'end' | undefined): void {
    const o = this.options;
    if (!this.decision.active) {
      this.episodeRows = [];
      if (p.row && this.normalLimit > 0) {
        if (this.normalRows.length < this.normalLimit) this.normalRows.push(p.row);
        else this.normalRows[this.normalNext] = p.row;
        this.normalNext = (this.normalNext + 1) % this.normalLimit;
      }
      return;
    }
    if (event === 'start') this.episodeRows = [];
    if (p.row && this.episodeRows.length < MAX_LEARNING_SAMPLES) this.episodeRows.push(p.row);
    if (o.keepAlarm || (o.relearnAfter <= 0 && o.relearnMs <= 0)) return;
    const start = this.decision.state().episode?.start ?? p.timestamp;
    const long =
      o.relearnMs > 0 ? p.timestamp - start >= o.relearnMs : this.episodeRows.length >= o.relearnAfter;
    if (long && this.episodeRows.length >= this.minLearningSamples) this.relearnDue = true;
  }

  /**
   * Makes a lasting change the new normal: re-fits the models on the latest normal samples and
   * the episode's samples (so a return to the old regime is normal too) and ends the episode
   * on this sample's result.
   */
  private async relearn(result: DetectorResult, timestamp: number): Promise<void> {
    this.relearnDue = false;
    const rows = this.orderedNormalRows().concat(this.episodeRows);
    this.episodeRows = [];
    const old = this.pipelines ?? [];
    this.learningRows = rows;
    await this.fit();
    for (const p of old) await p.model.dispose();
    const episode = this.decision.state().episode;
    this.decision.restore(new Decision(this.options).state());
    result.isAnomaly = false;
    result.details.relearned = true;
    if (episode) {
      result.details.event = 'end';
      result.details.episode = { ...episode, end: timestamp, endIndex: result.details.index };
    }
  }

  /**
   * Scores queued samples together: one model call per pipeline for the whole batch (a
   * worker round trip and a batched forward pass instead of one per sample), results in order.
   */
  private async processBatch(jobs: QueueEntry<Sample, DetectorResult>[]): Promise<void> {
    const prepared: { job: QueueEntry<Sample, DetectorResult>; p: Prepared }[] = [];
    for (const job of jobs) {
      try {
        const { values, channels, timestamp } = job.item;
        prepared.push({ job, p: this.prepare(values, channels, timestamp) });
      } catch (err) {
        job.reject(err);
      }
    }
    const pipelines = this.pipelines as Pipeline[];
    let raws: (number[] | null)[][];
    try {
      raws = prepared.map(() => []);
      for (let i = 0; i < pipelines.length; i++) {
        const rows = prepared.map(({ p }, k) => ({ f: p.features[i], k })).filter((r) => r.f);
        const out = rows.length ? await pipelines[i].model.evaluate(rows.map((r) => r.f as number[])) : [];
        prepared.forEach((_, k) => raws[k].push(null));
        rows.forEach((r, n) => (raws[r.k][i] = out[n]));
      }
    } catch (err) {
      for (const { job } of prepared) job.reject(err);
      return;
    }
    for (let k = 0; k < prepared.length; k++) {
      const { job, p } = prepared[k];
      try {
        const result = this.finish(p, raws[k]);
        // The rest of the batch was scored by the old models; later samples see the new ones.
        if (this.relearnDue) await this.relearn(result, p.timestamp);
        job.resolve(result);
      } catch (err) {
        job.reject(err);
      }
    }
  }

  private async fit(): Promise<void> {
    const rows = this.learningRows;
    const channels = this.channels as string[];
    const d = channels.length;
    this.channelMeans = Array.from({ length: d }, (_, j) => rows.reduce((a, r) => a + r[j], 0) / rows.length);
    // Re-learning keeps the views the first learning period allowed.
    this.specs = pipelineSpecs(this.options, d, this.normalLimit || rows.length);
    const pipelines: Pipeline[] = [];
    const learned: number[][][] = [];
    try {
      for (const spec of this.specs) {
        // Slowly wandering channels are judged by their changes ('auto') or their shape (networks).
        const persistent =
          spec.feature === 'level-change' || spec.feature === 'window'
            ? persistentChannels(rows, this.options.window, PERSISTENCE_LIMIT)
            : [];
        const featureMask = spec.feature === 'level-change' ? persistent : [];
        const floors = spec.feature === 'spread' ? spreadFloors(rows) : [];
        const run = Featurizer.run(spec.feature, spec.window, this.options.alpha, rows, featureMask, floors);
        // An EWMA starts at the first raw sample: its start-up transient is no normal behaviour.
        const settle =
          spec.feature === 'ewma' ? Math.min(Math.ceil(3 / this.options.alpha), run.length >> 1) : 0;
        const features = run.slice(settle);
        // The change of a wandering channel is watched as a statistic of its own.
        const names = channels.concat(channels.filter((_, j) => featureMask[j]).map((c) => `${c}:change`));
        const { model, calibration } = await this.fitModel(spec, features, names, persistent, rows);
        // An online model's statistics are surprises already.
        const calibrators = model.statistics.map((_, k) =>
          model instanceof NeighbourModel
            ? Calibrator.passthrough()
            : Calibrator.fit(calibration.map((c) => c[k])),
        );
        learned.push(calibration.map((c) => c.map((v, k) => calibrators[k].surprise(v))));
        const featurizer = new Featurizer(spec.feature, spec.window, this.options.alpha, featureMask, floors);
        // Prime the window with the end of the learning period so scoring starts at once; an
        // EWMA needs the whole period, else it restarts from one raw sample (a false alarm).
        const primer = spec.feature === 'ewma' ? rows : rows.slice(-featurizer.warmup);
        for (const row of primer) featurizer.push(row);
        pipelines.push(new Pipeline(spec, featurizer, model, calibrators));
      }
    } catch (err) {
      for (const p of pipelines) await p.model.dispose();
      throw err;
    }
    if (this.queue.closed) {
      for (const p of pipelines) await p.model.dispose();
      throw closedError();
    }
    this.pipelines = pipelines;
    this.phase = 'ready';
    // As many normal samples are kept for re-learning as the first learning period had.
    if (this.normalLimit === 0) this.normalLimit = rows.length;
    this.normalRows = rows.slice(-this.normalLimit);
    this.normalNext = this.normalRows.length % this.normalLimit;
    this.learningRows = [];
    this.likelihood =
      this.options.likelihood > 0 ? Likelihood.fit(this.likelihoodOptions, combined(learned)) : null;
  }

  private get likelihoodOptions(): { short: number; horizon: number } {
    return { short: this.options.likelihood, horizon: this.options.horizon };
  }

  private async fitModel(
    spec: PipelineSpec,
    features: number[][],
    channels: string[],
    persistent: boolean[],
    rows: number[][],
  ): Promise<{ model: ScoreModel; calibration: number[][] }> {
    switch (spec.model) {
      case 'knn':
        return NeighbourModel.fit(
          rows,
          {
            ...DEFAULT_NEIGHBOUR_OPTIONS,
            window: spec.window,
            ...(spec.pool ? { pool: spec.pool } : {}),
            ...(spec.season ? { season: spec.season } : {}),
          },
          channels,
        );
      case 'univariate':
      case 'robust': {
        const robust = spec.model === 'robust';
        return crossFitted(features, (f) => UnivariateModel.fit(f, robust, channels));
      }
      case 'pca':
        return crossFitted(features, (f) => PcaModel.fit(f, this.options.explained));
      case 'mahalanobis':
        return crossFitted(features, (f) => MahalanobisModel.fit(f));
      case 'external': {
        const model = new ExternalSequenceModel(
          this.hooks.externalModel as ModelRunner,
          spec.window,
          channels,
        );
        return { model, calibration: await model.evaluate(features) };
      }
      default:
        return fitSequenceModel(
          spec.model,
          features,
          spec.window,
          channels,
          {
            ...this.options.sequence,
            onProgress: this.hooks.onTrainingProgress,
            onWorker: (w) => (this.trainingWorker = w),
          },
          persistent,
        );
    }
  }

  state(): DetectorState {
    return {
      version: 1,
      fingerprint: fingerprintOf(this.options),
      channels: this.channels ? this.channels.slice() : null,
      phase: this.phase,
      learningRows: this.learningRows.map((r) => r.slice()),
      learningStart: this.learningStart,
      index: this.index,
      lastValues: this.lastValues ? this.lastValues.slice() : null,
      channelMeans: this.channelMeans ? this.channelMeans.slice() : null,
      pipelines: this.pipelines
        ? this.pipelines.map((p) => ({
            featurizer: p.featurizer.state(),
            model: p.model.state(),
            calibrators: p.calibrators.map((c) => c.state()),
          }))
        : null,
      decision: this.decision.state(),
      ...(this.episodeRows.length ? { episodeRows: this.episodeRows.map((r) => r.slice()) } : {}),
      ...(this.normalRows.length
        ? { normalRows: this.orderedNormalRows().map((r) => r.slice()), normalLimit: this.normalLimit }
        : {}),
      ...(this.likelihood ? { likelihood: this.likelihood.state() } : {}),
      ...(this.masked ? { masked: this.masked } : {}),
    };
  }

  /** Whether a saved state was made with options that produce the same model. */
  compatible(state: DetectorState): boolean {
    if (state.version !== 1 || state.fingerprint !== fingerprintOf(this.options)) return false;
    if (!state.pipelines) return true;
    // The same settings may run other models in another release (e.g. 'auto' on one channel).
    const specs = pipelineSpecs(this.options, state.channels?.length, state.normalLimit);
    return (
      state.pipelines.length === specs.length &&
      state.pipelines.every((p, i) => (p.model.type === 'neighbours') === (specs[i].model === 'knn'))
    );
  }

  /** Resumes from a saved state (same options); runs in order with queued samples. */
  restore(state: DetectorState): Promise<void> {
    return this.enqueue(() => this.restoreNow(state));
  }

  /**
   * Queues a restore whose state is loaded when its turn comes (e.g. read from disk); a null
   * state leaves the detector as it is. Resolves whether a state was restored.
   */
  restoreWith(load: () => Promise<DetectorState | null>): Promise<boolean> {
    return this.enqueue(async () => {
      const state = await load();
      if (!state) return false;
      await this.restoreNow(state);
      return true;
    });
  }

  /** The state between two queued samples, for saving. */
  snapshot(): Promise<DetectorState> {
    return this.enqueue(async () => this.state());
  }

  private async restoreNow(state: DetectorState): Promise<void> {
    if (!this.compatible(state)) throw new Error('saved state belongs to other detector settings');
    const pipelines: Pipeline[] = [];
    this.specs = pipelineSpecs(this.options, state.channels?.length, state.normalLimit);
    try {
      await this.restorePipelines(state, pipelines);
    } catch (err) {
      // A state that fails half-way must not leave the models restored so far running.
      for (const p of pipelines) await p.model.dispose();
      throw err;
    }
    await this.disposePipelines();
    this.channels = state.channels ? state.channels.slice() : null;
    this.phase = state.phase;
    this.learningRows = state.learningRows.map((r) => r.slice());
    this.learningStart = state.learningStart;
    this.index = state.index;
    this.lastValues = state.lastValues ? state.lastValues.slice() : null;
    this.channelMeans = state.channelMeans ? state.channelMeans.slice() : null;
    this.pipelines = state.pipelines ? pipelines : null;
    this.decision.restore(state.decision);
    this.episodeRows = (state.episodeRows ?? []).map((r) => r.slice());
    this.normalRows = (state.normalRows ?? []).map((r) => r.slice());
    this.normalLimit = state.normalLimit ?? this.normalRows.length;
    this.normalNext = this.normalLimit ? this.normalRows.length % this.normalLimit : 0;
    this.likelihood = state.likelihood
      ? Likelihood.fromState(this.likelihoodOptions, state.likelihood)
      : null;
    this.relearnDue = false;
    this.masked = state.masked ?? 0;
  }

  private async restorePipelines(state: DetectorState, pipelines: Pipeline[]): Promise<void> {
    const saved = state.pipelines ?? [];
    for (let i = 0; i < saved.length; i++) {
      const ps = saved[i];
      const model =
        ps.model.type === 'external'
          ? new ExternalSequenceModel(
              this.hooks.externalModel as ModelRunner,
              this.specs[i].window,
              state.channels ?? [],
            )
          : ps.model.type === 'sequence'
            ? await restoreSequenceModel(ps.model)
            : restoreStatModel(ps.model);
      pipelines.push(
        new Pipeline(
          this.specs[i],
          Featurizer.fromState(ps.featurizer),
          model,
          ps.calibrators.map((c) => Calibrator.fromState(c)),
        ),
      );
    }
  }

  private async disposePipelines(): Promise<void> {
    const pipelines = this.pipelines ?? [];
    this.pipelines = null;
    for (const p of pipelines) await p.model.dispose();
  }

  /** Releases models and workers; later calls fail. */
  async dispose(): Promise<void> {
    await this.idle().catch(() => undefined);
    this.queue.close(closedError);
    await this.disposePipelines();
  }

  /** Releases at once: queued samples are rejected, a training in progress is abandoned. */
  async close(): Promise<void> {
    this.queue.close(closedError);
    await this.trainingWorker?.terminate();
    await this.disposePipelines();
  }
}
