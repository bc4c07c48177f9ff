/**
 * InvenSense MPU-6050 (3-axis accelerometer, 3-axis gyroscope, die temperature) over I2C,
 * following the register map (RM-MPU-6000A): WHO_AM_I check, wake from sleep (the chip powers
 * up asleep), full-scale range configuration and scaling to g, °/s and °C.
 */
import type { I2cBus } from '../i2c-bus';
import { type Clock, systemClock } from '../clock';
import { SensorError, deviceError, hex } from '../errors';

export const MPU6050_WHO_AM_I = 0x68;
export const MPU6050_ADDRESSES = [0x68, 0x69] as const;

export const MPU6050_REG = {
  sampleRateDivider: 0x19,
  config: 0x1a,
  gyroConfig: 0x1b,
  accelConfig: 0x1c,
  intStatus: 0x3a,
  accelXHigh: 0x3b, // 14 bytes: accel X/Y/Z, temperature, gyro X/Y/Z, each big-endian int16
  powerManagement1: 0x6b,
  whoAmI: 0x75,
} as const;

export const MPU6050_PWR_RESET = 0x80;
export const MPU6050_PWR_SLEEP = 0x40;
/** Clock from the X gyro PLL, as the datasheet recommends over the internal oscillator. */
export const MPU6050_PWR_CLOCK_PLL_X = 0x01;

export type AccelRange = 2 | 4 | 8 | 16;
export type GyroRange = 250 | 500 | 1000 | 2000;

/** LSB per g for AFS_SEL 0..3 and LSB per °/s for FS_SEL 0..3. */
export const ACCEL_LSB_PER_G: Record<AccelRange, number> = { 2: 16384, 4: 8192, 8: 4096, 16: 2048 };
export const GYRO_LSB_PER_DPS: Record<GyroRange, number> = { 250: 131, 500: 65.5, 1000: 32.8, 2000: 16.4 };
export const ACCEL_RANGE_BY_CODE: AccelRange[] = [2, 4, 8, 16];
export const GYRO_RANGE_BY_CODE: GyroRange[] = [250, 500, 1000, 2000];

/** Register map: temperature in °C = TEMP_OUT / 340 + 36.53. */
export function mpu6050Temperature(raw: number): number {
  return raw / 340 + 36.53;
}

export interface Mpu6050Options {
  accelRange?: AccelRange;
  gyroRange?: GyroRange;
  /** Digital low-pass filter setting DLPF_CFG 0..6 (0: off, 260 Hz). */
  lowPass?: number;
  /** Sample rate = gyro output rate / (1 + divider). */
  sampleRateDivider?: number;
  /** Reset all registers before configuring (default true). */
  reset?: boolean;
}

export interface Mpu6050Reading {
  accelX: number;
  accelY: number;
  accelZ: number;
  gyroX: number;
  gyroY: number;
  gyroZ: number;
  temperature: number;
}

export const MPU6050_UNITS = {
  accelX: 'g',
  accelY: 'g',
  accelZ: 'g',
  gyroX: '°/s',
  gyroY: '°/s',
  gyroZ: '°/s',
  temperature: '°C',
} as const;

export class Mpu6050 {
  readonly what: string;
  private readonly accelRange: AccelRange;
  private readonly gyroRange: GyroRange;
  private readonly lowPass: number;
  private readonly divider: number;
  private readonly reset: boolean;
  private ready = false;

  constructor(
    private readonly bus: I2cBus,
    readonly address = 0x68,
    options: Mpu6050Options = {},
    private readonly clock: Clock = systemClock,
  ) {
    this.what = `MPU6050 at ${hex(address)} on I2C bus ${bus.busNumber}`;
    this.accelRange = options.accelRange ?? 2;
    this.gyroRange = options.gyroRange ?? 250;
    if (!(this.accelRange in ACCEL_LSB_PER_G)) {
      throw new SensorError(
        'BAD_CONFIG',
        `MPU6050 accelerometer range ±${this.accelRange} g is not 2, 4, 8 or 16`,
      );
    }
    if (!(this.gyroRange in GYRO_LSB_PER_DPS)) {
      throw new SensorError(
        'BAD_CONFIG',
        `MPU6050 gyro range ±${this.gyroRange} °/s is not 250, 500, 1000 or 2000`,
      );
    }
    this.lowPass = options.lowPass ?? 0;
    this.divider = options.sampleRateDivider ?? 0;
    if (!Number.isInteger(this.lowPass) || this.lowPass < 0 || this.lowPass > 6) {
      throw new SensorError('BAD_CONFIG', `MPU6050 low-pass setting ${this.lowPass} is not 0..6`);
    }
    if (!Number.isInteger(this.divider) || this.divider < 0 || this.divider > 255) {
      throw new SensorError('BAD_CONFIG', `MPU6050 sample rate divider ${this.divider} is not 0..255`);
    }
    this.reset = options.reset ?? true;
  }

  async init(): Promise<void> {
    this.ready = false;
    try {
      const id = (await this.bus.readByte(this.address, MPU6050_REG.whoAmI)) & 0x7e;
      // WHO_AM_I holds the upper 6 bits of the address (0x68) whatever the AD0 pin says.
      if (id !== MPU6050_WHO_AM_I) {
        throw new SensorError(
          'WRONG_CHIP',
          `${this.what}: WHO_AM_I ${hex(id)}, expected ${hex(MPU6050_WHO_AM_I)} for an MPU6050`,
        );
      }
      if (this.reset) {
        await this.bus.writeByte(this.address, MPU6050_REG.powerManagement1, MPU6050_PWR_RESET);
        await this.clock.sleep(100); // register reset; the chip comes back asleep
      }
      await this.wake();
      await this.bus.writeByte(this.address, MPU6050_REG.sampleRateDivider, this.divider);
      await this.bus.writeByte(this.address, MPU6050_REG.config, this.lowPass);
      await this.bus.writeByte(
        this.address,
        MPU6050_REG.gyroConfig,
        GYRO_RANGE_BY_CODE.indexOf(this.gyroRange) << 3,
      );
      await this.bus.writeByte(
        this.address,
        MPU6050_REG.accelConfig,
        ACCEL_RANGE_BY_CODE.indexOf(this.accelRange) << 3,
      );
      await this.clock.sleep(30); // gyro start-up time
      this.ready = true;
    } catch (err) {
      throw deviceError(err, this.what);
    }
  }

  /** Clears the SLEEP bit (set at power-on) and selects the gyro PLL clock. */
  async wake(): Promise<void> {
    await this.bus.writeByte(this.address, MPU6050_REG.powerManagement1, MPU6050_PWR_CLOCK_PLL_X);
    await this.clock.sleep(5);
    const power = await this.bus.readByte(this.address, MPU6050_REG.powerManagement1);
    if (power & MPU6050_PWR_SLEEP) throw new SensorError('TIMEOUT', `${this.what}: did not wake from sleep`);
  }

  async read(): Promise<Mpu6050Reading> {
    if (!this.ready) throw new SensorError('DEVICE_UNAVAILABLE', `${this.what}: not initialised`);
    try {
      const raw = await this.bus.readI2cBlock(this.address, MPU6050_REG.accelXHigh, 14);
      return this.convert(raw);
    } catch (err) {
      throw deviceError(err, this.what);
    }
  }

  /** Scales the 14 data registers (0x3B..0x48) with the configured ranges. */
  convert(raw: Buffer): Mpu6050Reading {
    const a = ACCEL_LSB_PER_G[this.accelRange];
    const g = GYRO_LSB_PER_DPS[this.gyroRange];
    return {
      accelX: raw.readInt16BE(0) / a,
      accelY: raw.readInt16BE(2) / a,
      accelZ: raw.readInt16BE(4) / a,
      temperature: mpu6050Temperature(raw.readInt16BE(6)),
      gyroX: raw.readInt16BE(8) / g,
      gyroY: raw.readInt16BE(10) / g,
      gyroZ: raw.readInt16BE(12) / g,
    };
  }

  /** Puts the chip back to sleep (about 5 µA). */
  async sleep(): Promise<void> {
    await this.bus.writeByte(this.address, MPU6050_REG.powerManagement1, MPU6050_PWR_SLEEP);
  }
}
