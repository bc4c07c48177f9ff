import assert from 'node:assert/strict';
import { AnomalyDetector, type DetectorOptions, type DetectorResult } from '../../lib/anomaly/detector';
import { detectPayload } from '../../lib/anomaly/message';
import { InputError } from '../../lib/preprocess/numeric-input';
import { CHANNELS, sensorSignal, type Fault } from '../helpers/signals';

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
