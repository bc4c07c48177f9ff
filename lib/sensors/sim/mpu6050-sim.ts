/**
 * Register-level MPU-6050 model on a running machine: it powers up asleep with frozen data
 * registers, honours the accelerometer and gyro full-scale ranges (counts saturate at the range
 * limits like the chip's), and fills the data registers with the vibration model's samples.
 */
import { type Clock, systemClock } from '../clock';
import { SeededRandom } from '../../util/random';
import {
  ACCEL_LSB_PER_G,
  ACCEL_RANGE_BY_CODE,
  GYRO_LSB_PER_DPS,
  GYRO_RANGE_BY_CODE,
  MPU6050_PWR_RESET,
  MPU6050_PWR_SLEEP,
  MPU6050_REG,
  MPU6050_WHO_AM_I,
  type Mpu6050Reading,
} from '../drivers/mpu6050';
import { ByteRegisterDevice } from './sim-bus';
import { FaultModel, type FaultDefaults } from './faults';
import { Environment, type EnvironmentOptions, Vibration, type VibrationOptions, clamp } from './signals';

export interface Mpu6050SimOptions {
  clock?: Clock;
  seed?: number;
  vibration?: VibrationOptions;
  environment?: EnvironmentOptions;
  /** Replaces the vibration model: true values at a time (tests use fixed values). */
  signal?: (timeMs: number) => Mpu6050Reading;
}

export const MPU6050_FAULT_DEFAULTS: FaultDefaults = {
  channels: ['accelX', 'accelY', 'accelZ', 'gyroX', 'gyroY', 'gyroZ', 'temperature'],
  primary: 'accelX',
  driftPerMinute: {
    accelX: 0.01,
    accelY: 0.01,
    accelZ: 0.01,
    gyroX: 0.5,
    gyroY: 0.5,
    gyroZ: 0.5,
    temperature: 0.2,
  },
  spikeMagnitude: {
    accelX: 1.5,
    accelY: 1.5,
    accelZ: 1.5,
    gyroX: 100,
    gyroY: 100,
    gyroZ: 100,
    temperature: 10,
  },
  vibration: true,
};

function int16(value: number): number {
  return clamp(Math.round(value), -32768, 32767);
}

export class Mpu6050Sim extends ByteRegisterDevice {
  readonly chip = 'MPU6050';
  readonly faults: FaultModel;
  private readonly clock: Clock;
  private readonly rng: SeededRandom;
  private readonly signal: (timeMs: number) => Mpu6050Reading;
  private readonly startMs: number;
  private wasGone = false;
  /** Last true physical values behind the data registers (after faults), for tests. */
  lastTruth: Mpu6050Reading | undefined;

  constructor(options: Mpu6050SimOptions = {}) {
    super();
    this.clock = options.clock ?? systemClock;
    this.rng = new SeededRandom(options.seed ?? 2);
    this.startMs = this.clock.now();
    const environment = new Environment(this.rng.fork(1), options.environment);
    const vibration = new Vibration(this.rng.fork(2), options.vibration);
    this.faults = new FaultModel(this.clock, this.rng.fork(3), MPU6050_FAULT_DEFAULTS);
    this.signal =
      options.signal ??
      ((t) =>
        vibration.at((t - this.startMs) / 1000, this.faults.wearLevel(), environment.at(t).temperature));
    this.powerOn();
  }

  private powerOn(): void {
    this.registers.fill(0);
    this.registers[MPU6050_REG.whoAmI] = MPU6050_WHO_AM_I;
    this.registers[MPU6050_REG.powerManagement1] = MPU6050_PWR_SLEEP;
  }

  isPresent(): boolean {
    const gone = this.faults.isGone();
    if (!gone && this.wasGone) this.powerOn();
    this.wasGone = gone;
    return !gone;
  }

  get asleep(): boolean {
    return (this.registers[MPU6050_REG.powerManagement1] & MPU6050_PWR_SLEEP) !== 0;
  }

  protected override onWrite(register: number, value: number): void {
    if (register === MPU6050_REG.whoAmI || (register >= MPU6050_REG.intStatus && register <= 0x48)) return;
    if (register === MPU6050_REG.powerManagement1 && value & MPU6050_PWR_RESET) {
      this.powerOn();
      return;
    }
    this.registers[register] = value;
  }

  protected override beforeRead(register: number, length: number): void {
    const first = MPU6050_REG.accelXHigh;
    const touchesData = register <= first + 13 && register + length > first;
    if (!touchesData && register !== MPU6050_REG.intStatus) return;
    if (this.asleep) return; // asleep: data registers keep their last values
    // A read lands at some point inside the sample period; the jitter keeps samples of a
    // periodic signal taken at a fixed interval from lining up exactly.
    const time = this.clock.now() + this.rng.next();
    const truth = this.faults.apply({ ...this.signal(time) }) as unknown as Mpu6050Reading;
    this.lastTruth = truth;
    const accelLsb = ACCEL_LSB_PER_G[ACCEL_RANGE_BY_CODE[(this.registers[MPU6050_REG.accelConfig] >> 3) & 3]];
    const gyroLsb = GYRO_LSB_PER_DPS[GYRO_RANGE_BY_CODE[(this.registers[MPU6050_REG.gyroConfig] >> 3) & 3]];
    const values = [
      truth.accelX * accelLsb,
      truth.accelY * accelLsb,
      truth.accelZ * accelLsb,
      (truth.temperature - 36.53) * 340,
      truth.gyroX * gyroLsb,
      truth.gyroY * gyroLsb,
      truth.gyroZ * gyroLsb,
    ];
    const data = Buffer.alloc(14);
    values.forEach((value, i) => data.writeInt16BE(int16(value), 2 * i));
    this.registers.set(data, first);
    this.registers[MPU6050_REG.intStatus] = 0x01; // DATA_RDY_INT
  }
}
