/**
 * Turns a raw anomaly statistic (larger = more unusual) into a tail probability under the
 * distribution seen in the learning period: empirical below a high quantile, a generalized
 * Pareto distribution fitted to the exceedances above it (peaks over threshold) for the far
 * tail, so values beyond anything seen still get distinct, tiny probabilities.
 */

export interface CalibratorState {
  /** Sorted learning values at or below the tail threshold (a thinned copy when there are many). */
  body: number[];
  /** Total number of learning values the calibrator was fitted on. */
  count: number;
  /** Peaks-over-threshold level. */
  u: number;
  /** Fraction of learning values above u. */
  tailFraction: number;
  /** GPD shape (xi >= 0) and scale. */
  xi: number;
  sigma: number;
  /**
   * Values within this of u count as u: rounding noise of a statistic that was constant while
   * learning (a flat or noise-free signal) is not an anomaly.
   */
  tolerance?: number;
  /** The values are surprises already (an online model calibrates itself): passed through. */
  passthrough?: boolean;
}

/** Smallest tail probability reported, so scores stay finite and comparable. */
export const MIN_TAIL_PROBABILITY = 1e-15;
const BODY_POINTS = 512;
/**
 * Largest GPD shape used. The few dozen exceedances of a learning period often suggest a heavy
 * tail that is only noise; a heavier tail would make clear anomalies look merely unusual.
 */
export const MAX_SHAPE = 0.25;

/**
 * Fits a GPD to exceedances `y` (all > 0) by probability-weighted moments (Hosking & Wallis
 * 1987), which is stable for the small samples a learning period gives. The shape is kept
 * in [0, MAX_SHAPE]: a short fitted endpoint (shape < 0) would turn ordinary noise beyond the
 * learning maximum into certain anomalies.
 */
export function fitGpd(y: readonly number[]): { xi: number; sigma: number } {
  const n = y.length;
  const s = y.slice().sort((a, b) => a - b);
  const a0 = s.reduce((acc, v) => acc + v, 0) / n;
  if (n < 3 || !(a0 > 0)) return { xi: 0, sigma: Math.max(a0, 1e-12) };
  let a1 = 0;
  for (let i = 0; i < n; i++) a1 += ((n - 1 - i) / (n - 1)) * s[i];
  a1 /= n;
  const denom = a0 - 2 * a1;
  if (!(denom > 0)) return { xi: 0, sigma: a0 };
  const k = a0 / denom - 2;
  const sigma = (2 * a0 * a1) / denom;
  const xi = Math.min(MAX_SHAPE, Math.max(0, -k));
  // With xi clamped, keep the mean exceedance right: E[Y] = sigma / (1 - xi).
  return { xi, sigma: xi === -k ? sigma : a0 * (1 - xi) };
}

export class Calibrator {
  private constructor(private readonly s: CalibratorState) {}

  /** Fits on learning values; `tailQuantile` is where the GPD takes over (default 0.9). */
  static fit(values: readonly number[], tailQuantile = 0.9): Calibrator {
    const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
    if (finite.length === 0) throw new Error('cannot calibrate on no values');
    const n = finite.length;
    const uIndex = Math.min(n - 1, Math.floor(tailQuantile * (n - 1)));
    const u = finite[uIndex];
    const exceed = finite.filter((v) => v > u).map((v) => v - u);
    const spread = finite[n - 1] - finite[0];
    const floor = Math.max(1e-9, 1e-6 * Math.abs(u), 1e-3 * spread);
    let { xi, sigma } = exceed.length > 0 ? fitGpd(exceed) : { xi: 0, sigma: 0 };
    if (!(sigma > floor)) sigma = floor;
    if (exceed.length === 0) xi = 0;
    const body = finite.slice(0, uIndex + 1);
    const thinned =
      body.length <= BODY_POINTS
        ? body
        : Array.from(
            { length: BODY_POINTS },
            (_, i) => body[Math.round((i * (body.length - 1)) / (BODY_POINTS - 1))],
          );
    return new Calibrator({
      body: thinned,
      count: n,
      u,
      tailFraction: Math.max(exceed.length, 1) / (n + 1),
      xi,
      sigma,
      tolerance: floor,
    });
  }

  /** A calibrator for statistics that are surprises already. */
  static passthrough(): Calibrator {
    return new Calibrator({ body: [0], count: 0, u: 0, tailFraction: 1, xi: 0, sigma: 1, passthrough: true });
  }

  static fromState(state: CalibratorState): Calibrator {
    return new Calibrator({ ...state, body: state.body.slice() });
  }

  state(): CalibratorState {
    return { ...this.s, body: this.s.body.slice() };
  }

  /** P(X >= x) under the learning distribution, in [MIN_TAIL_PROBABILITY, 1]. */
  tailProbability(x: number): number {
    const { body, u, tailFraction, xi, sigma } = this.s;
    if (Number.isNaN(x)) return 1;
    if (this.s.passthrough) return Math.max(MIN_TAIL_PROBABILITY, Math.pow(10, -Math.max(0, x)));
    if (x > u + (this.s.tolerance ?? 0)) {
      const z = (x - u) / sigma;
      const p = xi > 1e-9 ? tailFraction * Math.pow(1 + xi * z, -1 / xi) : tailFraction * Math.exp(-z);
      return Math.max(MIN_TAIL_PROBABILITY, p);
    }
    // Empirical survival function of the body, scaled to join the tail continuously at u.
    let lo = 0;
    let hi = body.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (body[mid] < x) lo = mid + 1;
      else hi = mid;
    }
    const below = x > u ? 1 : lo / body.length;
    return Math.min(1, tailFraction + (1 - tailFraction) * (1 - below));
  }

  /**
   * -log10 P(X >= x), computed in the log domain beyond the tail threshold so that values far
   * beyond anything seen keep distinct, ordered surprises (no floor on the probability).
   */
  surprise(x: number): number {
    const { u, tailFraction, xi, sigma } = this.s;
    if (Number.isNaN(x)) return 0;
    if (this.s.passthrough) return Math.max(0, x);
    if (x > u + (this.s.tolerance ?? 0)) {
      const z = (x - u) / sigma;
      const decades = xi > 1e-9 ? Math.log10(1 + xi * z) / xi : z / Math.LN10;
      return -Math.log10(tailFraction) + decades;
    }
    return -Math.log10(this.tailProbability(x));
  }

  /** The calibrated score of a raw value (see scoreOfSurprise). */
  score(x: number): number {
    return scoreOfSurprise(this.surprise(x));
  }

  /** The raw value whose tail probability is `p` (inverse of the tail), for reporting thresholds. */
  rawAt(p: number): number {
    const { u, tailFraction, xi, sigma, body } = this.s;
    if (p < tailFraction) {
      const r = p / tailFraction;
      return xi > 1e-9 ? u + (sigma / xi) * (Math.pow(r, -xi) - 1) : u - sigma * Math.log(r);
    }
    const below = 1 - (p - tailFraction) / (1 - tailFraction);
    return body[Math.min(body.length - 1, Math.max(0, Math.floor(below * body.length)))];
  }
}

/** Surprise (-log10 p) at which the score is 0.5: one normal sample in 1000 is this unusual. */
export const HALF_SCORE_SURPRISE = 3;

/**
 * Maps a surprise s = -log10(p) to a score in [0, 1): s / (s + 3). 0.25 means one normal
 * sample in 10 is that unusual, 0.5 one in 1000, 0.67 one in a million, 0.83 one in 10^15.
 * It never reaches 1, so the strongest anomalies keep their order (no flat stretches at 1.0),
 * and the same score means the same rarity for every method.
 */
export function scoreOfSurprise(s: number): number {
  if (!(s > 0)) return 0;
  if (s === Infinity) return 1;
  return s / (s + HALF_SCORE_SURPRISE);
}

/** The surprise a score stands for (inverse of scoreOfSurprise). */
export function surpriseOf(score: number): number {
  if (!(score > 0)) return 0;
  return score >= 1 ? Infinity : (HALF_SCORE_SURPRISE * score) / (1 - score);
}

/** The score of a tail probability p (see scoreOfSurprise). */
export function scoreOf(p: number): number {
  if (!(p < 1)) return 0;
  return scoreOfSurprise(-Math.log10(Math.max(p, Number.MIN_VALUE)));
}

/** The tail probability a score stands for (inverse of scoreOf). */
export function probabilityOf(score: number): number {
  return Math.pow(10, -surpriseOf(score));
}

/**
 * Combines the surprises of k statistics watched together (Šidák on the largest), in the log
 * domain so that probabilities far below 1e-300 keep their order.
 */
export function combineSurprise(surprises: readonly number[]): number {
  let max = 0;
  let k = 0;
  for (const s of surprises) {
    if (Number.isNaN(s)) continue;
    k++;
    if (s > max) max = s;
  }
  if (k <= 1) return max;
  // 1 - (1 - p)^k is k p within 1e-12 relative once p < 1e-12.
  if (max > 12) return max - Math.log10(k);
  const p = Math.pow(10, -max);
  return -Math.log10(-Math.expm1(k * Math.log1p(-Math.min(p, 1 - 1e-16))));
}

/** Combines the tail probabilities of k statistics watched together (Šidák on the smallest). */
export function combineMin(probabilities: readonly number[]): number {
  let min = 1;
  let k = 0;
  for (const p of probabilities) {
    if (Number.isNaN(p)) continue;
    k++;
    if (p < min) min = p;
  }
  if (k <= 1) return min;
  // 1 - (1 - p)^k, computed stably for small p.
  return Math.max(MIN_TAIL_PROBABILITY, -Math.expm1(k * Math.log1p(-Math.min(min, 1 - 1e-16))));
}
