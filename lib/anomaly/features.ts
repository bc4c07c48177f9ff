/**
 * Streaming feature extractors placed in front of the statistical models: they turn each
 * incoming sample (one value per channel) into a feature vector once their window is full.
 * Their whole state is plain JSON so a detector can persist and resume mid-stream.
 */

import { median } from './linalg';

export type FeatureKind = 'identity' | 'mean' | 'median' | 'ewma' | 'window';

export interface FeaturizerState {
  kind: FeatureKind;
  window: number;
  alpha: number;
  buffer: number[][];
  ewma: number[] | null;
}

export class Featurizer {
  private buffer: number[][] = [];
  private ewma: number[] | null = null;

  /**
   * identity: the sample itself; mean / median: rolling mean / median of the last `window`
   * samples per channel; ewma: exponentially weighted mean with weight `alpha` on the newest;
   * window: the last `window` samples flattened row-major (for the sequence models).
   */
  constructor(
    readonly kind: FeatureKind,
    readonly window = 1,
    readonly alpha = 0.1,
  ) {
    if (!(window >= 1) || !Number.isInteger(window)) throw new Error(`window must be an integer >= 1`);
    if (kind === 'ewma' && !(alpha > 0 && alpha <= 1)) throw new Error('EWMA weight must be in (0, 1]');
  }

  /** Samples needed before the first feature comes out. */
  get warmup(): number {
    return this.kind === 'identity' || this.kind === 'ewma' ? 1 : this.window;
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
        if (this.buffer.length > this.window) this.buffer.shift();
        if (this.buffer.length < this.window) return null;
        return this.current();
      }
    }
  }

  private current(): number[] {
    const rows = this.buffer;
    if (this.kind === 'window') return rows.flat();
    const d = rows[0].length;
    const out = new Array<number>(d);
    for (let j = 0; j < d; j++) {
      const column = rows.map((r) => r[j]);
      out[j] =
        this.kind === 'median' ? median(column) : column.reduce((a, b) => a + b, 0) / column.length;
    }
    return out;
  }

  /** Features of a whole sequence from a fresh state (used for fitting); nulls dropped. */
  static run(kind: FeatureKind, window: number, alpha: number, rows: readonly number[][]): number[][] {
    const f = new Featurizer(kind, window, alpha);
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
    };
  }

  static fromState(s: FeaturizerState): Featurizer {
    const f = new Featurizer(s.kind, s.window, s.alpha);
    f.buffer = s.buffer.map((r) => r.slice());
    f.ewma = s.ewma ? s.ewma.slice() : null;
    return f;
  }
}
