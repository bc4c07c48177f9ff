import assert from 'node:assert/strict';
import { MAX_SHAPE, fitGpd } from '../../lib/anomaly/calibrate';
import { prng } from '../helpers/signals';

/** n draws of a generalized Pareto distribution (inverse transform); xi = 0 is the exponential. */
function gpdSample(xi: number, sigma: number, n: number, seed: number): number[] {
  const rand = prng(seed);
  return Array.from({ length: n }, () => {
    const u = 1 - rand();
    return xi === 0 ? -sigma * Math.log(u) : (sigma / xi) * (Math.pow(u, -xi) - 1);
  });
}

const mean = (v: number[]) => v.reduce((a, b) => a + b, 0) / v.length;

/**
 * An oracle that can fail: inside the range the fit uses (0..MAX_SHAPE) the shape must come out
 * within a few standard errors of the truth (the PWM standard error at n = 20000 is about 0.01),
 * and outside it the fit must sit exactly on the bound with the mean exceedance kept.
 */
describe('GPD fit: shape and scale against known distributions', () => {
  for (const [xi, sigma] of [
    [0.05, 1],
    [0.12, 2],
    [0.2, 0.5],
  ]) {
    it(`recovers shape ${xi} and scale ${sigma} closely (three seeds)`, () => {
      for (const seed of [1, 2, 3]) {
        const fit = fitGpd(gpdSample(xi, sigma, 20000, seed));
        assert.ok(Math.abs(fit.xi - xi) < 0.04, `seed ${seed}: shape ${fit.xi.toFixed(3)} vs ${xi}`);
        assert.ok(
          Math.abs(fit.sigma / sigma - 1) < 0.05,
          `seed ${seed}: scale ${fit.sigma.toFixed(3)} vs ${sigma}`,
        );
      }
    });
  }

  it('the shape of an exponential tail is (near) 0, never negative', () => {
    for (const seed of [4, 5, 6]) {
      const fit = fitGpd(gpdSample(0, 3, 20000, seed));
      assert.ok(fit.xi >= 0 && fit.xi < 0.03, `shape ${fit.xi}`);
      assert.ok(Math.abs(fit.sigma / 3 - 1) < 0.05, `scale ${fit.sigma}`);
    }
  });

  it('a heavier tail is clamped to MAX_SHAPE and a bounded one to 0, keeping the mean exceedance', () => {
    const heavy = gpdSample(0.6, 1, 20000, 7);
    const h = fitGpd(heavy);
    assert.equal(h.xi, MAX_SHAPE);
    assert.ok(
      Math.abs(h.sigma / (1 - h.xi) / mean(heavy) - 1) < 1e-9,
      'E[Y] = sigma / (1 - xi) = sample mean',
    );
    const bounded = gpdSample(-0.4, 1, 20000, 8);
    const b = fitGpd(bounded);
    assert.equal(b.xi, 0);
    assert.ok(Math.abs(b.sigma / mean(bounded) - 1) < 1e-9);
  });
});
