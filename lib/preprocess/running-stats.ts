/**
 * Per-channel running statistics over a stream of samples, updated one sample at a time in
 * O(channels) without keeping the samples.
 */
import { InputError } from '../errors';

export interface WelfordState {
  kind: 'welford';
  count: number;
  mean: number[];
  /** Sum of squared deviations from the mean (Welford's M2). */
  m2: number[];
  min: number[];
  max: number[];
}

export interface EwmaState {
  kind: 'ewma';
  alpha: number;
  count: number;
  mean: number[];
  variance: number[];
  min: number[];
  max: number[];
}

export type RunningStatsState = WelfordState | EwmaState;

/** What scaling needs from any running statistic. */
export interface ChannelStatistics {
  readonly width: number;
  readonly count: number;
  update(values: ArrayLike<number>): void;
  mean(): number[];
  /** Population variance (divides by the count, as a scaler fitted on all the data would). */
  variance(): number[];
  std(): number[];
  min(): number[];
  max(): number[];
  reset(): void;
  toJSON(): RunningStatsState;
}

function checkWidth(width: number): void {
  if (!Number.isInteger(width) || width < 1) throw new RangeError(`channel count must be >= 1, got ${width}`);
}

function checkValues(values: ArrayLike<number>, width: number): void {
  if (values.length !== width) throw new RangeError(`expected ${width} values, got ${values.length}`);
  for (let i = 0; i < width; i++) {
    if (!Number.isFinite(values[i])) {
      throw new InputError(`channel ${i + 1} is ${values[i]}: statistics learn from finite numbers only`);
    }
  }
}

/**
 * Statistics that would no longer be finite numbers are refused before they are stored, so one
 * huge sample (e.g. 1e308, whose square overflows float64) cannot wedge every later input.
 */
function refuseOverflow(values: ArrayLike<number>, next: Float64Array[], width: number): void {
  for (const stat of next) {
    for (let i = 0; i < width; i++) {
      if (!Number.isFinite(stat[i])) {
        throw new InputError(
          `channel ${i + 1} value ${values[i]} is too large to learn from: its statistics would overflow. ` +
            'The sample was not learned and the statistics are unchanged; scale the input, or send ' +
            'msg.reset to learn afresh if earlier samples were wrong too',
        );
      }
    }
  }
}

function isNumberArray(value: unknown, length: number): value is number[] {
  return (
    Array.isArray(value) && value.length === length && value.every((v) => typeof v === 'number' && !isNaN(v))
  );
}

/** Checks the fields both saved states share plus their spread array; throws if any is off. */
function checkSavedState<
  T extends { kind: string; count: number; mean: number[]; min: number[]; max: number[] },
>(state: unknown, kind: T['kind'], spread: keyof T & string, label: string): T {
  const s = state as (Partial<T> & Record<string, unknown>) | null;
  const width = Array.isArray(s?.mean) ? s.mean.length : 0;
  if (
    !s ||
    s.kind !== kind ||
    width < 1 ||
    typeof s.count !== 'number' ||
    !Number.isInteger(s.count) ||
    s.count < 0 ||
    !isNumberArray(s.mean, width) ||
    !isNumberArray(s[spread], width) ||
    !isNumberArray(s.min, width) ||
    !isNumberArray(s.max, width)
  ) {
    throw new TypeError(`not a saved ${label} state`);
  }
  return s as T;
}

/**
 * Welford's online mean and variance (numerically stable for large offsets, unlike the
 * sum-of-squares formula), plus min and max, for each channel.
 */
export class WelfordStats implements ChannelStatistics {
  private n = 0;
  private readonly meanValues: Float64Array;
  private readonly m2: Float64Array;
  private readonly minValues: Float64Array;
  private readonly maxValues: Float64Array;

  constructor(readonly width: number) {
    checkWidth(width);
    this.meanValues = new Float64Array(width);
    this.m2 = new Float64Array(width);
    this.minValues = new Float64Array(width).fill(Infinity);
    this.maxValues = new Float64Array(width).fill(-Infinity);
  }

  get count(): number {
    return this.n;
  }

  update(values: ArrayLike<number>): void {
    checkValues(values, this.width);
    const n = this.n + 1;
    const mean = new Float64Array(this.width);
    const m2 = new Float64Array(this.width);
    for (let i = 0; i < this.width; i++) {
      const x = values[i];
      const old = this.meanValues[i];
      // x/n - old/n instead of (x - old)/n: the difference of two huge values can overflow.
      mean[i] = old + (x / n - old / n);
      m2[i] = this.m2[i] + (x - old) * (x - mean[i]);
    }
    refuseOverflow(values, [mean, m2], this.width);
    this.n = n;
    this.meanValues.set(mean);
    this.m2.set(m2);
    for (let i = 0; i < this.width; i++) {
      const x = values[i];
      if (x < this.minValues[i]) this.minValues[i] = x;
      if (x > this.maxValues[i]) this.maxValues[i] = x;
    }
  }

  mean(): number[] {
    return Array.from(this.meanValues);
  }

  variance(): number[] {
    return Array.from(this.m2, (m2) => (this.n > 0 ? m2 / this.n : 0));
  }

  /** Unbiased (n - 1) variance, for callers that estimate a population from a sample. */
  sampleVariance(): number[] {
    return Array.from(this.m2, (m2) => (this.n > 1 ? m2 / (this.n - 1) : 0));
  }

  std(): number[] {
    return this.variance().map(Math.sqrt);
  }

  min(): number[] {
    return Array.from(this.minValues);
  }

  max(): number[] {
    return Array.from(this.maxValues);
  }

  reset(): void {
    this.n = 0;
    this.meanValues.fill(0);
    this.m2.fill(0);
    this.minValues.fill(Infinity);
    this.maxValues.fill(-Infinity);
  }

  toJSON(): WelfordState {
    const empty = this.n === 0;
    return {
      kind: 'welford',
      count: this.n,
      mean: this.mean(),
      m2: Array.from(this.m2),
      // JSON has no Infinity: an empty accumulator stores its extremes as 0 and restores as empty.
      min: empty ? this.mean() : this.min(),
      max: empty ? this.mean() : this.max(),
    };
  }

  static fromJSON(state: unknown): WelfordStats {
    const s = checkSavedState<WelfordState>(state, 'welford', 'm2', 'Welford');
    const width = s.mean.length;
    const stats = new WelfordStats(width);
    if (s.count > 0) {
      stats.n = s.count;
      stats.meanValues.set(s.mean);
      stats.m2.set(s.m2);
      stats.minValues.set(s.min);
      stats.maxValues.set(s.max);
    }
    return stats;
  }
}

/**
 * Exponentially weighted moving mean and variance (West/Finch incremental form) with weight
 * `alpha` on the newest sample, so the statistics follow a slowly drifting signal. The first
 * sample initialises the mean. Min and max form a decaying envelope: a new extreme is taken at
 * once, and old extremes relax toward the mean at the same rate `alpha`, so they are forgotten
 * like the rest of the history.
 */
export class EwmaStats implements ChannelStatistics {
  private n = 0;
  private readonly meanValues: Float64Array;
  private readonly varianceValues: Float64Array;
  private readonly minValues: Float64Array;
  private readonly maxValues: Float64Array;

  constructor(
    readonly width: number,
    readonly alpha: number,
  ) {
    checkWidth(width);
    if (!(alpha > 0 && alpha <= 1)) throw new RangeError(`EWMA alpha must be in (0, 1], got ${alpha}`);
    this.meanValues = new Float64Array(width);
    this.varianceValues = new Float64Array(width);
    this.minValues = new Float64Array(width);
    this.maxValues = new Float64Array(width);
  }

  get count(): number {
    return this.n;
  }

  update(values: ArrayLike<number>): void {
    checkValues(values, this.width);
    const a = this.alpha;
    const first = this.n === 0;
    const next = [this.meanValues, this.varianceValues, this.minValues, this.maxValues].map(
      (v) => new Float64Array(v),
    );
    const [means, variances, mins, maxs] = next;
    for (let i = 0; i < this.width; i++) {
      const x = values[i];
      if (first) {
        means[i] = x;
        variances[i] = 0;
        mins[i] = x;
        maxs[i] = x;
        continue;
      }
      const old = means[i];
      // a*x - a*old instead of a*(x - old): the difference of two huge values can overflow.
      const increment = a * x - a * old;
      const mean = old + increment;
      means[i] = mean;
      variances[i] = (1 - a) * (variances[i] + (x - old) * increment);
      mins[i] = Math.min(x, mins[i] + a * (mean - mins[i]));
      maxs[i] = Math.max(x, maxs[i] + a * (mean - maxs[i]));
    }
    refuseOverflow(values, next, this.width);
    this.n += 1;
    this.meanValues.set(means);
    this.varianceValues.set(variances);
    this.minValues.set(mins);
    this.maxValues.set(maxs);
  }

  mean(): number[] {
    return Array.from(this.meanValues);
  }

  variance(): number[] {
    return Array.from(this.varianceValues);
  }

  std(): number[] {
    return Array.from(this.varianceValues, Math.sqrt);
  }

  min(): number[] {
    return Array.from(this.minValues);
  }

  max(): number[] {
    return Array.from(this.maxValues);
  }

  reset(): void {
    this.n = 0;
    this.meanValues.fill(0);
    this.varianceValues.fill(0);
    this.minValues.fill(0);
    this.maxValues.fill(0);
  }

  toJSON(): EwmaState {
    return {
      kind: 'ewma',
      alpha: this.alpha,
      count: this.n,
      mean: this.mean(),
      variance: this.variance(),
      min: this.min(),
      max: this.max(),
    };
  }

  /** Restores a saved state; `alpha` (the configured one) wins over the saved one. */
  static fromJSON(state: unknown, alpha?: number): EwmaStats {
    const s = checkSavedState<EwmaState>(state, 'ewma', 'variance', 'EWMA');
    const width = s.mean.length;
    const stats = new EwmaStats(width, alpha ?? s.alpha ?? 0.05);
    stats.n = s.count;
    stats.meanValues.set(s.mean);
    stats.varianceValues.set(s.variance);
    stats.minValues.set(s.min);
    stats.maxValues.set(s.max);
    return stats;
  }
}
