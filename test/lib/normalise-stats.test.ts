import assert from 'node:assert/strict';
import { EwmaStats, WelfordStats } from '../../lib/preprocess/running-stats';

import { gaussian as gaussianOf, seededRandom as random } from '../../lib/util/random';

/** One standard normal sample drawn from `rand` (seeded, so failures reproduce). */
function gaussian(rand: () => number): number {
  return gaussianOf(rand)();
}

/** Reference: mean first, then the mean squared deviation (population variance). */
function twoPass(xs: number[]): { mean: number; variance: number } {
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
  const variance = xs.reduce((s, x) => s + (x - mean) ** 2, 0) / xs.length;
  return { mean, variance };
}

function relErr(a: number, b: number): number {
  return Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);
}

describe('normalise running statistics', () => {
  describe('WelfordStats', () => {
    it('matches the two-pass mean and variance per channel', () => {
      const rand = random(1);
      const rows = Array.from({ length: 2000 }, () => [
        gaussian(rand) * 3 + 10,
        rand() * 100 - 50,
        gaussian(rand),
      ]);
      const stats = new WelfordStats(3);
      rows.forEach((r) => stats.update(r));
      assert.equal(stats.count, 2000);
      for (let c = 0; c < 3; c++) {
        const ref = twoPass(rows.map((r) => r[c]));
        assert.ok(relErr(stats.mean()[c], ref.mean) < 1e-12, `mean ch${c}`);
        assert.ok(relErr(stats.variance()[c], ref.variance) < 1e-10, `variance ch${c}`);
        assert.ok(relErr(stats.std()[c], Math.sqrt(ref.variance)) < 1e-10, `std ch${c}`);
        assert.ok(relErr(stats.sampleVariance()[c], (ref.variance * 2000) / 1999) < 1e-10);
        assert.equal(stats.min()[c], Math.min(...rows.map((r) => r[c])));
        assert.equal(stats.max()[c], Math.max(...rows.map((r) => r[c])));
      }
    });

    it('stays accurate with a large offset where the sum-of-squares formula breaks down', () => {
      const rand = random(2);
      // Pressure-like: a huge offset with a small spread (variance 0.01).
      const xs = Array.from({ length: 10000 }, () => 1e9 + gaussian(rand) * 0.1);
      const ref = twoPass(xs);
      const stats = new WelfordStats(1);
      xs.forEach((x) => stats.update([x]));
      assert.ok(relErr(stats.mean()[0], ref.mean) < 1e-12);
      assert.ok(
        relErr(stats.variance()[0], ref.variance) < 1e-6,
        `Welford ${stats.variance()[0]} vs ${ref.variance}`,
      );
      // The naive E[x^2] - E[x]^2 loses every significant digit here: the test data is hard enough.
      const naive = xs.reduce((s, x) => s + x * x, 0) / xs.length - ref.mean ** 2;
      assert.ok(relErr(naive, ref.variance) > 0.5, `naive formula unexpectedly accurate: ${naive}`);
    });

    it('is resumable from its JSON state exactly', () => {
      const rand = random(3);
      const rows = Array.from({ length: 300 }, () => [rand() * 10, gaussian(rand) + 1e6]);
      const whole = new WelfordStats(2);
      const first = new WelfordStats(2);
      rows.forEach((r, i) => {
        whole.update(r);
        if (i < 150) first.update(r);
      });
      const resumed = WelfordStats.fromJSON(JSON.parse(JSON.stringify(first)));
      rows.slice(150).forEach((r) => resumed.update(r));
      assert.deepEqual(resumed.toJSON(), whole.toJSON());
    });

    it('serialises an empty accumulator and restores it empty', () => {
      const empty = WelfordStats.fromJSON(JSON.parse(JSON.stringify(new WelfordStats(2))));
      assert.equal(empty.count, 0);
      empty.update([5, -5]);
      assert.deepEqual(empty.min(), [5, -5]);
      assert.deepEqual(empty.max(), [5, -5]);
      assert.deepEqual(empty.variance(), [0, 0]);
    });

    it('refuses the wrong number of values and corrupt states', () => {
      const stats = new WelfordStats(2);
      assert.throws(() => stats.update([1]), /expected 2 values/);
      assert.throws(() => new WelfordStats(0), RangeError);
      assert.throws(() =>
        WelfordStats.fromJSON({ kind: 'welford', count: 1, mean: [1], m2: [], min: [1], max: [1] }),
      );
      assert.throws(() => WelfordStats.fromJSON({ kind: 'ewma' }));
    });
  });

  describe('huge finite values (±1e308) while learning', () => {
    for (const [label, make] of [
      ['Welford', () => new WelfordStats(4)],
      ['EWMA', () => new EwmaStats(4, 0.1)],
    ] as const) {
      it(`${label}: refuses the sample whose statistics would overflow and stays usable`, () => {
        const stats = make();
        stats.update([1, 2, 3, 4]);
        stats.update([2, 3, 4, 5]);
        const before = JSON.stringify(stats.toJSON());
        for (const huge of [
          [1e308, -1e308, 1e308, -1e308],
          [-1e308, 1, 2, 3],
        ]) {
          assert.throws(
            () => stats.update(huge),
            (err: Error & { code?: string }) =>
              err.code === 'input-invalid' &&
              /channel 1 value -?1e\+308 is too large to learn from: its statistics would overflow/.test(
                err.message,
              ) &&
              /statistics are unchanged/.test(err.message) &&
              /msg\.reset/.test(err.message),
          );
          assert.equal(JSON.stringify(stats.toJSON()), before, 'nothing of the sample was stored');
        }
        stats.update([3, 4, 5, 6]);
        assert.equal(stats.count, 3);
        for (const v of [...stats.mean(), ...stats.variance(), ...stats.min(), ...stats.max()]) {
          assert.ok(Number.isFinite(v), `finite statistics, got ${v}`);
        }
        assert.throws(() => stats.update([NaN, 1, 2, 3]), /channel 1 is NaN/);
      });
    }
  });

  describe('EwmaStats', () => {
    it('equals the exponentially weighted mean and variance computed from their definition', () => {
      const rand = random(4);
      const alpha = 0.1;
      const xs = Array.from({ length: 60 }, () => rand() * 10 + 5);
      const ewma = new EwmaStats(1, alpha);
      xs.forEach((x) => ewma.update([x]));
      // Weights: (1-a)^n on the first sample (it initialises the mean), a(1-a)^(n-k) on sample k.
      const n = xs.length - 1;
      const w = xs.map((_, k) => (k === 0 ? (1 - alpha) ** n : alpha * (1 - alpha) ** (n - k)));
      assert.ok(Math.abs(w.reduce((s, x) => s + x, 0) - 1) < 1e-12);
      const mean = w.reduce((s, wk, k) => s + wk * xs[k], 0);
      const variance = w.reduce((s, wk, k) => s + wk * (xs[k] - mean) ** 2, 0);
      assert.ok(relErr(ewma.mean()[0], mean) < 1e-12);
      assert.ok(relErr(ewma.variance()[0], variance) < 1e-10);
      assert.equal(ewma.count, 60);
    });

    it('follows a level shift at the rate alpha sets, and its extremes forget', () => {
      const alpha = 0.2;
      const ewma = new EwmaStats(1, alpha);
      for (let i = 0; i < 50; i++) ewma.update([0]);
      ewma.update([100]); // spike
      assert.equal(ewma.max()[0], 100);
      for (let k = 1; k <= 30; k++) ewma.update([10]);
      const expectedMean = 10 - (10 - 100 * alpha) * (1 - alpha) ** 30;
      assert.ok(Math.abs(ewma.mean()[0] - expectedMean) < 1e-9);
      assert.ok(ewma.max()[0] < 11, `max should relax toward the mean, got ${ewma.max()[0]}`);
      assert.ok(ewma.min()[0] > 9, `min should relax toward the mean, got ${ewma.min()[0]}`);
      // A plain running maximum would still say 100.
    });

    it('with alpha 1 keeps only the newest sample', () => {
      const ewma = new EwmaStats(2, 1);
      ewma.update([1, 2]);
      ewma.update([7, -3]);
      assert.deepEqual(ewma.mean(), [7, -3]);
      assert.deepEqual(ewma.variance(), [0, 0]);
    });

    it('resumes from JSON and rejects an invalid alpha', () => {
      const a = new EwmaStats(1, 0.3);
      const b = new EwmaStats(1, 0.3);
      [3, 4, 8].forEach((x) => a.update([x]));
      [3, 4].forEach((x) => b.update([x]));
      const resumed = EwmaStats.fromJSON(JSON.parse(JSON.stringify(b)));
      resumed.update([8]);
      assert.deepEqual(resumed.toJSON(), a.toJSON());
      assert.throws(() => new EwmaStats(1, 0), RangeError);
      assert.throws(() => new EwmaStats(1, 1.5), RangeError);
    });
  });
});
