import assert from 'node:assert/strict';
import {
  Backoff,
  SensorError,
  SensorPoller,
  SimClock,
  type SensorReading,
  type SensorSource,
} from '../../lib/sensors';

/** A device that does not answer between `lostFrom` and `lostTo` (clock time). */
function flakyDevice(clock: SimClock, lostFrom: number, lostTo: number) {
  const reads: number[] = [];
  const source: SensorSource = {
    device: 'bme280',
    simulated: true,
    description: 'test device',
    async read(): Promise<SensorReading> {
      const t = clock.now();
      reads.push(t);
      if (t >= lostFrom && t < lostTo)
        throw new SensorError('DEVICE_UNAVAILABLE', 'test device does not answer (EIO)');
      return { payload: { value: t }, units: { value: '' } };
    },
    async close() {},
  };
  return { source, reads };
}

/** Moves simulated time in small steps, letting each read's promise settle. */
async function run(clock: SimClock, ms: number, step = 50): Promise<void> {
  for (let t = 0; t < ms; t += step) {
    clock.advance(step);
    for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve));
  }
}

function record() {
  const log = {
    readings: 0,
    recoveredAt: [] as number[],
    failures: [] as { retryMs?: number; report: boolean }[],
  };
  return log;
}

describe('SensorPoller: retries and recovery', () => {
  it('a lost device is probed every second, so recovery is seen within a second, not after the backoff', async () => {
    const clock = new SimClock(0);
    // Answers for 2 s, gone for 20 s (backoff alone would retry at +1, +2, +4, +8, +16 s: 33 s).
    const { source } = flakyDevice(clock, 2000, 22_000);
    const log = record();
    const poller = new SensorPoller(
      source,
      { intervalMs: 500, clock, backoff: new Backoff(1000, 30_000) },
      {
        reading: () => log.readings++,
        recovered: () => log.recoveredAt.push(clock.now()),
        failed: (_err, retryMs, report) => log.failures.push({ retryMs, report }),
        ended: () => assert.fail('not a replay'),
      },
    );
    poller.start();
    await run(clock, 25_000);
    await poller.close();
    assert.equal(log.recoveredAt.length, 1);
    assert.ok(
      log.recoveredAt[0] >= 22_000 && log.recoveredAt[0] <= 23_000,
      `recovered at ${log.recoveredAt[0]} ms`,
    );
    assert.ok(
      log.failures.every((f) => f.retryMs !== undefined && f.retryMs <= 1000),
      'probes at most 1 s apart',
    );
    assert.equal(log.failures.filter((f) => f.report).length, 1, 'one report for the outage');
    assert.equal(poller.isFailing, false);
  });

  it('a device never seen waits the full backoff (no bus hammering at start-up)', async () => {
    const clock = new SimClock(0);
    const { source, reads } = flakyDevice(clock, 0, 60_000);
    const retries: number[] = [];
    const poller = new SensorPoller(
      source,
      { intervalMs: 100, clock, startDelayMs: 0 },
      {
        reading: () => {},
        recovered: () => {},
        failed: (_err, retryMs) => retries.push(retryMs!),
        ended: () => {},
      },
    );
    poller.start();
    await run(clock, 40_000);
    await poller.close();
    assert.deepEqual(retries.slice(0, 6), [1000, 2000, 4000, 8000, 16000, 30000]);
    assert.ok(reads.length <= 8, `${reads.length} reads in 40 s`);
  });

  it('close stops every timer', async () => {
    const clock = new SimClock(0);
    const { source } = flakyDevice(clock, 0, 0);
    const poller = new SensorPoller(
      source,
      { intervalMs: 100, clock },
      { reading: () => {}, recovered: () => {}, failed: () => {}, ended: () => {} },
    );
    poller.start();
    await run(clock, 1000);
    await poller.close();
    assert.equal(clock.pendingTimers(), 0);
  });
});
