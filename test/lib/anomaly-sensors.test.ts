import assert from 'node:assert/strict';
import { AnomalyDetector } from '../../lib/anomaly/detector';
import { detectPayload } from '../../lib/anomaly/message';
import { simulateReadings, type FaultSpec } from '../../lib/sensors';

const LEARN = 500;
const ONSET = 1500;
const COUNT = 2000;

interface Run {
  /** Samples judged anomalous between the end of learning and the fault. */
  falseAlarms: number;
  /** Samples from the fault's start to the first anomalous result (-1: never). */
  delay: number;
  top?: string;
}

/** Replays a simulated device (real driver code on register-level simulators) through the default detector. */
async function replay(
  device: 'bme280' | 'mpu6050',
  intervalMs: number,
  seed: number,
  fault?: FaultSpec,
): Promise<Run> {
  const readings = await simulateReadings(device, {
    count: COUNT,
    intervalMs,
    sim: { seed, faults: fault ? [{ ...fault, afterMs: ONSET * intervalMs }] : [] },
  });
  const detector = new AnomalyDetector({ learningSamples: LEARN });
  let falseAlarms = 0;
  let delay = -1;
  let top: string | undefined;
  for (let i = 0; i < readings.length; i++) {
    const r = await detectPayload(detector, readings[i].payload, readings[i].timestamp);
    if (!r.isAnomaly) continue;
    if (i < ONSET) falseAlarms++;
    else if (delay < 0) {
      delay = i - ONSET;
      top = r.details.top;
    }
  }
  await detector.dispose();
  return { falseAlarms, delay, top };
}

describe('anomaly detector on the device simulators (default method)', function () {
  this.timeout(30000);
  const seeds = [1, 2];

  it('raises few false alarms on healthy devices (< 2% of the scored samples)', async () => {
    for (const seed of seeds) {
      for (const [device, interval] of [
        ['bme280', 1000],
        ['mpu6050', 20],
      ] as const) {
        const run = await replay(device, interval, seed);
        assert.ok(run.falseAlarms < 0.02 * (ONSET - LEARN), `${device} seed ${seed}: ${run.falseAlarms}`);
        assert.equal(run.delay, -1, `${device} seed ${seed}: alarm after ${ONSET}`);
      }
    }
  });

  const faults: {
    name: string;
    device: 'bme280' | 'mpu6050';
    interval: number;
    fault: FaultSpec;
    within: number;
  }[] = [
    {
      name: 'temperature drift',
      device: 'bme280',
      interval: 1000,
      fault: { type: 'drift', channel: 'temperature', perMinute: 0.5 },
      within: 60,
    },
    {
      name: 'humidity spike',
      device: 'bme280',
      interval: 1000,
      fault: { type: 'spike', channel: 'humidity', magnitude: 10, count: 1 },
      within: 10,
    },
    { name: 'stuck sensor', device: 'bme280', interval: 1000, fault: { type: 'stuck' }, within: 30 },
    {
      name: 'bearing wear',
      device: 'mpu6050',
      interval: 20,
      fault: { type: 'bearing-wear', growthPerMinute: 10 },
      within: 100,
    },
  ];
  for (const { name, device, interval, fault, within } of faults) {
    it(`detects ${name} on the ${device} within ${within} samples`, async () => {
      for (const seed of seeds) {
        const run = await replay(device, interval, seed, fault);
        assert.ok(run.delay >= 0 && run.delay <= within, `seed ${seed}: delay ${run.delay} (${run.top})`);
        assert.ok(run.falseAlarms < 0.02 * (ONSET - LEARN), `seed ${seed}: ${run.falseAlarms} false alarms`);
      }
    });
  }
});
