/**
 * Streaming feature extractors placed in front of the statistical models: they turn each
 * incoming sample (one value per channel) into a feature vector once their window is full.
 * Their whole state is plain JSON so a detector can persist and resume mid-stream.
 */

import { median } from './linalg';

export type FeatureKind = 'identity' | 'mean' | 'median' | 'ewma' | 'window' | 'level-change' | 'spread';

export interface FeaturizerState {
  kind: FeatureKind;
  window: number;
  alpha: number;
  buffer: number[][];
  ewma: number[] | null;
  persistent?: boolean[];
  floors?: number[];
}

/**
 * Share of a channel's variance left after averaging over `window` samples: about 1/window
 * for noise around a level, near 1 for a channel that wanders slowly (a temperature).
 */
export function lowFrequencyShare(values: readonly number[], window: number): number {
  const n = values.length;
  if (n < 2 * window) return 0;
  const mu = values.reduce((a, b) => a + b, 0) / n;
  const total = values.reduce((a, v) => a + (v - mu) ** 2, 0) / n;
  if (!(total > 0)) return 0;
  let sum = 0;
  const means: number[] = [];
  for (let i = 0; i < n; i++) {
    sum += values[i];
    if (i >= window) sum -= values[i - window];
    if (i >= window - 1) means.push(sum / window);
  }
  const m = means.reduce((a, b) => a + b, 0) / means.length;
  return means.reduce((a, v) => a + (v - m) ** 2, 0) / means.length / total;
}

/** Noise floor per channel for the spread feature: a small share of its learning spread. */
export function spreadFloors(rows: readonly number[][], share = 0.05): number[] {
  const d = rows[0]?.length ?? 0;
  return Array.from({ length: d }, (_, j) => {
    const v = rows.map((r) => r[j]);
    const mu = v.reduce((a, b) => a + b, 0) / v.length;
    const sd = Math.sqrt(v.reduce((a, x) => a + (x - mu) ** 2, 0) / v.length);
    return Math.max(share * sd, 1e-9 * Math.max(1, Math.abs(mu)));
  });
}

/** Channels whose level wanders during learning; their level says little about later data. */
export function persistentChannels(rows: readonly number[][], window: number, limit: number): boolean[] {
  const d = rows[0]?.length ?? 0;
  return Array.from(
    { length: d },
    (_, j) =>
      lowFrequencyShare(
        rows.map((r) => r[j]),
        window,
      ) > limit,
  );
}

export class Featurizer {
  private buffer: number[][] = [];
  private ewma: number[] | null = null;

  /**
   * identity: the sample itself; mean / median: rolling mean / median of the last `window`
   * samples per channel; ewma: exponentially weighted mean with weight `alpha` on the newest;
   * window: the last `window` samples flattened row-major (for the sequence models);
   * level-change: the rolling mean of every channel, followed by the change of the rolling mean
   * against the `window` samples before for each `persistent` channel (a wandering level is
   * judged against its wide learned range, a sudden change of it on its own);
   * spread: log of the rolling standard deviation per channel, each at least `floors[j]`
   * (a stuck sensor has none, a loosening part vibrates more).
   */
  constructor(
    readonly kind: FeatureKind,
    readonly window = 1,
    readonly alpha = 0.1,
    readonly persistent: readonly boolean[] = [],
    readonly floors: readonly number[] = [],
  ) {
    if (!(window >= 1) || !Number.isInteger(window)) throw new Error(`window must be an integer >= 1`);
    if (kind === 'ewma' && !(alpha > 0 && alpha <= 1)) throw new Error('EWMA weight must be in (0, 1]');
  }

  /** Samples needed before the first feature comes out. */
  get warmup(): number {
    if (this.kind === 'identity' || this.kind === 'ewma') return 1;
    return this.kind === 'level-change' ? 2 * this.window : this.window;
  }

  push(sample: readonly number[]): number[] | null {
    switch (this.kind) {
      case 'identity':
        return sample.slice();
      case 'ewma': {
        const a = this.alpha;
        this.ewma = this.ewma ? this.ewma.map((m, j) => m + a * (sample[j] - m)) : sample.slice();
        return this.ewma.slice();
      }
      default: {
        this.buffer.push(sample.slice());
        if (this.buffer.length > this.warmup) this.buffer.shift();
        if (this.buffer.length < this.warmup) return null;
        return this.current();
      }
    }
  }

  private current(): number[] {
    const rows = this.buffer;
    if (this.kind === 'window') return rows.flat();
    const d = rows[0].length;
    if (this.kind === 'spread') {
      return Array.from({ length: d }, (_, j) => {
        let sum = 0;
        for (const r of rows) sum += r[j];
        const mu = sum / rows.length;
        let sq = 0;
        for (const r of rows) sq += (r[j] - mu) ** 2;
        return Math.log(Math.sqrt(sq / rows.length) + (this.floors[j] ?? 1e-12));
      });
    }
    if (this.kind === 'level-change') {
      const w = this.window;
      const levels: number[] = [];
      const changes: number[] = [];
      for (let j = 0; j < d; j++) {
        let recent = 0;
        let before = 0;
        for (let t = 0; t < w; t++) {
          before += rows[t][j];
          recent += rows[w + t][j];
        }
        levels.push(recent / w);
        if (this.persistent[j]) changes.push((recent - before) / w);
      }
      return levels.concat(changes);
    }
    const out = new Array<number>(d);
    for (let j = 0; j < d; j++) {
      if (this.kind === 'median') {
        out[j] = median(rows.map((r) => r[j]));
        continue;
      }
      let sum = 0;
      for (const r of rows) sum += r[j];
      out[j] = sum / rows.length;
    }
    return out;
  }

  /** Features of a whole sequence from a fresh state (used for fitting); nulls dropped. */
  static run(
    kind: FeatureKind,
    window: number,
    alpha: number,
    rows: readonly number[][],
    persistent: readonly boolean[] = [],
    floors: readonly number[] = [],
  ): number[][] {
    const f = new Featurizer(kind, window, alpha, persistent, floors);
    const out: number[][] = [];
    for (const row of rows) {
      const v = f.push(row);
      if (v) out.push(v);
    }
    return out;
  }

  reset(): void {
    this.buffer = [];
    this.ewma = null;
  }

  state(): FeaturizerState {
    return {
      kind: this.kind,
      window: this.window,
      alpha: this.alpha,
      buffer: this.buffer.map((r) => r.slice()),
      ewma: this.ewma ? this.ewma.slice() : null,
      ...(this.persistent.length ? { persistent: this.persistent.slice() } : {}),
      ...(this.floors.length ? { floors: this.floors.slice() } : {}),
    };
  }

  static fromState(s: FeaturizerState): Featurizer {
    const f = new Featurizer(s.kind, s.window, s.alpha, s.persistent ?? [], s.floors ?? []);
    f.buffer = s.buffer.map((r) => r.slice());
    f.ewma = s.ewma ? s.ewma.slice() : null;
    return f;
  }
}
