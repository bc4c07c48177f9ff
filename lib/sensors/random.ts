/** A small seeded PRNG (mulberry32) so simulated signals and faults are repeatable. */
export class SeededRandom {
  private state: number;
  private spareGaussian: number | undefined;

  constructor(seed = 1) {
    this.state = seed >>> 0 || 0x9e3779b9;
  }

  /** Uniform in [0, 1). */
  next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** Standard normal (Box-Muller), times `sigma`. */
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
