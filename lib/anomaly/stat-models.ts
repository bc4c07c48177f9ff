/**
 * Statistical models fitted on the learning period's feature vectors. Each returns one or
 * more raw statistics per feature vector (larger = more unusual); the detector calibrates
 * every statistic separately and combines their tail probabilities.
 */

import {
  covariance,
  inverseSymmetric,
  mad,
  mean,
  median,
  quadraticForm,
  symmetricEigen,
  variance,
  type SquareMatrix,
  type Vector,
} from './linalg';
import { NeighbourModel, type NeighbourState } from './neighbours';

export interface ScoreModel {
  /** Names of the raw statistics `evaluate` returns, in order. */
  readonly statistics: string[];
  /** Raw statistics for each feature vector. */
  evaluate(features: readonly number[][]): Promise<number[][]>;
  /**
   * Moves the model towards a feature vector judged normal, with weight `rate` (0..1); a model
   * with a learned spread per statistic may widen it with weight `spreadRate`.
   */
  update(feature: readonly number[], rate: number, spreadRate?: number): void;
  state(): ScoreModelState;
  dispose(): Promise<void>;
}

export type ScoreModelState =
  | {
      type: 'univariate';
      robust: boolean;
      centre: number[];
      scale: number[];
      channels: string[];
      learnedScale?: number[];
      variance?: number[];
    }
  | {
      type: 'pca';
      mean: number[];
      scale: number[];
      components: number[][];
      eigenvalues: number[];
    }
  | { type: 'mahalanobis'; mean: number[]; precision: number[][] }
  | NeighbourState
  | { type: 'sequence' | 'external'; [key: string]: unknown };

/** A scale never collapses to zero: a channel constant during learning still gets finite scores. */
export function scaleFloor(scale: number, centre: number): number {
  const floor = Math.max(1e-9, 1e-6 * Math.abs(centre));
  return Number.isFinite(scale) && scale > floor ? scale : floor;
}

/**
 * Per-channel |x - centre| / scale: mean and standard deviation, or median and MAD when
 * `robust`. One statistic per channel, so a single deviating channel is not diluted by the
 * others and a channel that wanders even in normal operation is judged against its own spread.
 */
/** Largest factor by which a z-score statistic's spread widens after learning. */
export const MAX_SPREAD_GROWTH = 1.5;

export class UnivariateModel implements ScoreModel {
  readonly statistics: string[];

  /** The spread of the learning period, and the running variance of later normal features. */
  private readonly learnedScale: number[];
  private readonly variance: number[];

  constructor(
    readonly robust: boolean,
    private centre: number[],
    private scale: number[],
    channels: string[],
    adapted?: { learnedScale: number[]; variance: number[] },
  ) {
    this.statistics = channels;
    this.learnedScale = adapted?.learnedScale.slice() ?? scale.slice();
    this.variance = adapted?.variance.slice() ?? scale.map((s) => s * s);
  }

  static fit(features: readonly number[][], robust: boolean, channels: string[]): UnivariateModel {
    const d = features[0].length;
    const centre: number[] = [];
    const scale: number[] = [];
    for (let j = 0; j < d; j++) {
      const column = features.map((f) => f[j]);
      const c = robust ? median(column) : column.reduce((a, b) => a + b, 0) / column.length;
      const s = robust ? mad(column, c) : Math.sqrt(variance(column, c));
      centre.push(c);
      scale.push(scaleFloor(s, c));
    }
    return new UnivariateModel(robust, centre, scale, channels);
  }

  zScores(feature: readonly number[]): number[] {
    return feature.map((v, j) => (v - this.centre[j]) / this.scale[j]);
  }

  async evaluate(features: readonly number[][]): Promise<number[][]> {
    // Below 1e-6 a z-score is rounding noise of a feature that was constant while learning.
    return features.map((f) => this.zScores(f).map((z) => (Math.abs(z) < 1e-6 ? 0 : Math.abs(z))));
  }

  /**
   * Follows a slowly moving level and, with `spreadRate`, a spread wider than the learning period
   * showed (a short learning period rarely sees all of normal operation). The spread grows at
   * most to MAX_SPREAD_GROWTH times the learned one and never shrinks below it, so a slow climb far
   * beyond the learned range still alarms. A robust model's spread (a median) stays as learned.
   */
  update(feature: readonly number[], rate: number, spreadRate = 0): void {
    for (let j = 0; j < feature.length; j++) {
      const deviation = feature[j] - this.centre[j];
      this.centre[j] += rate * deviation;
      if (!(spreadRate > 0) || this.robust) continue;
      const learned = this.learnedScale[j];
      this.variance[j] = (1 - spreadRate) * this.variance[j] + spreadRate * deviation ** 2;
      this.scale[j] = Math.min(MAX_SPREAD_GROWTH * learned, Math.max(learned, Math.sqrt(this.variance[j])));
    }
  }

  state(): ScoreModelState {
    return {
      type: 'univariate',
      robust: this.robust,
      centre: this.centre.slice(),
      scale: this.scale.slice(),
      channels: this.statistics.slice(),
      learnedScale: this.learnedScale.slice(),
      variance: this.variance.slice(),
    };
  }

  async dispose(): Promise<void> {}
}

/**
 * PCA on standardised features: Hotelling's T² in the retained principal subspace and the
 * squared prediction error (SPE, Q statistic) of the residual.
 */
export class PcaModel implements ScoreModel {
  readonly statistics = ['t2', 'spe'];

  constructor(
    private readonly mu: number[],
    private readonly scale: number[],
    /** Retained loadings, one unit vector per component. */
    readonly components: number[][],
    readonly eigenvalues: number[],
  ) {}

  /** Keeps the leading components that explain `explained` of the variance (at least one). */
  static fit(features: readonly number[][], explained = 0.9): PcaModel {
    const mu = mean(features as Vector[]);
    const d = mu.length;
    const scale = mu.map((m, j) =>
      scaleFloor(
        Math.sqrt(
          variance(
            features.map((f) => f[j]),
            m,
          ),
        ),
        m,
      ),
    );
    const z = features.map((f) => f.map((v, j) => (v - mu[j]) / scale[j]));
    const { values, vectors } = symmetricEigen(covariance(z, new Array<number>(d).fill(0)));
    const total = values.reduce((a, b) => a + Math.max(0, b), 0) || 1;
    let keep = 0;
    let acc = 0;
    while (keep < d && (keep === 0 || acc / total < explained)) {
      acc += Math.max(0, values[keep]);
      keep++;
    }
    // Leave at least one dimension for the residual when there is more than one channel.
    if (d > 1) keep = Math.min(keep, d - 1);
    const floor = 1e-9 * Math.max(values[0], 1e-9);
    return new PcaModel(
      mu,
      scale,
      vectors.slice(0, keep),
      values.slice(0, keep).map((v) => Math.max(v, floor)),
    );
  }

  standardise(feature: readonly number[]): number[] {
    return feature.map((v, j) => (v - this.mu[j]) / this.scale[j]);
  }

  /** [T², SPE] of one feature vector. */
  statisticsOf(feature: readonly number[]): [number, number] {
    const z = this.standardise(feature);
    let t2 = 0;
    const projected = new Array<number>(z.length).fill(0);
    this.components.forEach((p, k) => {
      let t = 0;
      for (let j = 0; j < z.length; j++) t += p[j] * z[j];
      t2 += (t * t) / this.eigenvalues[k];
      for (let j = 0; j < z.length; j++) projected[j] += t * p[j];
    });
    let spe = 0;
    for (let j = 0; j < z.length; j++) spe += (z[j] - projected[j]) ** 2;
    return [t2, spe];
  }

  async evaluate(features: readonly number[][]): Promise<number[][]> {
    return features.map((f) => this.statisticsOf(f));
  }

  update(feature: readonly number[], rate: number): void {
    for (let j = 0; j < feature.length; j++) this.mu[j] += rate * (feature[j] - this.mu[j]);
  }

  state(): ScoreModelState {
    return {
      type: 'pca',
      mean: this.mu.slice(),
      scale: this.scale.slice(),
      components: this.components.map((c) => c.slice()),
      eigenvalues: this.eigenvalues.slice(),
    };
  }

  async dispose(): Promise<void> {}
}

/**
 * Squared Mahalanobis distance to the learning mean. The covariance is shrunk slightly
 * towards its diagonal so that nearly collinear channels do not make it singular.
 */
export class MahalanobisModel implements ScoreModel {
  readonly statistics = ['d2'];

  constructor(
    private readonly mu: number[],
    private readonly precision: SquareMatrix,
  ) {}

  static fit(features: readonly number[][], shrinkage = 0.05): MahalanobisModel {
    const mu = mean(features as Vector[]);
    const cov = covariance(features as Vector[], mu);
    const d = mu.length;
    for (let i = 0; i < d; i++) {
      const v = scaleFloor(Math.sqrt(Math.max(cov[i][i], 0)), mu[i]) ** 2;
      for (let j = 0; j < d; j++) cov[i][j] = i === j ? v : (1 - shrinkage) * cov[i][j];
    }
    return new MahalanobisModel(mu, inverseSymmetric(cov));
  }

  distanceSquared(feature: readonly number[]): number {
    return quadraticForm(
      this.precision,
      feature.map((v, j) => v - this.mu[j]),
    );
  }

  async evaluate(features: readonly number[][]): Promise<number[][]> {
    return features.map((f) => [this.distanceSquared(f)]);
  }

  update(feature: readonly number[], rate: number): void {
    for (let j = 0; j < feature.length; j++) this.mu[j] += rate * (feature[j] - this.mu[j]);
  }

  state(): ScoreModelState {
    return { type: 'mahalanobis', mean: this.mu.slice(), precision: this.precision.map((r) => r.slice()) };
  }

  async dispose(): Promise<void> {}
}

export function restoreStatModel(s: ScoreModelState): ScoreModel {
  switch (s.type) {
    case 'univariate':
      return new UnivariateModel(
        s.robust,
        s.centre.slice(),
        s.scale.slice(),
        s.channels.slice(),
        s.learnedScale && s.variance ? { learnedScale: s.learnedScale, variance: s.variance } : undefined,
      );
    case 'pca':
      return new PcaModel(
        s.mean.slice(),
        s.scale.slice(),
        s.components.map((c) => c.slice()),
        s.eigenvalues.slice(),
      );
    case 'mahalanobis':
      return new MahalanobisModel(
        s.mean.slice(),
        s.precision.map((r) => r.slice()),
      );
    case 'neighbours':
      return NeighbourModel.fromState(s);
    default:
      throw new Error(`cannot restore a ${s.type} model here`);
  }
}
