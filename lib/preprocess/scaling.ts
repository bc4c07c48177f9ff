/**
 * Per-channel scaling from a fixed set of statistics. `NormalisationStats` is the exported form
 * that edge-normalise reads out and a trained model stores in meta.json as "normalisation", so
 * training and inference scale with exactly the same numbers.
 */
import { listText } from '../util/text';
import { InputError, toMatrix } from './numeric-input';

export type ScalingMethod = 'minmax' | 'zscore';

export const SCALING_METHODS: readonly ScalingMethod[] = ['minmax', 'zscore'];

/**
 * Statistics per channel, in `channels` order. The arrays the method uses (min/max for
 * "minmax", mean/std for "zscore") hold one finite number per channel; the other pair holds one
 * per channel too when the statistics were learned, and may be empty when they were given.
 */
export interface NormalisationStats {
  method: ScalingMethod;
  channels: string[];
  mean: number[];
  /** Population standard deviation. */
  std: number[];
  min: number[];
  max: number[];
  /** Samples the statistics were learned from (0 when given). */
  count: number;
  /** Target range of min-max scaling, e.g. [0, 1] or [-1, 1]. */
  range: [number, number];
  /** Scaled values are clamped to these bounds, or not clamped when null. */
  clip: [number, number] | null;
  /** How the statistics came about: "fixed", "first-n", "welford", "ewma" or "loaded". */
  source?: string;
}

function finiteList(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((v) => typeof v === 'number' && Number.isFinite(v));
}

function pair(value: unknown): value is [number, number] {
  return finiteList(value) && value.length === 2;
}

/**
 * Checks an untrusted value (a meta.json entry, a message payload) and returns it as
 * NormalisationStats with defaults filled in (range [0, 1], no clip, count 0). Throws InputError
 * naming the first problem.
 */
export function checkNormalisation(value: unknown): NormalisationStats {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new InputError('normalisation statistics must be an object');
  }
  const v = value as Record<string, unknown>;
  const method = v.method as ScalingMethod;
  if (!SCALING_METHODS.includes(method)) {
    throw new InputError(
      `normalisation method must be "minmax" or "zscore", got ${JSON.stringify(v.method)}`,
    );
  }
  const channels = v.channels;
  if (!Array.isArray(channels) || channels.length === 0 || !channels.every((c) => typeof c === 'string')) {
    throw new InputError('normalisation channels must be a non-empty list of names');
  }
  const width = channels.length;
  const lists: Record<'mean' | 'std' | 'min' | 'max', number[]> = { mean: [], std: [], min: [], max: [] };
  const needed = method === 'minmax' ? ['min', 'max'] : ['mean', 'std'];
  for (const key of ['mean', 'std', 'min', 'max'] as const) {
    const list = v[key] ?? [];
    const required = needed.includes(key);
    if (!finiteList(list) || (list.length !== width && (required || list.length !== 0))) {
      throw new InputError(
        `normalisation ${key} must be ${required ? '' : 'empty or '}${width} finite number(s), one per channel`,
      );
    }
    lists[key] = [...list];
  }
  const range = v.range ?? [0, 1];
  if (!pair(range) || !(range[0] < range[1])) {
    throw new InputError('normalisation range must be [low, high] with low < high');
  }
  const clip = v.clip ?? null;
  if (clip !== null && (!pair(clip) || !(clip[0] <= clip[1]))) {
    throw new InputError('normalisation clip must be null or [low, high] with low <= high');
  }
  const count = v.count ?? 0;
  if (typeof count !== 'number' || !Number.isInteger(count) || count < 0) {
    throw new InputError('normalisation count must be a whole number >= 0');
  }
  const stats: NormalisationStats = {
    method,
    channels: [...(channels as string[])],
    ...lists,
    count,
    range: [range[0], range[1]],
    clip: clip === null ? null : [clip[0], clip[1]],
  };
  if (typeof v.source === 'string') stats.source = v.source;
  return stats;
}

/**
 * Applies (and inverts) one set of statistics: y = (x - offset) * factor + base per channel.
 * A channel without spread (std 0, or min = max) uses a spread of 1, so a constant channel scales
 * to 0 (z-score) or to the low end of the range (min-max) instead of dividing by zero.
 */
export class Scaler {
  readonly stats: NormalisationStats;
  private readonly offset: Float64Array;
  private readonly factor: Float64Array;
  private readonly base: number;
  private readonly clipLow: number;
  private readonly clipHigh: number;

  constructor(stats: NormalisationStats) {
    this.stats = checkNormalisation(stats);
    const { method, range, clip } = this.stats;
    const width = this.stats.channels.length;
    this.offset = new Float64Array(width);
    this.factor = new Float64Array(width);
    for (let i = 0; i < width; i++) {
      if (method === 'minmax') {
        const span = this.stats.max[i] - this.stats.min[i];
        this.offset[i] = this.stats.min[i];
        this.factor[i] = (range[1] - range[0]) / (span > 0 ? span : 1);
      } else {
        const std = this.stats.std[i];
        this.offset[i] = this.stats.mean[i];
        this.factor[i] = 1 / (std > 0 ? std : 1);
      }
    }
    this.base = method === 'minmax' ? range[0] : 0;
    this.clipLow = clip ? clip[0] : -Infinity;
    this.clipHigh = clip ? clip[1] : Infinity;
  }

  get channels(): string[] {
    return this.stats.channels;
  }

  /** Scales one sample given in channel order. */
  scale(values: ArrayLike<number>): number[] {
    this.checkWidth(values.length);
    const out = new Array<number>(values.length);
    for (let i = 0; i < values.length; i++) {
      const y = (values[i] - this.offset[i]) * this.factor[i] + this.base;
      out[i] = y < this.clipLow ? this.clipLow : y > this.clipHigh ? this.clipHigh : y;
    }
    return out;
  }

  /** Maps scaled values back to the original units (clipped values stay at the clip bound). */
  unscale(values: ArrayLike<number>): number[] {
    this.checkWidth(values.length);
    return Array.from(values, (y, i) => (y - this.base) / this.factor[i] + this.offset[i]);
  }

  /**
   * Scales any numeric input shape (number, array, typed array, object of named numbers read in
   * the statistics' channel order, or a 2-D array of rows) into timesteps x features.
   */
  scaleInput(payload: unknown): number[][] {
    return toMatrix(payload, this.stats.channels).rows.map((row) => this.scale(row));
  }

  private checkWidth(length: number): void {
    if (length !== this.offset.length) {
      throw new InputError(
        `expected ${this.offset.length} values (${listText(this.stats.channels)}), got ${length}`,
      );
    }
  }
}

/** Scales one sample (channel order of `stats`) with the given statistics. */
export function applyScaling(stats: NormalisationStats, values: ArrayLike<number>): number[] {
  return new Scaler(stats).scale(values);
}

/** Inverse of applyScaling, e.g. to turn a model's scaled prediction back into units. */
export function invertScaling(stats: NormalisationStats, values: ArrayLike<number>): number[] {
  return new Scaler(stats).unscale(values);
}
