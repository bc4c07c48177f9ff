import assert from 'node:assert/strict';
import {
  BME280_EXAMPLE_CALIBRATION,
  BME280_REG,
  Bme280,
  Bme280Sim,
  SimClock,
  SimulatedI2cBus,
  compensateHumidity,
  compensatePressure,
  compensateTemperature,
  encodeBme280Calibration,
  invertHumidity,
  invertPressure,
  invertTemperature,
  isSensorError,
  parseBme280Calibration,
  type Bme280Calibration,
  type Bme280Oversampling,
  type EnvironmentReading,
} from '../../lib/sensors';

/** The datasheet's floating-point compensation (BME280 datasheet 8.1), as an independent reference. */
function floatingPoint(adcT: number, adcP: number, adcH: number, c: Bme280Calibration) {
  let v1 = (adcT / 16384 - c.T1 / 1024) * c.T2;
  let v2 = (adcT / 131072 - c.T1 / 8192) * (adcT / 131072 - c.T1 / 8192) * c.T3;
  const tFine = Math.trunc(v1 + v2);
  const temperature = (v1 + v2) / 5120;
  v1 = tFine / 2 - 64000;
  v2 = (v1 * v1 * c.P6) / 32768;
  v2 = v2 + v1 * c.P5 * 2;
  v2 = v2 / 4 + c.P4 * 65536;
  v1 = ((c.P3 * v1 * v1) / 524288 + c.P2 * v1) / 524288;
  v1 = (1 + v1 / 32768) * c.P1;
  let p = 1048576 - adcP;
  p = ((p - v2 / 4096) * 6250) / v1;
  v1 = (c.P9 * p * p) / 2147483648;
  v2 = (p * c.P8) / 32768;
  const pressure = p + (v1 + v2 + c.P7) / 16;
  let h = tFine - 76800;
  h =
    (adcH - (c.H4 * 64 + (c.H5 / 16384) * h)) *
    ((c.H2 / 65536) * (1 + (c.H6 / 67108864) * h * (1 + (c.H3 / 67108864) * h)));
  h = h * (1 - (c.H1 * h) / 524288);
  return { temperature, pressure, humidity: Math.min(100, Math.max(0, h)) };
}

/**
 * The simulator inverts the datasheet's floating-point compensation, the driver runs its integer
 * compensation: the two differ by up to about 12 t_fine counts (the integer path floors adc/8),
 * which moves pressure by up to 0.6 Pa and humidity by 0.004 %RH. A wrong formula on either side
 * misses by degrees or hectopascals.
 */
const FLOAT_VS_INTEGER = { pressurePa: 0.6, humidity: 0.004 };

function setup(
  options: ConstructorParameters<typeof Bme280>[2] = {},
  signal?: (t: number) => EnvironmentReading,
) {
  const clock = new SimClock();
  const bus = new SimulatedI2cBus(1);
  const sim = new Bme280Sim({ clock, seed: 7, signal });
  bus.attach(0x76, sim);
  const driver = new Bme280(bus, 0x76, options, clock);
  return { clock, bus, sim, driver };
}

describe('BME280 compensation', () => {
  it('matches the datasheet worked example (T1..P9, adc_T 519888, adc_P 415148)', () => {
    const cal = BME280_EXAMPLE_CALIBRATION;
    const t = compensateTemperature(519888, cal);
    assert.equal(t.tFine, 128422);
    assert.equal(t.centiCelsius, 2508); // 25.08 °C
    const pascal = compensatePressure(415148, t.tFine, cal) / 256;
    // The example's floating-point result is 100653.27 Pa; the 64-bit integer path resolves 1/256 Pa.
    assert.ok(Math.abs(pascal - 100653.27) < 0.05, `pressure ${pascal}`);
  });

  it('agrees with the datasheet floating-point formulas across the operating range', () => {
    const cal = BME280_EXAMPLE_CALIBRATION;
    for (const [adcT, adcP, adcH] of [
      [519888, 415148, 30000],
      [480000, 300000, 20000],
      [560000, 500000, 40000],
      [430000, 350000, 25000],
    ]) {
      const reference = floatingPoint(adcT, adcP, adcH, cal);
      const t = compensateTemperature(adcT, cal);
      assert.ok(Math.abs(t.centiCelsius / 100 - reference.temperature) <= 0.01, `T at ${adcT}`);
      assert.ok(
        Math.abs(compensatePressure(adcP, t.tFine, cal) / 256 - reference.pressure) < 1,
        `P at ${adcP}`,
      );
      assert.ok(
        Math.abs(compensateHumidity(adcH, t.tFine, cal) / 1024 - reference.humidity) < 0.02,
        `H at ${adcH}`,
      );
    }
  });

  it("the simulator's inverse is independent of the driver and meets the datasheet example", () => {
    const cal = BME280_EXAMPLE_CALIBRATION;
    // Datasheet 8.1 example: adc_T 519888 is 25.0825 °C (t_fine 128422), adc_P 415148 is 100653.27 Pa.
    assert.ok(Math.abs(invertTemperature(25.0825, cal) - 519888) <= 1);
    assert.ok(Math.abs(invertPressure(100653.27, 128422, cal) - 415148) <= 1);
    // Round trips through the datasheet's floating-point formulas (not the driver's integer ones).
    for (const [t, hpa, rh] of [
      [-20, 300, 5],
      [0, 950, 40],
      [21.5, 1013.25, 55],
      [60, 1100, 95],
    ]) {
      const adcT = invertTemperature(t, cal);
      const tFine = floatingPoint(adcT, 0, 0, cal).temperature * 5120;
      const back = floatingPoint(
        adcT,
        invertPressure(hpa * 100, tFine, cal),
        invertHumidity(rh, tFine, cal),
        cal,
      );
      assert.ok(Math.abs(back.temperature - t) < 0.01, `T ${back.temperature} vs ${t}`);
      assert.ok(Math.abs(back.pressure - hpa * 100) < 0.5, `P ${back.pressure} vs ${hpa * 100}`);
      assert.ok(Math.abs(back.humidity - rh) < 0.02, `H ${back.humidity} vs ${rh}`);
    }
  });

  it('decodes the calibration registers, including the packed 12-bit dig_H4/dig_H5', () => {
    const cal = { ...BME280_EXAMPLE_CALIBRATION, H4: -300, H5: 1234, H6: -20 };
    const { block88, blockE1 } = encodeBme280Calibration(cal);
    assert.deepEqual(parseBme280Calibration(block88, blockE1), cal);
    // Known register bytes: dig_T1 = 27504 = 0x6B70 little-endian at 0x88.
    assert.deepEqual([...block88.subarray(0, 2)], [0x70, 0x6b]);
  });
});

describe('BME280 driver against the simulator', () => {
  it('checks the chip id and names a BMP280 when it finds one', async () => {
    const { bus, sim, driver } = setup();
    (sim as unknown as { registers: Uint8Array }).registers[BME280_REG.chipId] = 0x58;
    await assert.rejects(
      driver.init(),
      (err) => isSensorError(err, 'WRONG_CHIP') && /BMP280/.test(err.message),
    );
    assert.ok(bus.transfers > 0);
  });

  it('reads the calibration from the chip and recovers the simulated values within resolution', async () => {
    for (const osr of [1, 16] as Bme280Oversampling[]) {
      const { clock, sim, driver } = setup({
        oversampling: { temperature: osr, pressure: osr, humidity: osr },
      });
      await driver.init();
      assert.deepEqual(driver.getCalibration(), BME280_EXAMPLE_CALIBRATION);
      // Datasheet resolutions: T 0.01 °C; P 0.18 Pa at x16 (20 bit), 2.62 Pa at x1 (16 bit); H 0.008 %RH,
      // plus where the simulator's floating-point inverse and the driver's integer path differ.
      const pressureTolerance = (osr === 16 ? 0.18 : 2.62) + FLOAT_VS_INTEGER.pressurePa;
      for (let i = 0; i < 60; i++) {
        clock.advance(17 * 60_000); // a day in steps, so the values sweep the daily cycle
        const reading = await driver.read();
        const truth = sim.lastTruth!;
        assert.ok(
          Math.abs(reading.temperature - truth.temperature) <= 0.01,
          `T ${reading.temperature} vs ${truth.temperature}`,
        );
        assert.ok(Math.abs(reading.pressure! - truth.pressure) * 100 <= pressureTolerance, `P x${osr}`);
        assert.ok(
          Math.abs(reading.humidity! - truth.humidity) <= 0.008 + FLOAT_VS_INTEGER.humidity,
          `H ${reading.humidity} vs ${truth.humidity}`,
        );
      }
    }
  });

  it('covers extremes of the range: -20..60 °C, 300..1100 hPa, 0..100 %RH', async () => {
    let truth: EnvironmentReading = { temperature: 0, pressure: 1000, humidity: 50 };
    const { driver } = setup({ oversampling: { temperature: 16, pressure: 16, humidity: 16 } }, () => truth);
    await driver.init();
    for (const t of [-20, 0, 60])
      for (const p of [300, 1100])
        for (const h of [0, 100]) {
          truth = { temperature: t, pressure: p, humidity: h };
          const r = await driver.read();
          assert.ok(Math.abs(r.temperature - t) <= 0.01, `T ${r.temperature}`);
          assert.ok(Math.abs(r.pressure! - p) * 100 <= 0.18 + FLOAT_VS_INTEGER.pressurePa, `P ${r.pressure}`);
          assert.ok(Math.abs(r.humidity! - h) <= 0.008 + FLOAT_VS_INTEGER.humidity, `H ${r.humidity}`);
        }
  });

  it('in forced mode measures once per read and waits for the measuring bit', async () => {
    const { clock, sim, driver } = setup({ oversampling: { temperature: 2, pressure: 16, humidity: 1 } });
    await driver.init();
    const before = sim.measurements;
    const start = clock.now();
    await driver.read();
    await driver.read();
    assert.equal(sim.measurements - before, 2);
    // Each forced measurement takes the datasheet time (about 40 ms at these settings).
    assert.ok(clock.now() - start >= 2 * 38, `waited ${clock.now() - start} ms`);
  });

  it('in normal mode measures on its own cycle and reads without triggering', async () => {
    const { clock, sim, driver } = setup({ mode: 'normal', standbyMs: 1000 });
    await driver.init();
    const first = sim.measurements;
    clock.advance(3000);
    await driver.read();
    assert.ok(sim.measurements > first, 'a newer measurement is latched');
    const count = sim.measurements;
    await driver.read(); // no time passed: same cycle, no new measurement
    assert.equal(sim.measurements, count);
  });

  it('leaves out channels whose oversampling is off', async () => {
    const { driver } = setup({ oversampling: { temperature: 1, pressure: 0, humidity: 0 } });
    await driver.init();
    const reading = await driver.read();
    assert.deepEqual(Object.keys(reading), ['temperature']);
  });

  it('smooths a temperature step with the IIR filter', async () => {
    let truth: EnvironmentReading = { temperature: 20, pressure: 1000, humidity: 50 };
    const { driver } = setup(
      { filter: 16, oversampling: { temperature: 16, pressure: 16, humidity: 1 } },
      () => truth,
    );
    await driver.init();
    await driver.read();
    truth = { ...truth, temperature: 30 };
    const after = (await driver.read()).temperature;
    assert.ok(
      after > 20.3 && after < 21,
      `one step of a coefficient-16 filter moves 1/16 of the way: ${after}`,
    );
  });

  it('soft reset returns the chip to sleep with default configuration', async () => {
    const { bus, driver } = setup({ mode: 'normal' });
    await driver.init();
    assert.equal((await bus.readByte(0x76, BME280_REG.ctrlMeas)) & 3, 3);
    await driver.softReset();
    assert.equal(await bus.readByte(0x76, BME280_REG.ctrlMeas), 0);
  });

  it('rejects configurations the chip does not have', () => {
    const bus = new SimulatedI2cBus();
    assert.throws(
      () => new Bme280(bus, 0x76, { oversampling: { temperature: 3 as Bme280Oversampling } }),
      /oversampling/,
    );
    assert.throws(() => new Bme280(bus, 0x76, { oversampling: { temperature: 0 } }), /cannot be skipped/);
  });
});
