import assert from 'node:assert/strict';
import {
  ADS1115_REG,
  Ads1115,
  Ads1115Sim,
  type Ads1115PinVoltages,
  type Ads1115FullScale,
  Lm75Sim,
  MPU6050_REG,
  Mpu6050,
  Mpu6050Sim,
  type Mpu6050Reading,
  RawRegister,
  SimClock,
  SimulatedI2cBus,
  ByteRegisterDevice,
  decodeRegisterValue,
  isSensorError,
  parseAds1115Input,
  parseRegisterWrites,
  type AccelRange,
  type GyroRange,
} from '../../lib/sensors';

const still: Mpu6050Reading = {
  accelX: 0,
  accelY: 0,
  accelZ: 1,
  gyroX: 0,
  gyroY: 0,
  gyroZ: 0,
  temperature: 25,
};

function mpuSetup(signal: () => Mpu6050Reading) {
  const clock = new SimClock();
  const bus = new SimulatedI2cBus(1);
  const sim = new Mpu6050Sim({ clock, signal });
  bus.attach(0x68, sim);
  return { clock, bus, sim };
}

describe('MPU6050 driver against the simulator', () => {
  it('checks WHO_AM_I and wakes the chip from sleep', async () => {
    const { clock, bus, sim } = mpuSetup(() => still);
    assert.ok(sim.asleep, 'powers up asleep');
    const driver = new Mpu6050(bus, 0x68, {}, clock);
    await driver.init();
    assert.equal(sim.asleep, false);
    const reading = await driver.read();
    assert.ok(Math.abs(reading.accelZ - 1) < 1e-3);

    const other = new SimulatedI2cBus(1);
    const impostor = new Mpu6050Sim({ clock });
    (impostor as unknown as { registers: Uint8Array }).registers[MPU6050_REG.whoAmI] = 0x70;
    other.attach(0x68, impostor);
    await assert.rejects(new Mpu6050(other, 0x68, {}, clock).init(), (err) =>
      isSensorError(err, 'WRONG_CHIP'),
    );
  });

  it('scales accelerometer counts to g for every range, saturating at the range limit', async () => {
    for (const [range, lsb] of [
      [2, 16384],
      [4, 8192],
      [8, 4096],
      [16, 2048],
    ] as Array<[AccelRange, number]>) {
      let truth = { ...still, accelX: 0.5, accelY: -1.25, accelZ: 1 };
      const { clock, bus } = mpuSetup(() => truth);
      const driver = new Mpu6050(bus, 0x68, { accelRange: range }, clock);
      await driver.init();
      const r = await driver.read();
      for (const axis of ['accelX', 'accelY', 'accelZ'] as const) {
        assert.ok(Math.abs(r[axis] - truth[axis]) <= 0.5 / lsb, `${axis} at ±${range} g: ${r[axis]}`);
      }
      // Register check: 0.5 g is lsb/2 counts in ACCEL_XOUT (big-endian).
      const raw = await bus.readI2cBlock(0x68, MPU6050_REG.accelXHigh, 2);
      assert.equal(raw.readInt16BE(0), lsb / 2);
      truth = { ...still, accelX: range * 1.5 };
      assert.ok(Math.abs((await driver.read()).accelX - 32767 / lsb) < 1e-9, 'clips at +full scale');
    }
  });

  it('scales gyro counts to °/s for every range and converts the die temperature', async () => {
    for (const [range, lsb] of [
      [250, 131],
      [500, 65.5],
      [1000, 32.8],
      [2000, 16.4],
    ] as Array<[GyroRange, number]>) {
      const truth = { ...still, gyroX: 100, gyroY: -200, gyroZ: 3.3, temperature: 41.2 };
      const { clock, bus } = mpuSetup(() => truth);
      const driver = new Mpu6050(bus, 0x68, { gyroRange: range }, clock);
      await driver.init();
      const r = await driver.read();
      for (const axis of ['gyroX', 'gyroY', 'gyroZ'] as const) {
        const expected = Math.max(-32768, Math.min(32767, Math.round(truth[axis] * lsb))) / lsb;
        assert.ok(Math.abs(r[axis] - expected) < 1e-9, `${axis} at ±${range}: ${r[axis]} vs ${expected}`);
      }
      assert.ok(Math.abs(r.temperature - 41.2) <= 0.5 / 340);
    }
  });

  it('reads a running machine: gravity on Z and vibration on X and Y', async () => {
    const clock = new SimClock();
    const bus = new SimulatedI2cBus(1);
    bus.attach(0x68, new Mpu6050Sim({ clock, seed: 3 }));
    const driver = new Mpu6050(bus, 0x68, { accelRange: 4 }, clock);
    await driver.init();
    const xs: number[] = [];
    let z = 0;
    for (let i = 0; i < 200; i++) {
      clock.advance(10);
      const r = await driver.read();
      xs.push(r.accelX);
      z += r.accelZ / 200;
    }
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const rms = Math.sqrt(xs.reduce((a, b) => a + (b - mean) ** 2, 0) / xs.length);
    assert.ok(Math.abs(z - 1) < 0.05, `mean Z ${z}`);
    assert.ok(rms > 0.03 && rms < 0.2, `vibration RMS ${rms} g`);
  });
});

function adsSetup(pins: () => Ads1115PinVoltages) {
  const clock = new SimClock();
  const bus = new SimulatedI2cBus(1);
  bus.attach(0x48, new Ads1115Sim({ clock, signal: pins }));
  return { clock, bus };
}

describe('ADS1115 driver against the simulator', () => {
  it('converts single-ended inputs for every gain to within one LSB', async () => {
    const pins: Ads1115PinVoltages = [0.1234, 0.2, 1.5, 3.0];
    for (const fullScale of [6.144, 4.096, 2.048, 1.024, 0.512, 0.256] as Ads1115FullScale[]) {
      const { clock, bus } = adsSetup(() => pins);
      const driver = new Ads1115(bus, 0x48, { inputs: ['ain0', 'ain1', 'ain2', 'ain3'], fullScale }, clock);
      await driver.init();
      const r = await driver.read();
      const lsb = fullScale / 32768;
      pins.forEach((volts, i) => {
        const expected = Math.min(volts, 32767 * lsb); // beyond full scale the code saturates
        assert.ok(Math.abs(r[`ain${i}`] - expected) <= lsb, `ain${i} at ±${fullScale} V: ${r[`ain${i}`]}`);
      });
    }
  });

  it('reads differential pairs with their sign', async () => {
    const { clock, bus } = adsSetup(() => [1.0, 1.25, 2.0, 0.5]);
    const driver = new Ads1115(
      bus,
      0x48,
      { inputs: ['ain0-ain1', 'ain0-ain3', 'ain1-ain3', 'ain2-ain3'], fullScale: 2.048 },
      clock,
    );
    await driver.init();
    const r = await driver.read();
    const lsb = 2.048 / 32768;
    assert.ok(Math.abs(r.ain0_ain1 - -0.25) <= lsb, `ain0-ain1 ${r.ain0_ain1}`);
    assert.ok(Math.abs(r.ain0_ain3 - 0.5) <= lsb);
    assert.ok(Math.abs(r.ain1_ain3 - 0.75) <= lsb);
    assert.ok(Math.abs(r.ain2_ain3 - 1.5) <= lsb);
    const last = await bus.readI2cBlock(0x48, ADS1115_REG.conversion, 2);
    assert.ok(last.readInt16BE(0) > 0, 'the last conversion (ain2-ain3) is positive');
  });

  it('waits one sample period per conversion at the chosen data rate', async () => {
    for (const dataRate of [8, 860] as const) {
      const { clock, bus } = adsSetup(() => [1, 1, 1, 1]);
      const driver = new Ads1115(bus, 0x48, { inputs: ['ain0'], dataRate }, clock);
      await driver.init();
      const start = clock.now();
      await driver.read();
      const waited = clock.now() - start;
      assert.ok(
        waited >= 1000 / dataRate && waited < (1000 / dataRate) * 1.3 + 2,
        `${dataRate} SPS waited ${waited} ms`,
      );
    }
  });

  it('does not read the result before the conversion-ready bit says so', async () => {
    const { clock, bus } = adsSetup(() => [2, 0, 0, 0]);
    // Start a conversion by hand: OS reads 0 until one period (1/128 s) has passed.
    const driver = new Ads1115(bus, 0x48, { inputs: ['ain0'] }, clock);
    await driver.init();
    await bus.writeI2cBlock(0x48, ADS1115_REG.config, [
      (driver.configFor('ain0') >> 8) & 0xff,
      driver.configFor('ain0') & 0xff,
    ]);
    assert.equal((await bus.readI2cBlock(0x48, ADS1115_REG.config, 2))[0] & 0x80, 0);
    assert.equal(
      (await bus.readI2cBlock(0x48, ADS1115_REG.conversion, 2)).readInt16BE(0),
      0,
      'no result yet',
    );
    clock.advance(8);
    assert.equal((await bus.readI2cBlock(0x48, ADS1115_REG.config, 2))[0] & 0x80, 0x80);
    assert.equal((await bus.readI2cBlock(0x48, ADS1115_REG.conversion, 2)).readInt16BE(0), 16000); // 2 V at ±4.096 V
  });

  it('parses input names and rejects pairs the multiplexer lacks', () => {
    assert.equal(parseAds1115Input('A2'), 'ain2');
    assert.equal(parseAds1115Input('0-1'), 'ain0-ain1');
    assert.equal(parseAds1115Input(' ain2_ain3 '), 'ain2-ain3');
    assert.throws(() => parseAds1115Input('ain1-ain2'), /not one of/);
    assert.throws(() => parseAds1115Input('ain4'), /not one of/);
  });
});

/** A device with fixed register contents, to check byte handling. */
class FixedRegisters extends ByteRegisterDevice {
  readonly chip = 'fixed';
  constructor(bytes: Record<number, number[]>) {
    super();
    for (const [register, values] of Object.entries(bytes)) this.registers.set(values, Number(register));
  }
  isPresent(): boolean {
    return true;
  }
  byte(register: number): number {
    return this.registers[register];
  }
}

describe('raw register reads', () => {
  it('combines bytes by byte order and sign', () => {
    const b = Buffer.from([0xff, 0x38]);
    assert.equal(decodeRegisterValue(b, 'big', false), 0xff38);
    assert.equal(decodeRegisterValue(b, 'big', true), -200);
    assert.equal(decodeRegisterValue(b, 'little', false), 0x38ff);
    assert.equal(decodeRegisterValue(b, 'little', true), 0x38ff);
    assert.equal(decodeRegisterValue(Buffer.from([0x80, 0, 0]), 'big', true), -8388608);
    assert.equal(decodeRegisterValue(Buffer.from([0xfe, 0xff, 0xff, 0xff]), 'little', true), -2);
    assert.equal(decodeRegisterValue(Buffer.from([0xfe, 0xff, 0xff, 0xff]), 'little', false), 0xfffffffe);
  });

  it('reads a register, scales it and runs the setup writes first', async () => {
    const bus = new SimulatedI2cBus(1);
    const device = new FixedRegisters({ 0x10: [0xfc, 0x18] }); // -1000 big-endian
    bus.attach(0x20, device);
    const raw = new RawRegister(bus, 0x20, {
      register: 0x10,
      length: 2,
      signed: true,
      scale: 0.01,
      offset: 5,
      channel: 'level',
      setup: parseRegisterWrites('0x6B=0x00, 0x01=7'),
    });
    await assert.rejects(raw.read(), /not initialised/);
    await raw.init();
    assert.equal(device.byte(0x01), 7);
    const r = await raw.read();
    assert.ok(Math.abs(r.level - -5) < 1e-12); // -1000 * 0.01 + 5
    assert.throws(() => parseRegisterWrites('0x6B'), /register=value/);
    assert.throws(() => new RawRegister(bus, 0x20, { register: 0, length: 5 }), /1..4/);
  });

  it('reads an LM75-style temperature: signed big-endian word / 256', async () => {
    const clock = new SimClock();
    const bus = new SimulatedI2cBus(1);
    let celsius = -12.4;
    bus.attach(0x48, new Lm75Sim({ clock, bits: 11, signal: () => celsius }));
    const raw = new RawRegister(bus, 0x48, { register: 0, length: 2, signed: true, scale: 1 / 256 });
    await raw.init();
    assert.equal((await raw.read()).value, -12.375); // 0.125 °C steps
    celsius = 85.06;
    assert.equal((await raw.read()).value, 85);
  });
});
