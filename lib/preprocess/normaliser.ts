/**
 * Streaming normaliser: reads any numeric input shape, applies a bad-value policy, learns or
 * uses per-channel statistics, scales (min-max or z-score, optional clip) and optionally cuts the
 * scaled samples into sliding windows. Its learned state is plain JSON, so a caller can persist
 * it and restore it after a restart.
 */
import { LIST_TEXT_ITEMS, MAX_CHANNELS, itemText, listText } from '../util/text';
import { InputError, toMatrix } from './numeric-input';
import { EwmaStats, WelfordStats, type ChannelStatistics, type RunningStatsState } from './running-stats';
import {
  SCALING_METHODS,
  Scaler,
  checkNormalisation,
  type NormalisationStats,
  type ScalingMethod,
} from './scaling';
import { SlidingWindow } from './window';

/**
 * Where the statistics come from: given in the configuration ("fixed"), learned from the first
 * N samples then frozen ("first-n"), or learned continuously over all samples ("welford") or
 * with exponential forgetting ("ewma").
 */
export type StatsSource = 'fixed' | 'first-n' | 'welford' | 'ewma';
export const STATS_SOURCES: readonly StatsSource[] = ['fixed', 'first-n', 'welford', 'ewma'];

/**
 * What to do with a NaN, Infinity or non-numeric channel: "reject" the message with an error,
 * "skip" the sample (no output, nothing learned), or "hold" the channel's last good value (the
 * sample is scaled but not learned from; skipped while a channel has no good value yet).
 */
export type BadValuePolicy = 'reject' | 'skip' | 'hold';
export const BAD_VALUE_POLICIES: readonly BadValuePolicy[] = ['reject', 'skip', 'hold'];

/** Statistics given in the configuration; one value per channel, or a single value for all. */
export interface GivenStats {
  mean?: number[];
  std?: number[];
  min?: number[];
  max?: number[];
}

export interface NormaliserOptions {
  method: ScalingMethod;
  /** Target range of min-max scaling; default [0, 1]. */
  range?: [number, number];
  source: StatsSource;
  /** "first-n": samples to learn before freezing. Continuous sources: warm-up samples. Default 100. */
  learnCount?: number;
  /** EWMA weight of the newest sample, in (0, 1]. Default 0.05. */
  alpha?: number;
  given?: GivenStats;
  /** Clamp scaled values: min-max to its range, z-score to [-zLimit, zLimit]. */
  clip?: boolean;
  /** Default 3. */
  zLimit?: number;
  /** Default "reject". */
  badValues?: BadValuePolicy;
  /** Channel order; objects are read by these names. Empty: first-seen order. */
  channels?: string[];
  /** Samples per window; 0 (default) emits every scaled sample instead. */
  windowSize?: number;
  /** Samples between window starts; default 1. */
  windowStride?: number;
  /** Emit output while still learning (statistics not yet settled). Default true. */
  emitWhileLearning?: boolean;
}

type Resolved = Required<Omit<NormaliserOptions, 'given' | 'channels'>> & {
  given: GivenStats;
  channels: string[];
};

export type ScaledPayload = number | number[] | number[][] | Record<string, number>;

export interface NormaliseOutput {
  /** Shaped like the input (number, array, object, rows), or a window (timesteps x features). */
  payload: ScaledPayload;
  features: string[];
  learning: boolean;
}

export interface NormaliseResult {
  outputs: NormaliseOutput[];
  /** Samples (rows) read from the input. */
  samples: number;
  skipped: number;
  held: number;
  /** Samples added to the learned statistics. */
  learned: number;
}

export type NormaliserPhase = 'fixed' | 'learning' | 'frozen' | 'continuous' | 'loaded';

export interface NormaliserStatus {
  phase: NormaliserPhase;
  source: StatsSource;
  count: number;
  learnCount: number;
  windowFilled: number;
  windowSize: number;
}

/** The persistable state (no window contents: a window refills within seconds). */
export interface NormaliserState {
  format: 'edge-normalise';
  version: 1;
  source: StatsSource;
  channels: string[] | null;
  stats: RunningStatsState | null;
  /** Statistics set with useStats(); they replace the configured source until reset. */
  loaded: NormalisationStats | null;
  /** Last finite raw value per channel (null where none yet), for the "hold" policy. */
  lastGood: (number | null)[] | null;
}

export interface RestoreResult {
  restored: boolean;
  /** Why a saved state was not used, when that is worth telling the user. */
  reason?: string;
}

type InputKind = 'number' | 'array' | 'object' | 'matrix';

function inputKind(payload: unknown): InputKind {
  if (typeof payload === 'number' || typeof payload === 'boolean') return 'number';
  if (
    Array.isArray(payload) &&
    payload.length > 0 &&
    payload.every((row) => Array.isArray(row) || ArrayBuffer.isView(row))
  ) {
    return 'matrix';
  }
  if (Array.isArray(payload) || ArrayBuffer.isView(payload)) return 'array';
  return 'object';
}

function isWholeNumber(value: unknown, min: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function resolveOptions(options: NormaliserOptions): Resolved {
  const o: Resolved = {
    method: options.method,
    range: options.range ?? [0, 1],
    source: options.source,
    learnCount: options.learnCount ?? 100,
    alpha: options.alpha ?? 0.05,
    given: options.given ?? {},
    clip: options.clip ?? false,
    zLimit: options.zLimit ?? 3,
    badValues: options.badValues ?? 'reject',
    channels: options.channels ?? [],
    windowSize: options.windowSize ?? 0,
    windowStride: options.windowStride ?? 1,
    emitWhileLearning: options.emitWhileLearning ?? true,
  };
  if (!SCALING_METHODS.includes(o.method)) throw new RangeError(`unknown scaling method "${o.method}"`);
  if (!STATS_SOURCES.includes(o.source)) throw new RangeError(`unknown statistics source "${o.source}"`);
  if (!BAD_VALUE_POLICIES.includes(o.badValues))
    throw new RangeError(`unknown bad-value policy "${o.badValues}"`);
  if (!(o.range.length === 2 && o.range.every(Number.isFinite) && o.range[0] < o.range[1])) {
    throw new RangeError(`min-max range must be [low, high] with low < high, got [${o.range.join(', ')}]`);
  }
  if (!isWholeNumber(o.learnCount, 1))
    throw new RangeError(`learning sample count must be >= 1, got ${o.learnCount}`);
  if (!(o.alpha > 0 && o.alpha <= 1)) throw new RangeError(`EWMA alpha must be in (0, 1], got ${o.alpha}`);
  if (!(o.zLimit > 0)) throw new RangeError(`z-score clip limit must be > 0, got ${o.zLimit}`);
  if (!isWholeNumber(o.windowSize, 0)) throw new RangeError(`window size must be >= 0, got ${o.windowSize}`);
  if (!isWholeNumber(o.windowStride, 1))
    throw new RangeError(`window stride must be >= 1, got ${o.windowStride}`);
  if (new Set(o.channels).size !== o.channels.length || o.channels.some((c) => !c)) {
    throw new RangeError('channel names must be unique and non-empty');
  }
  if (o.source === 'fixed') {
    const needed = o.method === 'minmax' ? ['min', 'max'] : ['mean', 'std'];
    let width = 1;
    for (const key of ['mean', 'std', 'min', 'max'] as const) {
      const list = o.given[key] ?? [];
      if (!list.every(Number.isFinite) || (list.length === 0 && needed.includes(key))) {
        throw new RangeError(`fixed ${o.method} scaling needs finite ${needed.join(' and ')} values`);
      }
      if (list.length > 1) {
        if (width > 1 && list.length !== width) {
          throw new RangeError(`fixed statistics disagree on the channel count (${width} vs ${list.length})`);
        }
        width = list.length;
      }
    }
    if (width > 1 && o.channels.length > 0 && width !== o.channels.length) {
      throw new RangeError(
        `fixed statistics have ${width} values but ${o.channels.length} channels are configured`,
      );
    }
  }
  return o;
}

export class Normaliser {
  private readonly opts: Resolved;
  private channels: string[] | null;
  private stats: ChannelStatistics | null = null;
  private loaded: Scaler | null = null;
  private scaler: Scaler | null = null;
  private lastGood: number[] | null = null;
  private readonly window: SlidingWindow | null;

  constructor(options: NormaliserOptions) {
    this.opts = resolveOptions(options);
    this.channels = this.opts.channels.length > 0 ? [...this.opts.channels] : null;
    this.window =
      this.opts.windowSize > 0 ? new SlidingWindow(this.opts.windowSize, this.opts.windowStride) : null;
  }

  get options(): Readonly<Resolved> {
    return this.opts;
  }

  /** Channel names in order, once configured or seen. */
  get features(): string[] | null {
    return this.channels ? [...this.channels] : null;
  }

  get count(): number {
    return this.stats?.count ?? 0;
  }

  status(): NormaliserStatus {
    let phase: NormaliserPhase;
    if (this.loaded) phase = 'loaded';
    else if (this.opts.source === 'fixed') phase = 'fixed';
    else if (this.count < this.opts.learnCount) phase = 'learning';
    else phase = this.opts.source === 'first-n' ? 'frozen' : 'continuous';
    return {
      phase,
      source: this.opts.source,
      count: this.count,
      learnCount: this.opts.learnCount,
      windowFilled: this.window?.filled ?? 0,
      windowSize: this.opts.windowSize,
    };
  }

  get learning(): boolean {
    return this.status().phase === 'learning';
  }

  /**
   * Processes one message payload (any numeric input shape; a 2-D array is a run of samples in
   * order). Throws InputError, before changing any state, when the input cannot be read or a
   * bad value meets the "reject" policy.
   */
  process(payload: unknown): NormaliseResult {
    const kind = inputKind(payload);
    const { rows, channels } = this.read(payload, kind);
    const bad = rows.map((row) => row.map((v, i) => (Number.isFinite(v) ? -1 : i)).filter((i) => i >= 0));
    if (this.opts.badValues === 'reject') {
      const r = bad.findIndex((list) => list.length > 0);
      if (r >= 0) {
        const where = rows.length > 1 ? ` in row ${r}` : '';
        throw new InputError(`channel "${itemText(channels[bad[r][0]])}" is not a finite number${where}`);
      }
    }
    this.adoptChannels(channels);

    const result: NormaliseResult = { outputs: [], samples: rows.length, skipped: 0, held: 0, learned: 0 };
    const scaledRows: number[][] = [];
    let learning = this.learning;
    rows.forEach((row, r) => {
      let held = false;
      this.rememberGood(row);
      if (bad[r].length > 0) {
        if (this.opts.badValues === 'skip' || !this.canHold(bad[r])) {
          result.skipped += 1;
          return;
        }
        const lastGood = this.lastGood as number[];
        for (const i of bad[r]) row[i] = lastGood[i];
        held = true;
        result.held += 1;
      }
      if (!held && this.learns()) {
        this.learn(row);
        result.learned += 1;
      }
      learning = this.learning;
      if (learning && !this.opts.emitWhileLearning) return;
      const scaled = this.currentScaler().scale(row);
      if (this.window) {
        const window = this.window.push(scaled);
        if (window) result.outputs.push({ payload: window, features: [...channels], learning });
      } else {
        scaledRows.push(scaled);
      }
    });
    if (!this.window && scaledRows.length > 0) {
      result.outputs.push({
        payload: this.shape(kind, scaledRows, channels),
        features: [...channels],
        learning,
      });
    }
    return result;
  }

  /** The statistics in the export format; arrays are empty while nothing is known. */
  exportStats(): NormalisationStats {
    if (this.loaded) return checkNormalisation(this.loaded.stats);
    const o = this.opts;
    const channels = this.channels ? [...this.channels] : [];
    const out: NormalisationStats = {
      method: o.method,
      channels,
      mean: [],
      std: [],
      min: [],
      max: [],
      count: 0,
      range: [o.range[0], o.range[1]],
      clip: this.clipBounds(),
      source: o.source,
    };
    if (o.source === 'fixed') {
      const width = channels.length || Math.max(1, ...Object.values(o.given).map((l) => l?.length ?? 0));
      for (const key of ['mean', 'std', 'min', 'max'] as const) {
        const list = o.given[key] ?? [];
        out[key] = list.length === 1 ? new Array<number>(width).fill(list[0]) : [...list];
      }
      return out;
    }
    if (this.stats && this.stats.count > 0) {
      out.count = this.stats.count;
      out.mean = this.stats.mean();
      out.std = this.stats.std();
      out.min = this.stats.min();
      out.max = this.stats.max();
    }
    return out;
  }

  /**
   * Uses the given statistics (e.g. a model's meta.json "normalisation") instead of the
   * configured source until reset(): their method, range, clip and channel order apply.
   */
  useStats(stats: unknown): void {
    const scaler = new Scaler(checkNormalisation(stats));
    if (!this.channels || !sameList(this.channels, scaler.channels)) {
      this.window?.reset();
      this.lastGood = null;
    }
    this.loaded = scaler;
    this.channels = [...scaler.channels];
  }

  /** Forgets learned or loaded statistics, first-seen channels, held values and the window. */
  reset(): void {
    this.stats = null;
    this.loaded = null;
    this.scaler = null;
    this.lastGood = null;
    this.channels = this.opts.channels.length > 0 ? [...this.opts.channels] : null;
    this.window?.reset();
  }

  toJSON(): NormaliserState {
    return {
      format: 'edge-normalise',
      version: 1,
      source: this.opts.source,
      channels: this.channels ? [...this.channels] : null,
      stats: this.stats ? this.stats.toJSON() : null,
      loaded: this.loaded ? checkNormalisation(this.loaded.stats) : null,
      lastGood: this.lastGood ? this.lastGood.map((v) => (Number.isFinite(v) ? v : null)) : null,
    };
  }

  /**
   * Takes over a saved state when it fits the configuration (same kind of statistics, same
   * configured channels); otherwise keeps the fresh state and says why.
   */
  restore(saved: unknown): RestoreResult {
    const s = saved as Partial<NormaliserState> | null;
    if (!s || typeof s !== 'object' || s.format !== 'edge-normalise' || s.version !== 1) {
      return { restored: false, reason: 'not a saved edge-normalise state' };
    }
    const channels = s.channels;
    if (channels !== null && !(Array.isArray(channels) && channels.every((c) => typeof c === 'string'))) {
      return { restored: false, reason: 'saved channel list is invalid' };
    }
    if (s.loaded) {
      try {
        this.useStats(s.loaded);
      } catch (err) {
        return { restored: false, reason: `saved statistics are invalid: ${(err as Error).message}` };
      }
      this.restoreLastGood(s.lastGood);
      return { restored: true };
    }
    if (!s.stats || !channels) return { restored: false };
    if (this.opts.source === 'fixed') {
      return { restored: false, reason: 'the node now uses fixed statistics; learned ones are ignored' };
    }
    const expected = this.opts.source === 'ewma' ? 'ewma' : 'welford';
    if (s.stats.kind !== expected) {
      return {
        restored: false,
        reason: `saved ${s.stats.kind} statistics do not fit source "${this.opts.source}"`,
      };
    }
    if (this.opts.channels.length > 0 && !sameList(this.opts.channels, channels)) {
      return { restored: false, reason: `channels changed from ${listText(channels, LIST_TEXT_ITEMS, ',')}` };
    }
    let stats: ChannelStatistics;
    try {
      stats =
        expected === 'ewma' ? EwmaStats.fromJSON(s.stats, this.opts.alpha) : WelfordStats.fromJSON(s.stats);
    } catch (err) {
      return { restored: false, reason: (err as Error).message };
    }
    if (stats.width !== channels.length)
      return { restored: false, reason: 'saved statistics do not match channels' };
    this.stats = stats;
    this.scaler = null;
    this.channels = [...channels];
    this.restoreLastGood(s.lastGood);
    return { restored: true };
  }

  private restoreLastGood(lastGood: unknown): void {
    const width = this.channels?.length ?? 0;
    this.lastGood =
      Array.isArray(lastGood) && lastGood.length === width
        ? lastGood.map((v) => (typeof v === 'number' ? v : NaN))
        : null;
  }

  /** Reads the payload into rows in channel order; checks it against the known channels. */
  private read(payload: unknown, kind: InputKind): { rows: number[][]; channels: string[] } {
    if (!this.channels) {
      const matrix = toMatrix(payload);
      const width = matrix.channels.length;
      if (width > MAX_CHANNELS) {
        throw new InputError(
          `${width} channels is more than the ${MAX_CHANNELS} a node learns from one sample: send fewer values per sample (a 2-D array is timesteps x channels) or configure the channels`,
        );
      }
      if (this.opts.source === 'fixed') {
        const givenWidth = Math.max(...Object.values(this.opts.given).map((l) => l?.length ?? 0));
        if (givenWidth > 1 && givenWidth !== width) {
          throw new InputError(
            `fixed statistics have ${givenWidth} values but the input has ${width} channels`,
          );
        }
      }
      return matrix;
    }
    const channels = this.channels;
    const matrix = toMatrix(payload, channels);
    const width = matrix.rows[0].length;
    if (width !== channels.length) {
      throw new InputError(`expected ${channels.length} values (${listText(channels)}), got ${width}`);
    }
    const firstSeen = this.opts.channels.length === 0 && !this.loaded;
    if (kind === 'object' && firstSeen) {
      const unknown = Object.keys(payload as object).find((key) => !channels.includes(key));
      if (unknown !== undefined) {
        throw new InputError(
          `unexpected channel "${itemText(unknown)}" (channels are ${listText(channels)}; reset to learn new ones)`,
        );
      }
    }
    return { rows: matrix.rows, channels };
  }

  private adoptChannels(channels: string[]): void {
    if (!this.channels) this.channels = [...channels];
  }

  private canHold(badChannels: number[]): boolean {
    return (
      this.lastGood !== null && badChannels.every((i) => Number.isFinite((this.lastGood as number[])[i]))
    );
  }

  private rememberGood(row: number[]): void {
    if (!this.lastGood) this.lastGood = new Array<number>(row.length).fill(NaN);
    for (let i = 0; i < row.length; i++) if (Number.isFinite(row[i])) this.lastGood[i] = row[i];
  }

  private learns(): boolean {
    if (this.loaded || this.opts.source === 'fixed') return false;
    return this.opts.source !== 'first-n' || this.count < this.opts.learnCount;
  }

  private learn(row: number[]): void {
    if (!this.stats) {
      this.stats =
        this.opts.source === 'ewma'
          ? new EwmaStats(row.length, this.opts.alpha)
          : new WelfordStats(row.length);
    }
    this.stats.update(row);
    this.scaler = null;
  }

  private clipBounds(): [number, number] | null {
    if (!this.opts.clip) return null;
    return this.opts.method === 'minmax'
      ? [this.opts.range[0], this.opts.range[1]]
      : [-this.opts.zLimit, this.opts.zLimit];
  }

  private currentScaler(): Scaler {
    if (this.loaded) return this.loaded;
    if (!this.scaler) {
      const stats = this.exportStats();
      if (stats.count === 0 && this.opts.source !== 'fixed') throw new Error('no statistics learned yet');
      this.scaler = new Scaler(stats);
    }
    return this.scaler;
  }

  private shape(kind: InputKind, rows: number[][], channels: string[]): ScaledPayload {
    if (kind === 'matrix') return rows;
    const row = rows[0];
    if (kind === 'number') return row[0];
    if (kind === 'array') return row;
    const record: Record<string, number> = {};
    channels.forEach((name, i) => (record[name] = row[i]));
    return record;
  }
}
