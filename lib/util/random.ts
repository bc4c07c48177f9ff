/**
 * The one seeded pseudo-random generator of the package (mulberry32): simulated signals and
 * faults, dataset splits and augmentation, and training initialisation repeat for a given seed.
 */

/** One mulberry32 output for an already advanced state, uniform in [0, 1). */
function mulberry32Output(state: number): number {
  let t = state;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
}

const MULBERRY32_INCREMENT = 0x6d2b79f5;

/** A seeded uniform generator in [0, 1) as a plain function. */
export function seededRandom(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + MULBERRY32_INCREMENT) >>> 0;
    return mulberry32Output(state);
  };
}

/** Standard normal samples (Box-Muller, one per pair of uniforms) from a uniform generator. */
export function gaussian(uniform: () => number): () => number {
  return () => Math.sqrt(-2 * Math.log(1 - uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** A seeded generator with Gaussian samples and forks, for simulators with several streams. */
export class SeededRandom {
  private state: number;
  private spareGaussian: number | undefined;

  constructor(seed = 1) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + MULBERRY32_INCREMENT) >>> 0;
    return mulberry32Output(this.state);
  }

  /** Standard normal (Box-Muller, both values of a pair used), times `sigma`. */
  gaussian(sigma = 1): number {
    if (this.spareGaussian !== undefined) {
      const value = this.spareGaussian;
      this.spareGaussian = undefined;
      return value * sigma;
    }
    let u = 0;
    while (u === 0) u = this.next();
    const v = this.next();
    const radius = Math.sqrt(-2 * Math.log(u));
    this.spareGaussian = radius * Math.sin(2 * Math.PI * v);
    return radius * Math.cos(2 * Math.PI * v) * sigma;
  }

  /** A derived generator, so one seed can feed several independent streams. */
  fork(salt: number): SeededRandom {
    return new SeededRandom((Math.imul(this.state ^ salt, 0x85ebca6b) ^ salt) >>> 0);
  }
}
