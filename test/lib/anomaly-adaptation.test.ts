import assert from 'node:assert/strict';
import {
  Calibrator,
  combineSurprise,
  probabilityOf,
  scoreOf,
  scoreOfSurprise,
} from '../../lib/anomaly/calibrate';
import {
  AnomalyDetector,
  DEFAULT_OPTIONS,
  type DetectorOptions,
  type DetectorResult,
} from '../../lib/anomaly/detector';
import { Likelihood, normalTailSurprise } from '../../lib/anomaly/likelihood';
import { periodOf } from '../../lib/anomaly/neighbours';
import { gaussian, prng } from '../helpers/signals';

/** One noisy channel at level 10 (sd 1) with `shift` added from sample `onset` on. */
function steps(n: number, onset: number, shift: (t: number) => number, seed = 5): number[] {
  const g = gaussian(prng(seed));
  return Array.from({ length: n }, (_, t) => 10 + g() + (t >= onset ? shift(t - onset) : 0));
}

async function feed(detector: AnomalyDetector, values: number[]): Promise<DetectorResult[]> {
  const out: DetectorResult[] = [];
  for (let t = 0; t < values.length; t++) out.push(await detector.process([values[t]], ['x'], t * 1000));
  return out;
}

// One channel under 'auto' is watched by its shape (knn, learning all the time); these tests
// are about re-learning and episodes of a model that stays fixed, so they use the z-score.
const BASE: Partial<DetectorOptions> = { method: 'zscore', learningSamples: 300, suppress: 0, likelihood: 0 };

describe('anomaly scores keep ranking', () => {
  it('maps 1 in 1000 to 0.5 and never reaches 1', () => {
    assert.ok(Math.abs(scoreOf(1e-3) - 0.5) < 1e-12);
    assert.ok(Math.abs(probabilityOf(0.5) - 1e-3) < 1e-15);
    let previous = 0;
    for (const p of [1e-2, 1e-6, 1e-15, 1e-30, 1e-100, 1e-300]) {
      const s = scoreOf(p);
      assert.ok(s > previous && s < 1, `score of ${p}: ${s}`);
      previous = s;
    }
  });

  it('orders raw values far beyond the learned tail (no floor on the probability)', () => {
    const g = gaussian(prng(3));
    const c = Calibrator.fit(Array.from({ length: 500 }, () => Math.abs(g())));
    const surprises = [5, 50, 500, 1e6].map((x) => c.surprise(x));
    for (let i = 1; i < surprises.length; i++)
      assert.ok(surprises[i] > surprises[i - 1] + 1, String(surprises));
    assert.ok(surprises[3] > 15, 'beyond the old 1e-15 floor');
    assert.ok(scoreOfSurprise(surprises[3]) < 1);
  });

  it('combines statistics in the log domain (Šidák on the largest)', () => {
    assert.ok(Math.abs(combineSurprise([2, 0.1]) - -Math.log10(1 - 0.99 ** 2)) < 1e-9);
    assert.ok(Math.abs(combineSurprise([40, 1]) - (40 - Math.log10(2))) < 1e-9);
    assert.equal(combineSurprise([]), 0);
  });

  it('ranks a larger level shift above a smaller one', async () => {
    const peak = async (size: number): Promise<number> => {
      const d = new AnomalyDetector(BASE);
      const r = await feed(
        d,
        steps(600, 400, () => size),
      );
      await d.dispose();
      return Math.max(...r.slice(400, 450).map((x) => x.score));
    };
    const [small, large, huge] = [await peak(6), await peak(30), await peak(300)];
    assert.ok(small >= 0.5 && small < large && large < huge && huge < 1, `${small} ${large} ${huge}`);
  });
});

describe('anomaly detector adapts after a lasting change', () => {
  it('re-learns once an episode outlasts relearnAfter and then treats the new level as normal', async () => {
    const d = new AnomalyDetector({ ...BASE, relearnAfter: 200 });
    const r = await feed(
      d,
      steps(1400, 500, () => 8),
    );
    const relearned = r.findIndex((x) => x.details.relearned);
    assert.ok(relearned > 500 + 190 && relearned < 500 + 260, `re-learned at ${relearned}`);
    assert.equal(r[relearned].details.event, 'end');
    assert.equal(r[relearned].isAnomaly, false);
    assert.ok(
      r.slice(500, relearned).every((x, i) => i < 20 || x.isAnomaly),
      'in alarm until then',
    );
    const after = r.slice(relearned + 1).filter((x) => x.isAnomaly).length;
    assert.ok(after < 10, `${after} alarms on the new normal`);
    await d.dispose();
  });

  it('keeps a broken machine in alarm when keepAlarm is set', async () => {
    const d = new AnomalyDetector({ ...BASE, relearnAfter: 200, keepAlarm: true });
    const r = await feed(
      d,
      steps(1400, 500, () => 8),
    );
    assert.ok(!r.some((x) => x.details.relearned));
    assert.ok(r.slice(520).every((x) => x.isAnomaly));
    await d.dispose();
  });

  it('re-learns after relearnMs of message time when set', async () => {
    const d = new AnomalyDetector({ ...BASE, relearnAfter: 0, relearnMs: 100_000 });
    const r = await feed(
      d,
      steps(900, 500, () => 8),
    );
    const relearned = r.findIndex((x) => x.details.relearned);
    assert.ok(relearned > 500 + 95 && relearned < 500 + 130, `re-learned at ${relearned}`);
    await d.dispose();
  });

  it('ends an episode once the data is back to normal', async () => {
    const d = new AnomalyDetector({ ...BASE, relearnAfter: 0 });
    const r = await feed(
      d,
      steps(1200, 500, (t) => (t < 150 ? 8 : 0)),
    );
    const end = r.findIndex((x, t) => t > 500 && x.details.event === 'end');
    assert.ok(end > 650 && end < 650 + 40, `episode ended at ${end}`);
    assert.equal(r.slice(end).filter((x) => x.isAnomaly).length, 0);
    await d.dispose();
  });

  it('judges a slowly wandering channel on its level as well as its changes', async () => {
    // A random walk during learning (a wandering temperature), then a slow climb far beyond it.
    const g = gaussian(prng(9));
    let level = 0;
    const values = Array.from({ length: 1500 }, (_, t) => {
      level = 0.995 * level + 0.05 * g();
      return 20 + level + 0.02 * g() + (t >= 600 ? Math.min(6, 0.01 * (t - 600)) : 0);
    });
    // Two channels: 'auto' watches each one's level and spread (the second is plain noise).
    const noise = gaussian(prng(10));
    const d = new AnomalyDetector({ ...BASE, method: 'auto', relearnAfter: 0 });
    const r: DetectorResult[] = [];
    for (let t = 0; t < values.length; t++)
      r.push(await d.process([values[t], 5 + noise()], ['x', 'y'], t * 1000));
    assert.ok(r[400].details.statistics && 'x:change' in r[400].details.statistics, 'change watched');
    assert.equal(r.slice(300, 600).filter((x) => x.isAnomaly).length, 0, 'no alarm while wandering');
    assert.ok(
      r.slice(1300).every((x) => x.isAnomaly),
      'a lasting level far outside the learned range alarms',
    );
    await d.dispose();
  });
});

describe('anomaly detector widens a spread the learning period saw too narrow', () => {
  /** Noise of sd 1 while learning, `wider` times that afterwards, and a step of 6 at the end. */
  async function run(spreadShare: number, wider: number): Promise<{ alarms: number; stepAfter: number }> {
    const g = gaussian(prng(7));
    const d = new AnomalyDetector({ ...BASE, relearnAfter: 0, spreadShare });
    let alarms = 0;
    let stepAfter = -1;
    for (let t = 0; t < 4300; t++) {
      const v = 10 + (t < 300 ? 1 : wider) * g() + (t >= 3800 ? 6 : 0);
      const r = await d.process([v], ['x'], t * 1000);
      if (t >= 1300 && t < 3800 && r.isAnomaly) alarms++;
      if (t >= 3800 && stepAfter < 0 && r.isAnomaly) stepAfter = t - 3800;
    }
    await d.dispose();
    return { alarms, stepAfter };
  }

  it('stops alarming on normal data 1.3 times wider than learned, and still flags a step', async () => {
    const fixed = await run(0, 1.3);
    const widened = await run(0.25, 1.3);
    assert.ok(fixed.alarms > 0, `a fixed spread alarms on the wider noise (${fixed.alarms})`);
    assert.equal(widened.alarms, 0);
    assert.ok(widened.stepAfter >= 0 && widened.stepAfter <= 15, `step flagged after ${widened.stepAfter}`);
  });

  it('widens at most 1.5 times: noise 3 times wider than learned keeps alarming', async () => {
    const r = await run(1, 3);
    assert.ok(r.alarms > 100, `${r.alarms} alarms`);
  });
});

describe('anomaly detector masks repeated detections', () => {
  it('halves the scores after a detection and decides on the unmasked score', async () => {
    const d = new AnomalyDetector({ ...BASE, suppress: 50, relearnAfter: 0 });
    const r = await feed(
      d,
      steps(800, 500, () => 8),
    );
    const first = r.findIndex((x) => x.score >= 0.5);
    assert.ok(first >= 500 && first < 520);
    for (const x of r.slice(first + 1, first + 51)) {
      const full = x.details.unmasked as number;
      assert.ok(full !== undefined && x.score < full);
      assert.ok(Math.abs(x.score - full / 2) < 1e-12, `${x.score} ${full}`);
    }
    assert.equal(r[first + 51].details.unmasked, undefined);
    assert.ok(r.slice(first + 10, 800).every((x) => x.isAnomaly));
    await d.dispose();
  });

  it('survives a restart mid-episode: saved state resumes identically', async () => {
    const opts = { ...BASE, suppress: 50, relearnAfter: 150, likelihood: 5 };
    const values = steps(900, 450, () => 8);
    const a = new AnomalyDetector(opts);
    const whole = await feed(a, values);
    const b = new AnomalyDetector(opts);
    await feed(b, values.slice(0, 520));
    const state = JSON.parse(JSON.stringify(await b.snapshot())) as Awaited<ReturnType<typeof b.snapshot>>;
    const c = new AnomalyDetector(opts);
    await c.restore(state);
    for (let t = 520; t < values.length; t++) {
      const x = await c.process([values[t]], ['x'], t * 1000);
      assert.equal(x.score, whole[t].score, `sample ${t}`);
      assert.equal(x.details.relearned, whole[t].details.relearned);
    }
    await Promise.all([a.dispose(), b.dispose(), c.dispose()]);
  });
});

describe('anomaly likelihood', () => {
  it('is calibrated on normal surprises and rises on a run of unusual ones', () => {
    const g = gaussian(prng(4));
    // Surprises of normal samples: -log10 of a uniform p.
    const normal = (): number => -Math.log10(Math.max(1e-12, 0.5 + 0.5 * Math.tanh(g())));
    const l = Likelihood.fit({ short: 10, horizon: 5000 }, Array.from({ length: 2000 }, normal));
    let over = 0;
    for (let i = 0; i < 5000; i++) if (l.step(normal()) >= 3) over++;
    assert.ok(over < 25, `${over} of 5000 normal samples at 1 in 1000`);
    let peak = 0;
    for (let i = 0; i < 10; i++) peak = Math.max(peak, l.step(4));
    assert.ok(peak > 6, `run of surprises: ${peak}`);
  });

  it('learns a series that is always somewhat surprising', () => {
    const l = Likelihood.fit({ short: 10, horizon: 200 }, new Array(300).fill(0.4));
    const first = l.step(2.5);
    for (let i = 0; i < 2000; i++) l.step(2 + (i % 2));
    assert.ok(first > 3 && l.step(2.5) < 1.5);
  });

  it('has an accurate normal tail', () => {
    assert.ok(Math.abs(normalTailSurprise(0) - Math.log10(2)) < 1e-6);
    assert.ok(Math.abs(normalTailSurprise(3) - -Math.log10(0.0013499)) < 1e-3);
    assert.ok(Math.abs(normalTailSurprise(6) - -Math.log10(9.8659e-10)) < 1e-2);
    assert.ok(normalTailSurprise(40) > normalTailSurprise(39));
  });
});

describe('anomaly detector on one channel: shape novelty (knn)', () => {
  /** A daily-like cycle of `period` samples with noise; `fault` edits the clean signal. */
  function cycle(n: number, period: number, fault: (t: number, v: number) => number, seed = 7): number[] {
    const g = gaussian(prng(seed));
    return Array.from(
      { length: n },
      (_, t) => fault(t, 10 + 5 * Math.sin((2 * Math.PI * t) / period)) + 0.2 * g(),
    );
  }
  const KNN: Partial<DetectorOptions> = { learningSamples: 600, suppress: 0, likelihood: 0 };

  it("is what 'auto' runs on one channel", async () => {
    const d = new AnomalyDetector(KNN);
    const r = await feed(
      d,
      cycle(700, 100, (_, v) => v),
    );
    // The shape at two scales (the window, and a four times longer view averaged by 4), the
    // shape against whole periods ago (the cycle repeats) and the robust level.
    assert.deepEqual(Object.keys(r[650].details.statistics ?? {}), [
      'shape',
      'long:shape',
      'season:shape',
      'level:x',
    ]);
    await d.dispose();
  });

  it('does not resume a state whose models another release chose for the same settings', async () => {
    const d = new AnomalyDetector(KNN);
    await feed(
      d,
      cycle(700, 100, (_, v) => v),
    );
    const state = await d.snapshot();
    assert.ok(d.compatible(state));
    // The same options once ran level statistics on one channel: such a state must not load.
    const z = new AnomalyDetector({ ...KNN, method: 'zscore' });
    await feed(
      z,
      cycle(700, 100, (_, v) => v),
    );
    const old = { ...state, pipelines: (await z.snapshot()).pipelines };
    assert.equal(d.compatible(old), false);
    await assert.rejects(d.restore(old), /other detector settings/);
    await Promise.all([d.dispose(), z.dispose()]);
  });

  it('flags a cycle that loses its shape (no level outside the learned range) and not before', async () => {
    // From sample 1500 one cycle stays flat at its mean: every value is within the normal range.
    const values = cycle(2000, 100, (t, v) => (t >= 1500 && t < 1600 ? 10 : v));
    const d = new AnomalyDetector(KNN);
    const r = await feed(d, values);
    assert.equal(r.slice(600, 1500).filter((x) => x.isAnomaly).length, 0, 'no alarm on normal cycles');
    const first = r.findIndex((x, t) => t >= 1500 && x.isAnomaly);
    assert.ok(first >= 1500 && first < 1540, `flagged at ${first}`);
    // The z-score of the level cannot see it: the values never leave the learned range.
    const z = new AnomalyDetector({ ...KNN, method: 'zscore' });
    const rz = await feed(z, values);
    assert.equal(rz.slice(1500, 1600).filter((x) => x.isAnomaly).length, 0);
    await Promise.all([d.dispose(), z.dispose()]);
  });

  it('flags a cycle that misses its plateau, which only the seasonal view can see', async () => {
    // Each cycle of 100 samples holds a plateau (+4) from phase 20 to 50; one cycle misses it.
    // Every window of that cycle looks like the flat part of other cycles: only the same phase
    // one or more periods ago tells it is wrong.
    const plateau = (t: number): number => (t % 100 >= 20 && t % 100 < 50 ? 4 : 0);
    for (const seed of [7, 8, 9]) {
      const values = cycle(2000, 100, (t) => 10 + (t >= 1500 && t < 1600 ? 0 : plateau(t)), seed);
      const firstAlarm = async (season: number): Promise<number> => {
        const d = new AnomalyDetector({ ...KNN, season });
        const r = await feed(d, values);
        await d.dispose();
        assert.equal(r.slice(600, 1500).filter((x) => x.isAnomaly).length, 0, `season ${season}: before`);
        return r.findIndex((x, t) => t >= 1500 && x.isAnomaly);
      };
      const seasonal = await firstAlarm(DEFAULT_OPTIONS.season);
      assert.ok(seasonal >= 1520 && seasonal < 1535, `seed ${seed}: flagged at ${seasonal}`);
      assert.equal(await firstAlarm(0), -1, `seed ${seed}: flagged without the seasonal view`);
    }
  });

  it('finds the period of a repeating series, and none in noise or a trend', () => {
    const g = gaussian(prng(4));
    const noisyCycle = Array.from({ length: 600 }, (_, t) => Math.sin((2 * Math.PI * t) / 96) + 0.3 * g());
    assert.ok(Math.abs(periodOf(noisyCycle, 16, 0.7) - 96) <= 2, String(periodOf(noisyCycle, 16, 0.7)));
    assert.equal(
      periodOf(
        Array.from({ length: 600 }, () => g()),
        16,
        0.7,
      ),
      0,
    );
    assert.equal(
      periodOf(
        Array.from({ length: 600 }, (_, t) => t + g()),
        16,
        0.7,
      ),
      0,
    );
    let walk = 0;
    assert.equal(
      periodOf(
        Array.from({ length: 600 }, () => (walk += g())),
        16,
        0.7,
      ),
      0,
    );
  });

  it('learns a lasting new level within a few windows, unless keepAlarm is set', async () => {
    const values = steps(1600, 900, () => 8);
    const d = new AnomalyDetector({ ...KNN, method: 'knn' });
    const r = await feed(d, values);
    const first = r.findIndex((x, t) => t >= 900 && x.isAnomaly);
    assert.ok(first >= 900 && first < 915, `flagged at ${first}`);
    // Normal once the long view (64 samples) has remembered windows of the new level.
    assert.equal(r.slice(1100).filter((x) => x.isAnomaly).length, 0, 'the new level is normal');
    const k = new AnomalyDetector({ ...KNN, method: 'knn', keepAlarm: true });
    const rk = await feed(k, values);
    assert.ok(
      rk.slice(920).every((x) => x.isAnomaly),
      'kept in alarm',
    );
    await Promise.all([d.dispose(), k.dispose()]);
  });

  it('stays quiet on clean data: < 0.2 % alarms, < 1 % scores at the threshold', async () => {
    for (const seed of [31, 32, 33]) {
      const plateau = cycle(3600, 100, (t) => 10 + (t % 100 >= 20 && t % 100 < 50 ? 4 : 0), seed);
      for (const values of [
        cycle(3600, 100, (_, v) => v, seed),
        plateau,
        steps(3600, Infinity, () => 0, seed),
      ]) {
        const d = new AnomalyDetector({ ...KNN, suppress: 0 });
        const r = (await feed(d, values)).slice(600);
        await d.dispose();
        const alarms = r.filter((x) => x.isAnomaly).length;
        const high = r.filter((x) => x.score >= x.threshold).length;
        assert.ok(alarms < 0.002 * r.length, `seed ${seed}: ${alarms} alarms in ${r.length}`);
        assert.ok(high < 0.01 * r.length, `seed ${seed}: ${high} scores >= threshold`);
      }
    }
  });

  it('resumes from a saved state with identical scores', async () => {
    const values = cycle(1600, 100, (t, v) => (t >= 1200 ? v + 3 : v));
    const opts = { ...KNN, suppress: 50 };
    const a = new AnomalyDetector(opts);
    const whole = await feed(a, values);
    const b = new AnomalyDetector(opts);
    await feed(b, values.slice(0, 1000));
    const state = JSON.parse(JSON.stringify(await b.snapshot())) as Awaited<ReturnType<typeof b.snapshot>>;
    const c = new AnomalyDetector(opts);
    await c.restore(state);
    for (let t = 1000; t < values.length; t++)
      assert.equal((await c.process([values[t]], ['x'], t * 1000)).score, whole[t].score, `sample ${t}`);
    await Promise.all([a.dispose(), b.dispose(), c.dispose()]);
  });

  it('scores a queued replay exactly like samples sent one by one', async () => {
    const values = cycle(1200, 100, (t, v) => (t >= 1000 && t < 1050 ? 10 : v));
    const a = new AnomalyDetector(KNN);
    const oneByOne = await feed(a, values);
    const b = new AnomalyDetector(KNN);
    const queued = await Promise.all(values.map((v, t) => b.process([v], ['x'], t * 1000)));
    assert.deepEqual(
      queued.map((x) => x.score),
      oneByOne.map((x) => x.score),
    );
    await Promise.all([a.dispose(), b.dispose()]);
  });
});

describe('anomaly detector refuses values whose statistics would overflow', () => {
  const METHODS_TRIED = ['auto', 'zscore', 'ewma', 'mad', 'mahalanobis', 'pca', 'knn'] as const;
  for (const method of METHODS_TRIED) {
    it(`${method}: ±1e308 while learning is refused, learning completes and scores stay meaningful`, async () => {
      const detector = new AnomalyDetector({ method, learningSamples: 120, suppress: 0 });
      const names = ['a', 'b', 'c'];
      const g = gaussian(prng(11));
      const errors: string[] = [];
      const results: DetectorResult[] = [];
      for (let t = 0; t < 400; t++) {
        let row = names.map((_, j) => 10 + j + Math.sin(t / 7) + 0.2 * g());
        if (t === 30) row = [1e308, 1, 1];
        if (t === 31) row = [1, -1e308, 1];
        if (t >= 360) row = row.map((v) => v + 25); // a plain fault at the end
        try {
          results.push(await detector.process(row, names, t * 1000));
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
      assert.equal(errors.length, 2, errors.join('; '));
      assert.match(errors[0], /channel a: 1e\+308 is beyond .*not used/);
      assert.match(errors[1], /channel b: -1e\+308 is beyond/);
      const after = results.filter((r) => !r.learning);
      assert.ok(after.length > 200, 'learning completed');
      assert.ok(after.every((r) => Number.isFinite(r.score)));
      assert.ok(
        results.slice(-30).some((r) => r.isAnomaly),
        'the fault after learning is still flagged',
      );
      await detector.close();
    });
  }
});
