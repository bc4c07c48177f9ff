import assert from 'node:assert/strict';
import {
  SimClock,
  createSimulatedSource,
  isSensorError,
  parseFault,
  simulateReadings,
  type SimulatedSource,
  type FaultSpec,
} from '../../lib/sensors';

type Payload = Record<string, number>;

async function read(source: SimulatedSource): Promise<Payload> {
  return (await source.read()).payload as Payload;
}

/** Two BME280 sources on one clock with the same seed: identical until one gets a fault. */
function twins(faults: FaultSpec[] = []) {
  const clock = new SimClock();
  const healthy = createSimulatedSource('bme280', { clock, sim: { seed: 11 } });
  const faulty = createSimulatedSource('bme280', { clock, sim: { seed: 11, faults } });
  return { clock, healthy, faulty };
}

function rms(values: number[]): number {
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  return Math.sqrt(values.reduce((a, b) => a + (b - mean) ** 2, 0) / values.length);
}

describe('simulated signals and faults', () => {
  it('is repeatable: the same seed gives the same readings, another seed others', async () => {
    // One clock each: initialising a driver spends (simulated) time waiting for the chip.
    const clocks = [new SimClock(), new SimClock(), new SimClock()];
    const a = createSimulatedSource('mpu6050', { clock: clocks[0], sim: { seed: 5 } });
    const b = createSimulatedSource('mpu6050', { clock: clocks[1], sim: { seed: 5 } });
    const c = createSimulatedSource('mpu6050', { clock: clocks[2], sim: { seed: 6 } });
    for (let i = 0; i < 5; i++) {
      clocks.forEach((clock) => clock.advance(10));
      const [ra, rb, rc] = [await read(a), await read(b), await read(c)];
      assert.deepEqual(ra, rb);
      assert.notDeepEqual(ra, rc);
    }
  });

  it('follows a daily temperature cycle, warmest in the afternoon', async () => {
    const clock = new SimClock(new Date(2024, 5, 1, 0, 0).getTime()); // local midnight
    const source = createSimulatedSource('bme280', {
      clock,
      sim: { seed: 2, environment: { dailyAmplitude: 4 } },
    });
    const byHour: number[] = [];
    for (let hour = 0; hour < 24; hour++) {
      byHour.push((await read(source)).temperature);
      clock.advance(3600_000);
    }
    const warmest = byHour.indexOf(Math.max(...byHour));
    const coldest = byHour.indexOf(Math.min(...byHour));
    assert.ok(warmest >= 12 && warmest <= 18, `warmest at ${warmest}:00`);
    assert.ok(coldest <= 6 || coldest >= 23, `coldest at ${coldest}:00`);
    assert.ok(Math.max(...byHour) - Math.min(...byHour) > 5);
  });

  it('drift walks one channel away at the given rate', async () => {
    const { clock, healthy, faulty } = twins([{ type: 'drift', channel: 'temperature', perMinute: 0.5 }]);
    await read(healthy);
    await read(faulty);
    clock.advance(10 * 60_000);
    const [h, f] = [await read(healthy), await read(faulty)];
    assert.ok(Math.abs(f.temperature - h.temperature - 5) <= 0.02, `drift ${f.temperature - h.temperature}`);
    assert.ok(Math.abs(f.pressure - h.pressure) < 0.01, 'other channels untouched');
  });

  it('spikes: exactly `count` readings jump by the magnitude', async () => {
    const { clock, healthy, faulty } = twins([
      { type: 'spike', channel: 'humidity', magnitude: 20, count: 3 },
    ]);
    const jumps: number[] = [];
    for (let i = 0; i < 5; i++) {
      clock.advance(1000);
      jumps.push((await read(faulty)).humidity - (await read(healthy)).humidity);
    }
    assert.deepEqual(
      jumps.map((j) => Math.round(j)),
      [20, 20, 20, 0, 0],
    );
  });

  it('stuck holds every channel at its value, starting after afterMs', async () => {
    const clock = new SimClock();
    const source = createSimulatedSource('bme280', {
      clock,
      sim: { seed: 3, faults: [{ type: 'stuck', afterMs: 60_000 }] },
    });
    const first = await read(source);
    clock.advance(30 * 60_000);
    const moving = await read(source);
    assert.notDeepEqual(moving, first, 'not stuck before the fault starts');
    clock.advance(3 * 3600_000);
    assert.deepEqual(await read(source), moving);
  });

  it('bearing wear raises high-frequency vibration energy over simulated minutes', async () => {
    const clock = new SimClock();
    const source = createSimulatedSource('mpu6050', {
      clock,
      mpu6050: { accelRange: 8 },
      sim: { seed: 9, faults: [{ type: 'bearing-wear', growthPerMinute: 0.02 }] },
    });
    // Energy of sample-to-sample differences: a high-pass that the shaft harmonics barely pass.
    async function highFrequencyRms(): Promise<number> {
      const diffs: number[] = [];
      let previous: number | undefined;
      for (let i = 0; i < 200; i++) {
        clock.advance(5);
        const x = (await read(source)).accelX;
        if (previous !== undefined) diffs.push(x - previous);
        previous = x;
      }
      return rms(diffs);
    }
    const levels: number[] = [];
    for (let minute = 0; minute <= 30; minute += 10) {
      levels.push(await highFrequencyRms());
      clock.advance(10 * 60_000);
    }
    for (let i = 1; i < levels.length; i++)
      assert.ok(levels[i] > levels[i - 1], `rising: ${levels.map((l) => l.toFixed(3))}`);
    assert.ok(levels[3] > 3 * levels[0], `grows severalfold: ${levels.map((l) => l.toFixed(3))}`);
    // A worn bearing also runs warmer.
    const warm = (await read(source)).temperature;
    const fresh = createSimulatedSource('mpu6050', { clock, sim: { seed: 9 } });
    assert.ok(warm > (await read(fresh)).temperature + 2);
  });

  it('device gone: reads fail like an absent chip, and resume (re-initialised) when it is back', async () => {
    const clock = new SimClock();
    const source = createSimulatedSource('mpu6050', { clock, sim: { seed: 1 } });
    assert.ok(Math.abs((await read(source)).accelZ - 1) < 0.2);
    source.injectFault({ type: 'gone' });
    assert.deepEqual(await source.bus!.scan(), []);
    await assert.rejects(
      source.read(),
      (err) =>
        isSensorError(err, 'DEVICE_UNAVAILABLE') &&
        err.osCode === 'ENXIO' &&
        /MPU6050 at 0x68 .* does not answer/.test(err.message),
    );
    source.injectFault({ type: 'back' });
    // The chip lost power: it is asleep again until the driver wakes it, which the source does.
    const back = await read(source);
    assert.ok(Math.abs(back.accelZ - 1) < 0.2, `gravity again: ${back.accelZ}`);
  });

  it('device gone for a duration comes back by itself', async () => {
    const clock = new SimClock();
    const source = createSimulatedSource('ads1115', {
      clock,
      sim: { faults: [{ type: 'gone', durationMs: 5000 }] },
    });
    await assert.rejects(source.read(), (err) => isSensorError(err, 'DEVICE_UNAVAILABLE'));
    assert.equal(source.activeFaults().length, 1);
    clock.advance(5000);
    assert.ok(typeof (await read(source)).ain0 === 'number');
    assert.deepEqual(source.activeFaults(), []);
  });

  it('validates fault requests', () => {
    assert.deepEqual(parseFault('clear'), { type: 'clear' });
    assert.deepEqual(parseFault({ type: 'Spike', magnitude: '4', probability: 0.5 }), {
      type: 'spike',
      magnitude: 4,
      probability: 0.5,
    });
    assert.throws(
      () => parseFault({ type: 'melt' }),
      (err) => isSensorError(err, 'BAD_FAULT'),
    );
    assert.throws(() => parseFault({ type: 'spike', probability: 2 }), /probability/);
    const source = createSimulatedSource('bme280', { clock: new SimClock() });
    assert.throws(() => source.injectFault({ type: 'bearing-wear' }), /vibration sensor/);
    assert.throws(() => source.injectFault({ type: 'drift', channel: 'speed' }), /no channel "speed"/);
  });

  it('clear removes every fault', async () => {
    const { clock, healthy, faulty } = twins([
      { type: 'drift', perMinute: 1 },
      { type: 'stuck', channel: 'humidity' },
    ]);
    clock.advance(60_000);
    faulty.injectFault({ type: 'clear' });
    assert.deepEqual(faulty.activeFaults(), []);
    clock.advance(1000);
    const [h, f] = [await read(healthy), await read(faulty)];
    assert.ok(Math.abs(h.temperature - f.temperature) < 0.02);
  });

  it('simulateReadings: an hour of a wearing bearing in one call, on simulated time', async () => {
    const started = Date.now();
    const readings = await simulateReadings('mpu6050', {
      count: 720,
      intervalMs: 5000,
      sim: { seed: 2, faults: [{ type: 'bearing-wear', growthPerMinute: 0.01, afterMs: 30 * 60_000 }] },
    });
    assert.equal(readings.length, 720);
    assert.equal(readings[2].timestamp - readings[1].timestamp, 5000);
    const spread = (part: typeof readings) => rms(part.map((r) => (r.payload as Payload).accelX));
    const healthy = spread(readings.slice(0, 360));
    const worn = spread(readings.slice(600));
    assert.ok(worn > 2 * healthy, `vibration ${healthy.toFixed(3)} g -> ${worn.toFixed(3)} g`);
    assert.ok(Date.now() - started < 5000, 'runs faster than real time by far');
  });
});
