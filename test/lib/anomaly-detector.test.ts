import assert from 'node:assert/strict';
import {
  AnomalyDetector,
  type DetectorOptions,
  type DetectorResult,
  type Method,
} from '../../lib/anomaly/detector';
import { detectPayload } from '../../lib/anomaly/message';
import { InputError } from '../../lib/preprocess/numeric-input';
import { CHANNELS, gaussian, prng, sensorSignal, type Fault } from '../helpers/signals';

const ONSET = 1500;
const LENGTH = 2000;

async function run(
  detector: AnomalyDetector,
  samples: Record<string, number>[],
  start = 0,
): Promise<DetectorResult[]> {
  const out: DetectorResult[] = [];
  for (let t = 0; t < samples.length; t++)
    out.push(await detectPayload(detector, samples[t], (start + t) * 1000));
  return out;
}

describe('anomaly detector: injected faults', () => {
  // The fault shapes come from a seeded generator in test/helpers/signals.ts.
  const cases: { fault: Fault; within: number }[] = [
    { fault: 'spike', within: 10 },
    { fault: 'drift', within: 80 },
    { fault: 'stuck', within: 30 },
    { fault: 'vibration', within: 400 },
  ];
  for (const { fault, within } of cases) {
    it(`detects ${fault} within ${within} samples with no false alarm before it (default method)`, async () => {
      for (const seed of [11, 12]) {
        const detector = new AnomalyDetector({ learningSamples: 500 });
        const results = await run(detector, sensorSignal(LENGTH, fault, ONSET, seed));
        const before = results.slice(500, ONSET).filter((r) => r.isAnomaly).length;
        const first = results.findIndex((r, t) => t >= ONSET && r.isAnomaly);
        assert.equal(before, 0, `seed ${seed}: ${before} false alarms before the fault`);
        assert.ok(first >= ONSET && first - ONSET <= within, `seed ${seed}: detected at ${first - ONSET}`);
        assert.ok(results.every((r) => r.score >= 0 && r.score <= 1));
        await detector.dispose();
      }
    });
  }

  it('keeps the false alarm rate on clean signals below 1% (auto also with a wandering temperature)', async () => {
    for (const method of ['auto', 'zscore', 'ewma', 'mad', 'mahalanobis', 'pca'] as const) {
      let flagged = 0;
      let scored = 0;
      for (const seed of [21, 22]) {
        const detector = new AnomalyDetector({ method, learningSamples: 500 });
        // Level-based methods judge a wandering temperature by its learned range; only 'auto'
        // is expected to tell slow wandering from a fault.
        const wander = method === 'auto';
        const results = await run(detector, sensorSignal(LENGTH, 'none', LENGTH, seed, wander));
        for (const r of results.slice(500)) {
          scored++;
          if (r.isAnomaly) flagged++;
        }
        await detector.dispose();
      }
      assert.ok(flagged / scored < 0.01, `${method}: ${flagged}/${scored} flagged`);
    }
  });
});

/** Period of the plant's seasonal cycle, in samples. */
const CYCLE = 300;
const PLANT_CHANNELS = ['a', 'b', 'c', 'd'];

type PlantFault = 'none' | 'step' | 'spike' | 'drift' | 'stuck' | 'correlation';

interface PlantOptions {
  /** Size of the step fault, in noise standard deviations of d (default 2.5). */
  step?: number;
  /** Gross errors on d before sample `until`: a share of the samples, `size` standard deviations. */
  outliers?: { share: number; size: number; until: number };
}

/**
 * A plant at 1 sample/s, noise plus slow seasonality: a and b follow one cycle (b = half of a,
 * so they are correlated), c another phase of it, d is noise around 0 (standard deviation 1).
 * The fault starts at `onset`: step (d + 2.5 by default), spike (d + 25 for one sample), drift (d rising
 * 0.05 per sample), stuck (c frozen), correlation (b follows the opposite phase of the cycle:
 * its own range is unchanged, only its relation to a breaks).
 */
function plantSignal(
  n: number,
  fault: PlantFault,
  onset: number,
  seed: number,
  { step = 2.5, outliers }: PlantOptions = {},
): number[][] {
  const random = prng(seed);
  const g = gaussian(random);
  const phase = 2 * Math.PI * random();
  const rows: number[][] = [];
  let frozen = NaN;
  for (let t = 0; t < n; t++) {
    const season = Math.sin((2 * Math.PI * t) / CYCLE + phase);
    const a = 10 + season + 0.2 * g();
    let b = 5 + 0.5 * season + 0.1 * g();
    let c = 20 + 0.5 * Math.cos((2 * Math.PI * t) / CYCLE + phase) + 0.2 * g();
    let d = g();
    if (outliers && t < outliers.until && random() < outliers.share) d += outliers.size;
    if (t >= onset) {
      if (fault === 'step') d += step;
      if (fault === 'spike' && t === onset) d += 25;
      if (fault === 'drift') d += 0.05 * (t - onset);
      if (fault === 'stuck') {
        if (Number.isNaN(frozen)) frozen = c;
        c = frozen;
      }
      if (fault === 'correlation') b = 5 - 0.5 * season + 0.1 * g();
    }
    rows.push([a, b, c, d]);
  }
  return rows;
}

async function runRows(detector: AnomalyDetector, rows: number[][]): Promise<DetectorResult[]> {
  const out: DetectorResult[] = [];
  for (let t = 0; t < rows.length; t++) out.push(await detector.process(rows[t], PLANT_CHANNELS, t * 1000));
  return out;
}

interface Detection {
  /** Alarms (isAnomaly) between the end of learning and the fault. */
  falseAlarms: number;
  /** Scores at or above the threshold in that span. */
  highScores: number;
  /** Samples from the fault's start to the first alarm (-1: none). */
  delay: number;
}

const PLANT_LEARN = 600;
const PLANT_ONSET = 900;

async function detection(
  method: Method,
  fault: PlantFault,
  seed: number,
  options: PlantOptions = {},
): Promise<Detection> {
  const detector = new AnomalyDetector({ method, learningSamples: PLANT_LEARN });
  const results = await runRows(detector, plantSignal(PLANT_ONSET + 300, fault, PLANT_ONSET, seed, options));
  await detector.dispose();
  const before = results.slice(PLANT_LEARN, PLANT_ONSET);
  assert.ok(before.every((r) => !r.learning));
  const first = results.findIndex((r, t) => t >= PLANT_ONSET && r.isAnomaly);
  return {
    falseAlarms: before.filter((r) => r.isAnomaly).length,
    highScores: before.filter((r) => r.score >= r.threshold).length,
    delay: first < 0 ? -1 : first - PLANT_ONSET,
  };
}

describe('anomaly detector: every statistical method flags the faults it is built for', () => {
  /** Most samples from the start of each fault to its first alarm. */
  const WITHIN: Record<Exclude<PlantFault, 'none'>, number> = {
    step: 40,
    spike: 10,
    // After 100 samples d has drifted by 5 standard deviations.
    drift: 100,
    stuck: 30,
    // A quarter cycle: the broken relation shows fully within it, whatever the phase.
    correlation: CYCLE / 4,
  };
  // The median of a rolling window ignores a lone spike by design; only the spread ('auto')
  // sees a stuck sensor; only the multivariate methods see a broken correlation.
  const FAULTS: Record<
    // knn watches one channel's shape (what 'auto' runs on one channel): tested on one channel
    // in anomaly-adaptation.test.ts.
    Exclude<Method, 'ae-dense' | 'ae-conv' | 'ae-lstm' | 'forecast' | 'model' | 'knn'>,
    PlantFault[]
  > = {
    zscore: ['step', 'spike', 'drift'],
    ewma: ['step', 'spike', 'drift'],
    mad: ['step', 'drift'],
    mahalanobis: ['step', 'spike', 'drift', 'correlation'],
    pca: ['step', 'spike', 'drift', 'correlation'],
    auto: ['step', 'spike', 'drift', 'stuck'],
  };
  const seeds = [1, 2, 3, 4];
  for (const [method, faults] of Object.entries(FAULTS) as [Method, PlantFault[]][]) {
    for (const fault of faults) {
      const within = WITHIN[fault as Exclude<PlantFault, 'none'>];
      it(`${method} flags a ${fault} within ${within} samples, with no alarm before it`, async () => {
        for (const seed of seeds) {
          const run = await detection(method, fault, seed);
          assert.equal(run.falseAlarms, 0, `seed ${seed}: ${run.falseAlarms} alarms before the fault`);
          // Scores stay below the threshold before the fault (1 % allows a calibrated tail).
          assert.ok(
            run.highScores <= 0.01 * (PLANT_ONSET - PLANT_LEARN),
            `seed ${seed}: ${run.highScores} scores >= threshold before the fault`,
          );
          assert.ok(
            run.delay >= 0 && run.delay <= within,
            `seed ${seed}: ${run.delay < 0 ? 'never flagged' : `flagged after ${run.delay} samples`}`,
          );
        }
      });
    }
  }

  it('keeps every method quiet on a clean run: < 0.2 % alarms, < 1 % scores at the threshold', async () => {
    for (const method of Object.keys(FAULTS) as Method[]) {
      for (const seed of [31, 32]) {
        const detector = new AnomalyDetector({ method, learningSamples: PLANT_LEARN });
        const results = (
          await runRows(detector, plantSignal(PLANT_LEARN + 3000, 'none', Infinity, seed))
        ).slice(PLANT_LEARN);
        await detector.dispose();
        const alarms = results.filter((r) => r.isAnomaly).length;
        const high = results.filter((r) => r.score >= r.threshold).length;
        assert.ok(
          alarms < 0.002 * results.length,
          `${method} seed ${seed}: ${alarms} alarms in ${results.length}`,
        );
        assert.ok(high < 0.01 * results.length, `${method} seed ${seed}: ${high} scores >= threshold`);
      }
    }
  });

  it('mad still flags a moderate step after learning on data with outliers; zscore, inflated, does not', async () => {
    // 3 % of the learning samples carry a gross error of 30 standard deviations on d; after
    // learning d steps by 3 standard deviations: far out for the median and MAD of d, within
    // the spread the outliers give its mean and standard deviation.
    const options: PlantOptions = { step: 3, outliers: { share: 0.03, size: 30, until: PLANT_LEARN } };
    const within = WITHIN.step;
    for (const seed of [1, 2, 3, 4, 5, 6]) {
      const runs: Record<string, Detection> = {};
      for (const method of ['mad', 'zscore'] as const) {
        runs[method] = await detection(method, 'step', seed, options);
        assert.equal(runs[method].falseAlarms, 0, `${method} seed ${seed}: alarms before the fault`);
      }
      assert.ok(
        runs.mad.delay >= 0 && runs.mad.delay <= within,
        `mad seed ${seed}: ${runs.mad.delay < 0 ? 'never flagged' : `flagged after ${runs.mad.delay}`}`,
      );
      assert.ok(
        runs.zscore.delay < 0 || runs.zscore.delay > within,
        `zscore seed ${seed}: flagged after ${runs.zscore.delay} samples although its scale is inflated`,
      );
    }
  });
});

describe('anomaly detector: the long level of auto', () => {
  it('flags a small lasting step that the one-window level misses in some runs', async () => {
    // d steps by 1.5 noise standard deviations: 4.7 spreads of a 10-sample mean, 6.7 of a
    // 20-sample mean, against many statistics at once.
    const delays = async (longLevel: number): Promise<number[]> => {
      const out: number[] = [];
      for (const seed of [1, 2, 3, 4, 5, 6, 7, 8]) {
        const detector = new AnomalyDetector({ learningSamples: PLANT_LEARN, longLevel });
        const rows = plantSignal(PLANT_ONSET + 300, 'step', PLANT_ONSET, seed, { step: 1.5 });
        const results = await runRows(detector, rows);
        await detector.dispose();
        assert.equal(results.slice(PLANT_LEARN, PLANT_ONSET).filter((r) => r.isAnomaly).length, 0);
        out.push(results.findIndex((r, t) => t >= PLANT_ONSET && r.isAnomaly) - PLANT_ONSET);
      }
      return out;
    };
    const withLong = await delays(2);
    const without = await delays(0);
    assert.ok(
      withLong.every((d) => d >= 0 && d <= 50),
      `with the long level: ${withLong.join(', ')}`,
    );
    assert.ok(without.filter((d) => d < 0).length >= 1, `one window alone: ${without.join(', ')}`);
  });

  it('is used only after a learning period of 20 of its spans, and resumes exactly', async () => {
    const statisticsAfter = async (learningSamples: number): Promise<string[]> => {
      const detector = new AnomalyDetector({ learningSamples });
      const results = await runRows(detector, plantSignal(learningSamples + 5, 'none', Infinity, 3));
      await detector.dispose();
      return Object.keys(results[results.length - 1].details.statistics ?? {});
    };
    // Window 10, long level 2: 20 spans of 20 samples.
    assert.ok(!(await statisticsAfter(399)).some((s) => s.startsWith('long:')));
    assert.deepEqual(
      (await statisticsAfter(400)).filter((s) => s.startsWith('long:')),
      PLANT_CHANNELS.map((c) => `long:${c}`),
    );

    const rows = plantSignal(PLANT_ONSET + 100, 'step', PLANT_ONSET, 4, { step: 2 });
    const whole = new AnomalyDetector({ learningSamples: PLANT_LEARN });
    const expected = await runRows(whole, rows);
    await whole.dispose();
    const first = new AnomalyDetector({ learningSamples: PLANT_LEARN });
    await runRows(first, rows.slice(0, 800));
    const saved = JSON.parse(JSON.stringify(first.state()));
    await first.dispose();
    const second = new AnomalyDetector({ learningSamples: PLANT_LEARN });
    await second.restore(saved);
    const resumed: DetectorResult[] = [];
    for (let t = 800; t < rows.length; t++)
      resumed.push(await second.process(rows[t], PLANT_CHANNELS, t * 1000));
    await second.dispose();
    assert.deepEqual(
      resumed.map((r) => [r.score, r.isAnomaly, r.details.top]),
      expected.slice(800).map((r) => [r.score, r.isAnomaly, r.details.top]),
    );
    assert.equal(
      new AnomalyDetector({ learningSamples: PLANT_LEARN, longLevel: 0 }).compatible(saved),
      false,
    );
  });
});

describe('anomaly detector: contract', () => {
  const options: Partial<DetectorOptions> = { learningSamples: 100 };

  it('reports learning, then scores in [0, 1] with one result per sample', async () => {
    const detector = new AnomalyDetector(options);
    const results = await run(detector, sensorSignal(200, 'none', 200, 1));
    assert.equal(results.length, 200);
    assert.ok(results.slice(0, 100).every((r) => r.learning && !r.isAnomaly && r.score === 0));
    assert.ok(results.slice(100).every((r) => !r.learning && r.score >= 0 && r.score <= 1));
    assert.deepEqual(
      results.map((r) => r.details.index),
      results.map((_, i) => i),
    );
    assert.equal(results[150].threshold, 0.5);
    assert.ok(results[150].details.statistics && 'spread:humidity' in results[150].details.statistics);
  });

  it('resumes from a saved state exactly where it stopped', async () => {
    const samples = sensorSignal(400, 'drift', 300, 2);
    const whole = new AnomalyDetector(options);
    const expected = await run(whole, samples);
    const first = new AnomalyDetector(options);
    await run(first, samples.slice(0, 250));
    const saved = JSON.parse(JSON.stringify(first.state()));
    await first.dispose();
    const second = new AnomalyDetector(options);
    await second.restore(saved);
    const resumed = await run(second, samples.slice(250), 250);
    assert.deepEqual(
      resumed.map((r) => [r.score, r.isAnomaly, r.details.index]),
      expected.slice(250).map((r) => [r.score, r.isAnomaly, r.details.index]),
    );
    const other = new AnomalyDetector({ ...options, method: 'pca' });
    assert.equal(other.compatible(saved), false);
  });

  it('forgets everything on reset', async () => {
    const detector = new AnomalyDetector(options);
    await run(detector, sensorSignal(150, 'none', 150, 3));
    assert.equal(detector.learning, false);
    await detector.reset();
    assert.equal(detector.learning, true);
    assert.equal(detector.channelNames, null);
    const r = await detectPayload(detector, [1, 2], 0);
    assert.equal(r.learning, true);
    assert.deepEqual(detector.channelNames, ['ch0', 'ch1']);
  });

  it('rejects bad input with a clear error and leaves the state unchanged', async () => {
    const detector = new AnomalyDetector(options);
    await run(detector, sensorSignal(120, 'none', 120, 4));
    const before = JSON.stringify(detector.state());
    const bad: unknown[] = [
      'hot',
      [1, 2],
      { temperature: Infinity, humidity: 1, vibration: 0 },
      { other: 1 },
      null,
    ];
    for (const payload of bad) {
      await assert.rejects(detectPayload(detector, payload, 0), (err: Error) => {
        assert.ok(err instanceof InputError, `${JSON.stringify(payload)}: ${err.message}`);
        return true;
      });
    }
    assert.equal(JSON.stringify(detector.state()), before);
    // A missing channel is filled by the policy instead.
    const r = await detectPayload(detector, { temperature: 21, vibration: 0 }, 0);
    assert.deepEqual(r.details.imputed, ['humidity']);
    const strict = new AnomalyDetector({ ...options, nanPolicy: 'error' });
    await assert.rejects(detectPayload(strict, [1, NaN], 0), InputError);
  });

  it('answers queued samples in order, each with its own result', async () => {
    const detector = new AnomalyDetector(options);
    const samples = sensorSignal(300, 'stuck', 200, 5);
    const pending = samples.map((s, t) => detectPayload(detector, s, t * 1000));
    const bad = detectPayload(detector, 'bad', 0);
    const results = await Promise.all(pending);
    await assert.rejects(bad, InputError);
    assert.deepEqual(
      results.map((r) => r.details.index),
      samples.map((_, i) => i),
    );
    // Same answers as one at a time.
    const sequential = await run(new AnomalyDetector(options), samples);
    assert.deepEqual(
      results.map((r) => r.score),
      sequential.map((r) => r.score),
    );
  });

  it('learns for a time span given in message time', async () => {
    const detector = new AnomalyDetector({ learningMs: 60000 });
    const samples = sensorSignal(100, 'none', 100, 6);
    const results: DetectorResult[] = [];
    for (let t = 0; t < 100; t++) results.push(await detectPayload(detector, samples[t], t * 1000));
    assert.equal(results[59].learning, true);
    assert.equal(results[61].learning, false);
  });

  it('treats a 2-D payload as consecutive samples and summarises them', async () => {
    const detector = new AnomalyDetector(options);
    const rows = sensorSignal(130, 'none', 130, 7).map((s) => CHANNELS.map((c) => s[c]));
    const r = await detectPayload(detector, rows, 0);
    assert.equal(r.rows?.length, 130);
    assert.equal(r.learning, false);
    assert.equal(r.details.index, 129);
  });
});
