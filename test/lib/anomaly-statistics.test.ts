import assert from 'node:assert/strict';
import { Calibrator, combineMin, fitGpd, probabilityOf, scoreOf } from '../../lib/anomaly/calibrate';
import { Decision } from '../../lib/anomaly/decision';
import { Featurizer, lowFrequencyShare, persistentChannels } from '../../lib/anomaly/features';
import { inverseSymmetric, mad, median, symmetricEigen } from '../../lib/anomaly/linalg';
import { MahalanobisModel, PcaModel, UnivariateModel } from '../../lib/anomaly/stat-models';
import { gaussian, prng } from '../helpers/signals';

function close(actual: number, expected: number, tolerance = 1e-9, what = ''): void {
  assert.ok(
    Math.abs(actual - expected) <= tolerance * Math.max(1, Math.abs(expected)),
    `${what} ${actual} != ${expected}`,
  );
}

/** Correlated 2-D data: x, and y = r x + sqrt(1 - r²) noise. */
function correlated(n: number, r: number, seed: number): number[][] {
  const g = gaussian(prng(seed));
  return Array.from({ length: n }, () => {
    const x = g();
    return [3 + 2 * x, -1 + 0.5 * (r * x + Math.sqrt(1 - r * r) * g())];
  });
}

function columnStats(rows: number[][], j: number): { mean: number; sd: number } {
  const v = rows.map((r) => r[j]);
  const mean = v.reduce((a, b) => a + b, 0) / v.length;
  const sd = Math.sqrt(v.reduce((a, x) => a + (x - mean) ** 2, 0) / (v.length - 1));
  return { mean, sd };
}

describe('anomaly statistics: known answers', () => {
  it('rolling z-score equals (mean of the window - learned mean) / learned sd', async () => {
    const g = gaussian(prng(1));
    const rows = Array.from({ length: 200 }, () => [10 + g(), -5 + 3 * g()]);
    const features = Featurizer.run('mean', 5, 0, rows);
    assert.equal(features.length, 196);
    // Direct: the mean of rows 0..4 is the first feature.
    for (let j = 0; j < 2; j++) close(features[0][j], rows.slice(0, 5).reduce((a, r) => a + r[j], 0) / 5);
    const model = UnivariateModel.fit(features, false, ['a', 'b']);
    const probe = [12, -1];
    const [stats] = await model.evaluate([probe]);
    for (let j = 0; j < 2; j++) {
      const { mean, sd } = columnStats(features, j);
      close(stats[j], Math.abs(probe[j] - mean) / sd, 1e-9, `channel ${j}`);
    }
  });

  it('EWMA feature follows m = m + alpha (x - m) from the first sample', () => {
    const xs = [4, 8, 6, 10, 2];
    const features = Featurizer.run(
      'ewma',
      1,
      0.25,
      xs.map((x) => [x]),
    );
    let m = xs[0];
    xs.forEach((x, i) => {
      if (i > 0) m += 0.25 * (x - m);
      close(features[i][0], m);
    });
  });

  it('median / MAD: robust z = |x - median| / (1.4826 MAD)', async () => {
    const values = [1, 2, 3, 4, 100, 5, 3, 2];
    assert.equal(median(values), 3);
    close(mad(values), 1.4826 * 1);
    const model = UnivariateModel.fit(
      values.map((v) => [v]),
      true,
      ['x'],
    );
    const [[z]] = await model.evaluate([[10]]);
    close(z, 7 / 1.4826);
  });

  it('Mahalanobis distance equals the direct 2 x 2 inverse', async () => {
    const rows = correlated(500, 0.8, 2);
    const model = MahalanobisModel.fit(rows, 0);
    const a = columnStats(rows, 0);
    const b = columnStats(rows, 1);
    let cov = 0;
    for (const r of rows) cov += (r[0] - a.mean) * (r[1] - b.mean);
    cov /= rows.length - 1;
    const saa = a.sd ** 2;
    const sbb = b.sd ** 2;
    const det = saa * sbb - cov * cov;
    const probe = [5, 0.2];
    const dx = probe[0] - a.mean;
    const dy = probe[1] - b.mean;
    const direct = (sbb * dx * dx - 2 * cov * dx * dy + saa * dy * dy) / det;
    const [[d2]] = await model.evaluate([probe]);
    close(d2, direct, 1e-8);
  });

  it('Hotelling T² and SPE on PCA equal the analytic 2-D decomposition', () => {
    // Standardised 2-D data with correlation r has eigenvectors (1, 1)/√2 and (1, -1)/√2 with
    // eigenvalues 1 ± r; at r = 0.9 the first explains 95%, so one component is kept.
    const rows = correlated(2000, 0.9, 3);
    const model = PcaModel.fit(rows, 0.9);
    assert.equal(model.components.length, 1);
    const a = columnStats(rows, 0);
    const b = columnStats(rows, 1);
    let r = 0;
    for (const row of rows) r += ((row[0] - a.mean) / a.sd) * ((row[1] - b.mean) / b.sd);
    r /= rows.length - 1;
    for (const probe of [
      [4, -0.5],
      [0, 1],
      [7, -2],
    ]) {
      const z1 = (probe[0] - a.mean) / a.sd;
      const z2 = (probe[1] - b.mean) / b.sd;
      const t = (z1 + z2) / Math.SQRT2;
      const residual = (z1 - z2) / Math.SQRT2;
      const [t2, spe] = model.statisticsOf(probe);
      close(t2, (t * t) / (1 + r), 1e-8, 'T²');
      close(spe, residual * residual, 1e-8, 'SPE');
    }
  });

  it('eigen decomposition and inverse satisfy A v = λ v and A A⁻¹ = I', () => {
    const a = [
      [4, 1, 0.5],
      [1, 3, 0.2],
      [0.5, 0.2, 2],
    ];
    const { values, vectors } = symmetricEigen(a);
    values.forEach((lambda, k) => {
      const v = vectors[k];
      for (let i = 0; i < 3; i++)
        close(
          a[i].reduce((s, aij, j) => s + aij * v[j], 0),
          lambda * v[i],
          1e-10,
        );
    });
    assert.ok(values[0] >= values[1] && values[1] >= values[2]);
    const inv = inverseSymmetric(a);
    for (let i = 0; i < 3; i++)
      for (let j = 0; j < 3; j++)
        close(
          a[i].reduce((s, aik, k) => s + aik * inv[k][j], 0),
          i === j ? 1 : 0,
          1e-10,
        );
  });

  it('level-change feature: rolling mean of every channel, plus the change of a wandering one', () => {
    const rows = Array.from({ length: 8 }, (_, t) => [t % 2, 10 + t]);
    const f = Featurizer.run('level-change', 3, 0, rows, [false, true]);
    // First feature from rows 0..5: the means of rows 3..5, then channel 1's mean(3..5) - mean(0..2).
    assert.equal(f[0].length, 3);
    close(f[0][0], (1 + 0 + 1) / 3);
    close(f[0][1], 14);
    close(f[0][2], 14 - 11);
    const g = gaussian(prng(4));
    let walk = 0;
    const wandering = Array.from({ length: 400 }, () => [g(), (walk += 0.3 * g())]);
    assert.ok(
      lowFrequencyShare(
        wandering.map((r) => r[0]),
        10,
      ) < 0.3,
    );
    assert.deepEqual(persistentChannels(wandering, 10, 0.4), [false, true]);
  });

  it('spread feature is the log of the rolling standard deviation plus its floor', () => {
    const rows = [[1], [3], [5], [7]];
    const f = Featurizer.run('spread', 4, 0, rows, [], [0.5]);
    close(f[0][0], Math.log(Math.sqrt(5) + 0.5));
  });
});

describe('score calibration', () => {
  it('fits the generalized Pareto shape and scale of a known sample', () => {
    const rand = prng(5);
    const xi = 0.2;
    const sigma = 2;
    const sample = Array.from({ length: 20000 }, () => (sigma / xi) * (Math.pow(1 - rand(), -xi) - 1));
    const fit = fitGpd(sample);
    close(fit.xi, xi, 0.25);
    close(fit.sigma, sigma, 0.1);
  });

  it('tail probabilities match the true normal tail, beyond the data too', () => {
    const g = gaussian(prng(6));
    const values = Array.from({ length: 20000 }, () => Math.abs(g()));
    const c = Calibrator.fit(values);
    // P(|Z| >= 2) = 0.0455, P(|Z| >= 3) = 0.0027: within a factor that a 10% tail fit allows.
    const p2 = c.tailProbability(2);
    const p3 = c.tailProbability(3);
    assert.ok(p2 > 0.035 && p2 < 0.06, `p(2) = ${p2}`);
    assert.ok(p3 > 0.0015 && p3 < 0.005, `p(3) = ${p3}`);
    const p6 = c.tailProbability(6);
    assert.ok(p6 < 1e-5 && p6 > 0, `p(6) = ${p6}`);
    assert.ok(c.tailProbability(0) > 0.99);
    for (let x = 0; x < 8; x += 0.25) assert.ok(c.tailProbability(x + 0.25) <= c.tailProbability(x));
    close(c.tailProbability(c.rawAt(1e-4)), 1e-4, 1e-6);
  });

  it('maps tail probabilities to a log score that never saturates and combines channels (Šidák)', () => {
    assert.equal(scoreOf(1), 0);
    close(scoreOf(1e-3), 0.5);
    close(scoreOf(1e-9), 0.75);
    assert.ok(scoreOf(1e-30) > scoreOf(1e-20) && scoreOf(1e-30) < 1);
    close(probabilityOf(0.5), 1e-3);
    close(combineMin([0.01, 0.5]), 1 - 0.99 ** 2);
    assert.equal(combineMin([0.2]), 0.2);
  });

  it('a constant learning signal still calibrates and flags any change', () => {
    const c = Calibrator.fit(new Array(100).fill(0));
    assert.equal(c.tailProbability(0), 1);
    assert.ok(c.tailProbability(1) < 1e-9);
  });
});

describe('decision with threshold, hysteresis and minimum duration', () => {
  it('starts after minDuration scores above, ends after minDuration below the release level', () => {
    const d = new Decision({ threshold: 0.5, hysteresis: 0.2, minDuration: 3 });
    const scores = [0.6, 0.6, 0.1, 0.6, 0.6, 0.6, 0.4, 0.35, 0.2, 0.2, 0.6, 0.2, 0.2, 0.2, 0.1];
    const steps = scores.map((s, i) => d.step(s, 1000 * i, i));
    assert.deepEqual(
      steps.map((s) => (s.isAnomaly ? 1 : 0)),
      [0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0],
    );
    assert.equal(steps[5].event, 'start');
    assert.equal(steps[5].episode?.startIndex, 3);
    assert.equal(steps[13].event, 'end');
    assert.equal(steps[13].episode?.endIndex, 13);
    assert.equal(steps[13].episode?.peakScore, 0.6);
  });
});
