/**
 * Bosch BME280 (temperature, pressure, humidity) over I2C, following the datasheet
 * (BST-BME280-DS002): chip-id check, soft reset, factory calibration registers, the integer
 * compensation formulas (32-bit temperature and humidity, 64-bit pressure), forced and normal
 * mode, oversampling, IIR filter and standby time.
 */
import type { I2cBus } from '../i2c-bus';
import { type Clock, systemClock } from '../clock';
import { SensorError, deviceError, hex } from '../errors';

export const BME280_CHIP_ID = 0x60;
export const BME280_ADDRESSES = [0x76, 0x77] as const;

export const BME280_REG = {
  calib00: 0x88, // dig_T1 .. dig_P9 (0x88..0x9F), 0xA0 unused, dig_H1 at 0xA1
  chipId: 0xd0,
  reset: 0xe0,
  calib26: 0xe1, // dig_H2 .. dig_H6 (0xE1..0xE7)
  ctrlHum: 0xf2,
  status: 0xf3,
  ctrlMeas: 0xf4,
  config: 0xf5,
  data: 0xf7, // press_msb .. hum_lsb (0xF7..0xFE)
} as const;

export const BME280_RESET_COMMAND = 0xb6;
/** Register value of a measurement that was skipped or has not happened yet. */
export const BME280_SKIPPED_20BIT = 0x80000;
export const BME280_SKIPPED_16BIT = 0x8000;

export interface Bme280Calibration {
  T1: number;
  T2: number;
  T3: number;
  P1: number;
  P2: number;
  P3: number;
  P4: number;
  P5: number;
  P6: number;
  P7: number;
  P8: number;
  P9: number;
  H1: number;
  H2: number;
  H3: number;
  H4: number;
  H5: number;
  H6: number;
}

/**
 * Calibration used by the simulator. T1..P9 are the example values of the Bosch compensation
 * worked example (BMP280 datasheet, section 3.12, same formulas as the BME280); the BME280
 * datasheet gives no humidity example, so H1..H6 are values typical of production parts.
 */
export const BME280_EXAMPLE_CALIBRATION: Readonly<Bme280Calibration> = Object.freeze({
  T1: 27504,
  T2: 26435,
  T3: -1000,
  P1: 36477,
  P2: -10685,
  P3: 3024,
  P4: 2855,
  P5: 140,
  P6: -7,
  P7: 15500,
  P8: -14600,
  P9: 6000,
  H1: 75,
  H2: 362,
  H3: 0,
  H4: 313,
  H5: 50,
  H6: 30,
});

/** Decodes the two calibration blocks: 26 bytes from 0x88 and 7 bytes from 0xE1. */
export function parseBme280Calibration(block88: Buffer, blockE1: Buffer): Bme280Calibration {
  if (block88.length < 26 || blockE1.length < 7) {
    throw new SensorError('BAD_CONFIG', 'BME280 calibration blocks must be 26 and 7 bytes');
  }
  const e4 = blockE1[3];
  const e5 = blockE1[4];
  const e6 = blockE1[5];
  return {
    T1: block88.readUInt16LE(0),
    T2: block88.readInt16LE(2),
    T3: block88.readInt16LE(4),
    P1: block88.readUInt16LE(6),
    P2: block88.readInt16LE(8),
    P3: block88.readInt16LE(10),
    P4: block88.readInt16LE(12),
    P5: block88.readInt16LE(14),
    P6: block88.readInt16LE(16),
    P7: block88.readInt16LE(18),
    P8: block88.readInt16LE(20),
    P9: block88.readInt16LE(22),
    H1: block88[25],
    H2: blockE1.readInt16LE(0),
    H3: blockE1[2],
    // dig_H4 = 0xE4[11:4] 0xE5[3:0], dig_H5 = 0xE6[11:4] 0xE5[7:4]; both signed 12-bit.
    H4: signExtend((e4 << 4) | (e5 & 0x0f), 12),
    H5: signExtend((e6 << 4) | (e5 >> 4), 12),
    H6: blockE1.readInt8(6),
  };
}

/** The register image of a calibration (what a chip's NVM holds): the inverse of parse. */
export function encodeBme280Calibration(cal: Bme280Calibration): { block88: Buffer; blockE1: Buffer } {
  const block88 = Buffer.alloc(26);
  block88.writeUInt16LE(cal.T1, 0);
  block88.writeInt16LE(cal.T2, 2);
  block88.writeInt16LE(cal.T3, 4);
  block88.writeUInt16LE(cal.P1, 6);
  [cal.P2, cal.P3, cal.P4, cal.P5, cal.P6, cal.P7, cal.P8, cal.P9].forEach((value, i) =>
    block88.writeInt16LE(value, 8 + 2 * i),
  );
  block88[25] = cal.H1;
  const blockE1 = Buffer.alloc(7);
  blockE1.writeInt16LE(cal.H2, 0);
  blockE1[2] = cal.H3;
  const h4 = cal.H4 & 0xfff;
  const h5 = cal.H5 & 0xfff;
  blockE1[3] = h4 >> 4;
  blockE1[4] = (h4 & 0x0f) | ((h5 & 0x0f) << 4);
  blockE1[5] = h5 >> 4;
  blockE1.writeInt8(cal.H6, 6);
  return { block88, blockE1 };
}

function signExtend(value: number, bits: number): number {
  const shift = 32 - bits;
  return (value << shift) >> shift;
}

/**
 * Datasheet 4.2.3, BME280_compensate_T_int32. Returns the temperature in 0.01 °C and t_fine,
 * which pressure and humidity compensation need. Math.imul keeps C's 32-bit products.
 */
export function compensateTemperature(
  adcT: number,
  cal: Bme280Calibration,
): { centiCelsius: number; tFine: number } {
  const var1 = Math.imul((adcT >> 3) - (cal.T1 << 1), cal.T2) >> 11;
  const d = (adcT >> 4) - cal.T1;
  const var2 = Math.imul(Math.imul(d, d) >> 12, cal.T3) >> 14;
  const tFine = (var1 + var2) | 0;
  return { centiCelsius: (Math.imul(tFine, 5) + 128) >> 8, tFine };
}

/** Datasheet 4.2.3, BME280_compensate_P_int64: pressure in Pa as Q24.8 (divide by 256). */
export function compensatePressure(adcP: number, tFine: number, cal: Bme280Calibration): number {
  let var1 = BigInt(tFine) - 128000n;
  let var2 = var1 * var1 * BigInt(cal.P6);
  var2 = var2 + ((var1 * BigInt(cal.P5)) << 17n);
  var2 = var2 + (BigInt(cal.P4) << 35n);
  var1 = ((var1 * var1 * BigInt(cal.P3)) >> 8n) + ((var1 * BigInt(cal.P2)) << 12n);
  var1 = (((1n << 47n) + var1) * BigInt(cal.P1)) >> 33n;
  if (var1 === 0n) return 0; // avoid division by zero
  let p = 1048576n - BigInt(adcP);
  p = (((p << 31n) - var2) * 3125n) / var1;
  var1 = (BigInt(cal.P9) * (p >> 13n) * (p >> 13n)) >> 25n;
  var2 = (BigInt(cal.P8) * p) >> 19n;
  p = ((p + var1 + var2) >> 8n) + (BigInt(cal.P7) << 4n);
  return Number(BigInt.asUintN(32, p));
}

/** Datasheet 4.2.3, bme280_compensate_H_int32: relative humidity in %RH as Q22.10 (divide by 1024). */
export function compensateHumidity(adcH: number, tFine: number, cal: Bme280Calibration): number {
  let v = (tFine - 76800) | 0;
  const a = ((((adcH << 14) - (cal.H4 << 20) - Math.imul(cal.H5, v)) | 0) + 16384) >> 15;
  const b =
    (Math.imul(
      ((Math.imul(Math.imul(v, cal.H6) >> 10, (Math.imul(v, cal.H3) >> 11) + 32768) >> 10) + 2097152) | 0,
      cal.H2,
    ) +
      8192) >>
    14;
  v = Math.imul(a, b);
  v = (v - (Math.imul(Math.imul(v >> 15, v >> 15) >> 7, cal.H1) >> 4)) | 0;
  v = v < 0 ? 0 : v;
  v = v > 419430400 ? 419430400 : v;
  return v >> 12;
}

/** Oversampling factor; 0 skips the measurement. */
export type Bme280Oversampling = 0 | 1 | 2 | 4 | 8 | 16;
export type Bme280Mode = 'forced' | 'normal';
export type Bme280Filter = 0 | 2 | 4 | 8 | 16;
/** Standby between normal-mode measurements, ms. */
export type Bme280Standby = 0.5 | 10 | 20 | 62.5 | 125 | 250 | 500 | 1000;

const OVERSAMPLING_CODES: Record<number, number> = { 0: 0, 1: 1, 2: 2, 4: 3, 8: 4, 16: 5 };
const FILTER_CODES: Record<number, number> = { 0: 0, 2: 1, 4: 2, 8: 3, 16: 4 };
const STANDBY_CODES: Record<number, number> = {
  0.5: 0,
  62.5: 1,
  125: 2,
  250: 3,
  500: 4,
  1000: 5,
  10: 6,
  20: 7,
};

export const BME280_OVERSAMPLING_BY_CODE = [0, 1, 2, 4, 8, 16, 16, 16];
export const BME280_FILTER_BY_CODE = [0, 2, 4, 8, 16, 16, 16, 16];
export const BME280_STANDBY_BY_CODE = [0.5, 62.5, 125, 250, 500, 1000, 10, 20];

export interface Bme280Options {
  mode?: Bme280Mode;
  oversampling?: {
    temperature?: Bme280Oversampling;
    pressure?: Bme280Oversampling;
    humidity?: Bme280Oversampling;
  };
  filter?: Bme280Filter;
  standbyMs?: Bme280Standby;
  /** Soft-reset the chip before configuring it (default true). */
  reset?: boolean;
}

export interface Bme280Reading {
  /** °C, resolution 0.01 */
  temperature: number;
  /** hPa */
  pressure?: number;
  /** %RH */
  humidity?: number;
}

export const BME280_UNITS = { temperature: '°C', pressure: 'hPa', humidity: '%RH' } as const;

/** Datasheet 9.1: maximum measurement time in ms for the given oversampling factors. */
export function bme280MeasurementTimeMs(t: number, p: number, h: number, typical = false): number {
  const [base, per, extra] = typical ? [1, 2, 0.5] : [1.25, 2.3, 0.575];
  return base + (t ? per * t : 0) + (p ? per * p + extra : 0) + (h ? per * h + extra : 0);
}

function checkChoice(name: string, value: number, codes: Record<number, number>): number {
  const code = codes[value];
  if (code === undefined) {
    throw new SensorError(
      'BAD_CONFIG',
      `BME280 ${name} ${value} is not one of ${Object.keys(codes).join(', ')}`,
    );
  }
  return code;
}

export class Bme280 {
  private calibration: Bme280Calibration | undefined;
  private readonly mode: Bme280Mode;
  private readonly osrs: { t: number; p: number; h: number };
  private readonly ctrlMeasSleep: number;
  private readonly ctrlHum: number;
  private readonly config: number;
  private readonly reset: boolean;
  readonly what: string;

  constructor(
    private readonly bus: I2cBus,
    readonly address = 0x76,
    options: Bme280Options = {},
    private readonly clock: Clock = systemClock,
  ) {
    this.what = `BME280 at ${hex(address)} on I2C bus ${bus.busNumber}`;
    this.mode = options.mode ?? 'forced';
    if (this.mode !== 'forced' && this.mode !== 'normal') {
      throw new SensorError('BAD_CONFIG', `BME280 mode ${String(this.mode)} is not forced or normal`);
    }
    const o = options.oversampling ?? {};
    this.osrs = { t: o.temperature ?? 1, p: o.pressure ?? 1, h: o.humidity ?? 1 };
    const osrsT = checkChoice('temperature oversampling', this.osrs.t, OVERSAMPLING_CODES);
    const osrsP = checkChoice('pressure oversampling', this.osrs.p, OVERSAMPLING_CODES);
    const osrsH = checkChoice('humidity oversampling', this.osrs.h, OVERSAMPLING_CODES);
    if (osrsT === 0) {
      throw new SensorError(
        'BAD_CONFIG',
        'BME280 temperature cannot be skipped: pressure and humidity need it',
      );
    }
    const filter = checkChoice('filter', options.filter ?? 0, FILTER_CODES);
    const standby = checkChoice('standby', options.standbyMs ?? 1000, STANDBY_CODES);
    this.ctrlHum = osrsH;
    this.ctrlMeasSleep = (osrsT << 5) | (osrsP << 2);
    this.config = (standby << 5) | (filter << 2);
    this.reset = options.reset ?? true;
  }

  /** Checks the chip id, resets, reads the calibration and writes the configuration. */
  async init(): Promise<void> {
    try {
      const id = await this.bus.readByte(this.address, BME280_REG.chipId);
      if (id !== BME280_CHIP_ID) {
        const bmp = id === 0x56 || id === 0x57 || id === 0x58 ? ' (a BMP280: no humidity sensor)' : '';
        throw new SensorError(
          'WRONG_CHIP',
          `${this.what}: chip id ${hex(id)}${bmp}, expected ${hex(BME280_CHIP_ID)} for a BME280`,
        );
      }
      if (this.reset) await this.softReset();
      const block88 = await this.bus.readI2cBlock(this.address, BME280_REG.calib00, 26);
      const blockE1 = await this.bus.readI2cBlock(this.address, BME280_REG.calib26, 7);
      this.calibration = parseBme280Calibration(block88, blockE1);
      // config is written in sleep mode (writes in normal mode may be ignored); ctrl_hum takes
      // effect only with the following ctrl_meas write.
      await this.bus.writeByte(this.address, BME280_REG.ctrlMeas, this.ctrlMeasSleep);
      await this.bus.writeByte(this.address, BME280_REG.config, this.config);
      await this.bus.writeByte(this.address, BME280_REG.ctrlHum, this.ctrlHum);
      if (this.mode === 'normal') {
        await this.bus.writeByte(this.address, BME280_REG.ctrlMeas, this.ctrlMeasSleep | 0b11);
        await this.clock.sleep(this.measurementTimeMs());
      } else {
        await this.bus.writeByte(this.address, BME280_REG.ctrlMeas, this.ctrlMeasSleep);
      }
    } catch (err) {
      this.calibration = undefined;
      throw deviceError(err, this.what);
    }
  }

  /** Writes the reset command and waits until the NVM calibration has been copied (im_update = 0). */
  async softReset(): Promise<void> {
    await this.bus.writeByte(this.address, BME280_REG.reset, BME280_RESET_COMMAND);
    await this.clock.sleep(2);
    for (let attempt = 0; attempt < 10; attempt++) {
      const status = await this.bus.readByte(this.address, BME280_REG.status);
      if ((status & 0x01) === 0) return;
      await this.clock.sleep(1);
    }
    throw new SensorError('TIMEOUT', `${this.what}: reset did not finish`);
  }

  measurementTimeMs(): number {
    return bme280MeasurementTimeMs(this.osrs.t, this.osrs.p, this.osrs.h);
  }

  getCalibration(): Bme280Calibration | undefined {
    return this.calibration ? { ...this.calibration } : undefined;
  }

  async read(): Promise<Bme280Reading> {
    const cal = this.calibration;
    if (!cal) throw new SensorError('DEVICE_UNAVAILABLE', `${this.what}: not initialised`);
    try {
      if (this.mode === 'forced') {
        await this.bus.writeByte(this.address, BME280_REG.ctrlMeas, this.ctrlMeasSleep | 0b01);
        await this.clock.sleep(this.measurementTimeMs());
        let busy = true;
        for (let attempt = 0; attempt < 5 && busy; attempt++) {
          busy = ((await this.bus.readByte(this.address, BME280_REG.status)) & 0x08) !== 0;
          if (busy) await this.clock.sleep(1);
        }
        if (busy) throw new SensorError('TIMEOUT', `${this.what}: measurement did not finish`);
      }
      const raw = await this.bus.readI2cBlock(this.address, BME280_REG.data, 8);
      return this.convert(raw, cal);
    } catch (err) {
      throw deviceError(err, this.what);
    }
  }

  /** Turns the 8 data registers (0xF7..0xFE) into physical values. */
  convert(raw: Buffer, cal: Bme280Calibration): Bme280Reading {
    const adcP = (raw[0] << 12) | (raw[1] << 4) | (raw[2] >> 4);
    const adcT = (raw[3] << 12) | (raw[4] << 4) | (raw[5] >> 4);
    const adcH = (raw[6] << 8) | raw[7];
    if (adcT === BME280_SKIPPED_20BIT) {
      throw new SensorError('TIMEOUT', `${this.what}: no measurement available yet`);
    }
    const { centiCelsius, tFine } = compensateTemperature(adcT, cal);
    const reading: Bme280Reading = { temperature: centiCelsius / 100 };
    if (this.osrs.p && adcP !== BME280_SKIPPED_20BIT) {
      reading.pressure = compensatePressure(adcP, tFine, cal) / 256 / 100;
    }
    if (this.osrs.h && adcH !== BME280_SKIPPED_16BIT) {
      reading.humidity = compensateHumidity(adcH, tFine, cal) / 1024;
    }
    return reading;
  }

  /** Puts the chip to sleep (it keeps its configuration). */
  async sleep(): Promise<void> {
    await this.bus.writeByte(this.address, BME280_REG.ctrlMeas, this.ctrlMeasSleep);
  }
}
