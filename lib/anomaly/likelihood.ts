/**
 * Anomaly likelihood: the short-term mean of recent surprises judged against the long-term
 * distribution of such means (a Gaussian tail), learned over the whole stream. A series whose
 * samples are often somewhat unusual (noisy, or poorly described by the model) raises its own
 * long-term level and does not alarm; a run of surprises well above that level does. The
 * long-term statistics keep learning with weight 1/horizon, so the scale follows the series.
 */

export interface LikelihoodOptions {
  /** Surprises averaged into the short-term mean. */
  short: number;
  /** Samples over which the long-term mean and variance forget (exponential weighting). */
  horizon: number;
}

export interface LikelihoodState {
  recent: number[];
  mean: number;
  variance: number;
}

/** Smallest standard deviation of the short-term mean, in decades: below it nothing is learned. */
const MIN_SD = 0.05;

/** -log10 of the standard normal upper tail Q(z), accurate far into the tail. */
export function normalTailSurprise(z: number): number {
  if (z < 5) return -Math.log10(Math.max(Number.MIN_VALUE, 0.5 * erfc(z / Math.SQRT2)));
  // Asymptotic expansion of Mills' ratio.
  const z2 = z * z;
  const ln = -z2 / 2 - Math.log(z * Math.sqrt(2 * Math.PI)) + Math.log(1 - 1 / z2 + 3 / (z2 * z2));
  return -ln / Math.LN10;
}

/** Complementary error function (Numerical Recipes' Chebyshev fit, relative error < 1.2e-7). */
function erfc(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const c = [
    -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, 0.27886807, -1.13520398, 1.48851587,
    -0.82215223, 0.17087277,
  ];
  let poly = 0;
  for (let i = c.length - 1; i >= 0; i--) poly = c[i] + t * poly;
  const r = t * Math.exp(-z * z + poly);
  return x >= 0 ? r : 2 - r;
}

export class Likelihood {
  private recent: number[] = [];
  private mean = 0;
  private variance = 0;

  constructor(readonly options: LikelihoodOptions) {
    if (!(options.short >= 1) || !Number.isInteger(options.short))
      throw new Error('likelihood window must be an integer >= 1');
    if (!(options.horizon >= 1)) throw new Error('likelihood horizon must be >= 1');
  }

  /** Starts the long-term statistics from the surprises of the learning period. */
  static fit(options: LikelihoodOptions, surprises: readonly number[]): Likelihood {
    const l = new Likelihood(options);
    const means: number[] = [];
    let sum = 0;
    for (let i = 0; i < surprises.length; i++) {
      sum += surprises[i];
      if (i >= options.short) sum -= surprises[i - options.short];
      if (i >= options.short - 1) means.push(sum / options.short);
    }
    if (means.length) {
      l.mean = means.reduce((a, b) => a + b, 0) / means.length;
      l.variance = means.reduce((a, m) => a + (m - l.mean) ** 2, 0) / means.length;
    }
    // Prime the short window with the end of the learning period.
    for (const s of surprises.slice(-options.short)) l.push(s);
    return l;
  }

  /** Adds a surprise to the short window; returns the window's mean (summed afresh: exact on restore). */
  private push(s: number): number {
    this.recent.push(s);
    if (this.recent.length > this.options.short) this.recent.shift();
    let sum = 0;
    for (const v of this.recent) sum += v;
    return sum / this.recent.length;
  }

  /** The likelihood surprise (-log10 of the Gaussian tail) of a new surprise; then learns it. */
  step(surprise: number): number {
    const m = this.push(Number.isFinite(surprise) ? surprise : 0);
    const sd = Math.max(MIN_SD, Math.sqrt(this.variance));
    const z = (m - this.mean) / sd;
    const out = normalTailSurprise(z);
    const w = 1 / this.options.horizon;
    const d = m - this.mean;
    this.mean += w * d;
    this.variance = (1 - w) * (this.variance + w * d * d);
    return out;
  }

  state(): LikelihoodState {
    return { recent: this.recent.slice(), mean: this.mean, variance: this.variance };
  }

  static fromState(options: LikelihoodOptions, s: LikelihoodState): Likelihood {
    const l = new Likelihood(options);
    for (const v of s.recent) l.push(v);
    l.mean = s.mean;
    l.variance = s.variance;
    return l;
  }
}
