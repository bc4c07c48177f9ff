/**
 * Shape novelty by nearest neighbours: each window of recent samples (scaled per channel by
 * the learning period's robust spread) is compared with a memory of past windows; its mean
 * distance to the k nearest is judged against the running distribution of such distances
 * (log-normal, forgetting over `horizon` windows). The memory keeps learning for the whole
 * stream, so a pattern that repeats (a daily cycle, a new level that lasts) soon has
 * neighbours and stops being news, while a shape never seen before stands out.
 *
 * The model learns while it scores, so it must see every window once and in order.
 */

import { normalTailSurprise } from './likelihood';
import { mad, median } from './linalg';
import type { ScoreModel } from './stat-models';

export interface NeighbourOptions {
  /** Samples per window. */
  window: number;
  /** Consecutive samples averaged into one before comparing (1 = none): a longer view at the same cost. */
  pool?: number;
  /** Neighbours averaged. */
  k: number;
  /** Most windows remembered (the oldest are forgotten first). */
  memory: number;
  /** Windows over which the distance statistics forget. */
  horizon: number;
  /**
   * Seasonal view: compare only with the windows whole periods ago, the period being the one
   * the learning rows show with at least this autocorrelation (none: the view scores 0).
   */
  season?: number;
}

/**
 * Shortest period of the seasonal view, in windows: a shorter cycle repeats so often that the
 * nearest windows in memory are already windows of other cycles.
 */
const SEASON_MIN_WINDOWS = 4;
/** Samples of phase jitter allowed when comparing with a window whole periods ago. */
const SEASON_JITTER = 2;
/** Latest samples searched for a period (bounds the work at the end of a long learning period). */
const PERIOD_SEARCH_SAMPLES = 4000;

/**
 * The period of a series: the lag (from `minLag` to half the series) of the highest
 * autocorrelation after it first dips below 0, if that is at least `minCorrelation`; else 0.
 */
export function periodOf(values: readonly number[], minLag: number, minCorrelation: number): number {
  const recent = values.slice(-PERIOD_SEARCH_SAMPLES);
  const n = recent.length;
  const m = recent.reduce((a, b) => a + b, 0) / n;
  const c = recent.map((v) => v - m);
  const total = c.reduce((a, v) => a + v * v, 0);
  if (!(total > 0)) return 0;
  let dipped = false;
  let best = 0;
  let bestR = minCorrelation;
  for (let lag = 1; lag <= n >> 1; lag++) {
    let sum = 0;
    for (let t = 0; t + lag < n; t++) sum += c[t] * c[t + lag];
    const r = (sum / total) * (n / (n - lag));
    if (r < 0) dipped = true;
    if (dipped && lag >= minLag && r > bestR) {
      bestR = r;
      best = lag;
    }
  }
  return best;
}

export const DEFAULT_NEIGHBOUR_OPTIONS: Omit<NeighbourOptions, 'window'> = {
  k: 3,
  memory: 4000,
  horizon: 3000,
};

/** Numbers kept in memory at most (windows x window length x channels), to bound state size. */
export const MAX_MEMORY_VALUES = 65536;
/** Windows scored before the distance statistics are trusted. */
const MIN_STATISTICS = 50;
/** Added to distances (in spreads) before the log: identical repeats are not infinitely normal. */
const DISTANCE_FLOOR = 1e-3;
/** Smallest standard deviation of the log distance. */
const MIN_LOG_SD = 0.01;

export interface NeighbourState {
  type: 'neighbours';
  options: NeighbourOptions;
  channels: string[];
  centre: number[];
  scale: number[];
  /** Remembered windows (scaled), oldest first. */
  memory: number[][];
  /** The latest windows, not yet remembered (they overlap the next ones). */
  pending: number[][];
  mean: number;
  variance: number;
  count: number;
  period?: number;
}

export class NeighbourModel implements ScoreModel {
  readonly statistics: string[];
  readonly online = true;
  private readonly dim: number;
  private readonly capacity: number;
  /** Ring buffer of remembered windows. */
  private readonly store: Float64Array;
  private size = 0;
  private next = 0;
  private pending: number[][] = [];
  private mean = 0;
  private variance = 0;
  /** Log distance of the last window scored (null before the memory had k windows). */
  lastLogDistance: number | null = null;
  private count = 0;
  /** Whether scored windows are remembered (off while a lasting alarm must stay in alarm). */
  learning = true;
  /** Period of the seasonal view in samples (0: none found, the view scores 0). */
  period = 0;

  private constructor(
    readonly options: NeighbourOptions,
    private readonly channels: string[],
    private readonly centre: number[],
    private readonly scale: number[],
  ) {
    this.statistics = ['shape'];
    this.dim = Math.floor(options.window / this.pool) * channels.length;
    this.capacity = Math.max(
      options.k + 1,
      Math.min(options.memory, Math.floor(MAX_MEMORY_VALUES / this.dim)),
    );
    this.store = new Float64Array(this.capacity * this.dim);
  }

  /**
   * Scales by the learning rows' median and spread, then scores the learning windows in order
   * (from an empty memory) so memory and distance statistics start as a live stream would.
   * Returns the model and the surprises of the learning windows.
   */
  static fit(
    rows: readonly number[][],
    options: NeighbourOptions,
    channels: string[],
  ): { model: NeighbourModel; calibration: number[][] } {
    const d = channels.length;
    const centre: number[] = [];
    const scale: number[] = [];
    for (let j = 0; j < d; j++) {
      const column = rows.map((r) => r[j]);
      const c = median(column);
      const sd = Math.sqrt(column.reduce((a, v) => a + (v - c) ** 2, 0) / column.length);
      centre.push(c);
      // Robust spread, but a channel mostly constant with rare moves still gets a usable scale.
      scale.push(Math.max(1.4826 * mad(column, c), 0.1 * sd, 1e-9 * Math.max(1, Math.abs(c))));
    }
    const model = new NeighbourModel(options, channels, centre, scale);
    if (options.season)
      model.period = periodOf(
        rows.map((r) => r[0]),
        options.window * SEASON_MIN_WINDOWS,
        options.season,
      );
    const calibration: number[][] = [];
    const w = options.window;
    const logDistances: number[] = [];
    for (let t = w; t <= rows.length; t++) {
      calibration.push(model.step(rows.slice(t - w, t).flat()));
      if (model.lastLogDistance !== null) logDistances.push(model.lastLogDistance);
    }
    // The first windows met an almost empty memory: the distance statistics start from the
    // second half of the learning period, when the memory holds what normal looks like.
    const warm = logDistances.slice(logDistances.length >> 1);
    if (warm.length >= MIN_STATISTICS) {
      model.mean = warm.reduce((a, b) => a + b, 0) / warm.length;
      model.variance = warm.reduce((a, v) => a + (v - model.mean) ** 2, 0) / warm.length;
    }
    return { model, calibration };
  }

  static fromState(s: NeighbourState): NeighbourModel {
    const m = new NeighbourModel({ ...s.options }, s.channels.slice(), s.centre.slice(), s.scale.slice());
    for (const w of s.memory) m.remember(w);
    m.pending = s.pending.map((w) => w.slice());
    m.mean = s.mean;
    m.variance = s.variance;
    m.count = s.count;
    m.period = s.period ?? 0;
    return m;
  }

  evaluate(features: readonly number[][]): Promise<number[][]> {
    return Promise.resolve(features.map((f) => this.step(f)));
  }

  /** Learns in `evaluate` instead: every window, not only those judged normal. */
  update(): void {}

  state(): NeighbourState {
    const memory: number[][] = [];
    for (let i = 0; i < this.size; i++) {
      const slot = (this.next - this.size + i + this.capacity) % this.capacity;
      memory.push(Array.from(this.store.subarray(slot * this.dim, (slot + 1) * this.dim)));
    }
    return {
      type: 'neighbours',
      options: { ...this.options },
      channels: this.channels.slice(),
      centre: this.centre.slice(),
      scale: this.scale.slice(),
      memory,
      pending: this.pending.map((w) => w.slice()),
      mean: this.mean,
      variance: this.variance,
      count: this.count,
      ...(this.period ? { period: this.period } : {}),
    };
  }

  dispose(): Promise<void> {
    return Promise.resolve();
  }

  private get pool(): number {
    return Math.max(1, this.options.pool ?? 1);
  }

  /** Surprise of one raw window (row-major: window x channels); then learns it. */
  private step(raw: readonly number[]): number[] {
    // A seasonal view without a period is off: no statistic, so it dilutes none of the others.
    if (this.options.season && !this.period) return [];
    const d = this.channels.length;
    const pool = this.pool;
    const x = new Array<number>(this.dim).fill(0);
    for (let i = 0; i < this.dim; i++) {
      const t = Math.floor(i / d) * pool;
      const j = i % d;
      for (let q = 0; q < pool; q++) x[i] += raw[(t + q) * d + j];
      x[i] = (x[i] / pool - this.centre[j]) / this.scale[j];
    }
    if (this.size < (this.period ? this.period + SEASON_JITTER : this.options.k)) {
      this.lastLogDistance = null;
      this.learn(x, null);
      return [0];
    }
    const logDistance = Math.log(this.neighbourDistance(x) + DISTANCE_FLOOR);
    this.lastLogDistance = logDistance;
    const surprise =
      this.count >= MIN_STATISTICS
        ? normalTailSurprise((logDistance - this.mean) / Math.max(MIN_LOG_SD, Math.sqrt(this.variance)))
        : 0;
    this.learn(x, logDistance);
    return [Number.isFinite(surprise) ? Math.max(0, surprise) : 0];
  }

  private learn(x: number[], logDistance: number | null): void {
    if (!this.learning) return;
    if (logDistance !== null) {
      this.count++;
      const w = Math.max(1 / this.count, 1 / this.options.horizon);
      const delta = logDistance - this.mean;
      this.mean += w * delta;
      this.variance = (1 - w) * (this.variance + w * delta * delta);
    }
    // A window joins the memory once it no longer overlaps the windows being scored.
    this.pending.push(x);
    if (this.pending.length > this.options.window) this.remember(this.pending.shift() as number[]);
  }

  private remember(x: readonly number[]): void {
    this.store.set(x, this.next * this.dim);
    this.next = (this.next + 1) % this.capacity;
    this.size = Math.min(this.size + 1, this.capacity);
  }

  private squaredDistance(x: readonly number[], slot: number, worst: number): number {
    const base = slot * this.dim;
    let sum = 0;
    for (let i = 0; i < this.dim && sum < worst; i++) {
      const q = x[i] - this.store[base + i];
      sum += q * q;
    }
    return sum;
  }

  /** Root mean square distance per value to the k nearest windows whole periods ago (each ± jitter). */
  private seasonalDistance(x: readonly number[]): number {
    // The newest remembered window ended window + 1 samples before the one scored.
    const lagOfNewest = this.options.window + 1;
    const best: number[] = [];
    for (let lag = this.period; lag - SEASON_JITTER - lagOfNewest < this.size; lag += this.period) {
      let nearest = Infinity;
      for (let j = -SEASON_JITTER; j <= SEASON_JITTER; j++) {
        const back = lag + j - lagOfNewest;
        if (back < 0 || back >= this.size) continue;
        const slot = (this.next - 1 - back + 2 * this.capacity) % this.capacity;
        nearest = Math.min(nearest, this.squaredDistance(x, slot, nearest));
      }
      if (nearest < Infinity) best.push(nearest);
    }
    best.sort((a, b) => a - b);
    const k = Math.min(this.options.k, best.length);
    let total = 0;
    for (let i = 0; i < k; i++) total += best[i];
    return k ? Math.sqrt(total / k / this.dim) : 0;
  }

  /** Root mean square distance per value to the k nearest remembered windows. */
  private neighbourDistance(x: readonly number[]): number {
    if (this.period) return this.seasonalDistance(x);
    const k = Math.min(this.options.k, this.size);
    const best = new Array<number>(k).fill(Infinity);
    for (let s = 0; s < this.size; s++) {
      const sum = this.squaredDistance(x, s, best[k - 1]);
      if (sum < best[k - 1]) {
        let i = k - 1;
        while (i > 0 && best[i - 1] > sum) {
          best[i] = best[i - 1];
          i--;
        }
        best[i] = sum;
      }
    }
    let total = 0;
    for (const b of best) total += b;
    return Math.sqrt(total / k / this.dim);
  }
}
