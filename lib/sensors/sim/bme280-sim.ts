/**
 * Register-level BME280 model. It holds calibration registers and answers with raw ADC counts
 * found by inverting the datasheet compensation, so the real driver recovers the simulated
 * temperature, pressure and humidity to within the chip's resolution. Modelled: chip id, soft
 * reset with NVM copy time, ctrl_hum latched by the next ctrl_meas write, forced and normal
 * mode with the datasheet measurement time, resolution by oversampling, the IIR filter, the
 * "skipped" register value, and power-on state after the device was gone.
 */
import { type Clock, systemClock } from '../clock';
import { SeededRandom } from '../../util/random';
import {
  BME280_CHIP_ID,
  BME280_EXAMPLE_CALIBRATION,
  BME280_FILTER_BY_CODE,
  BME280_OVERSAMPLING_BY_CODE,
  BME280_REG,
  BME280_RESET_COMMAND,
  BME280_SKIPPED_16BIT,
  BME280_SKIPPED_20BIT,
  BME280_STANDBY_BY_CODE,
  type Bme280Calibration,
  bme280MeasurementTimeMs,
  encodeBme280Calibration,
} from '../drivers/bme280';
import { ByteRegisterDevice } from './sim-bus';
import { FaultModel, type FaultDefaults } from './faults';
import { Environment, type EnvironmentOptions, type EnvironmentReading, clamp } from './signals';

/*
 * The simulator's raw counts come from inverting the datasheet's floating-point compensation
 * (BME280 datasheet 8.1) in closed form, independently of the driver's integer compensation
 * (datasheet 4.2.3): a mistake in either shows up as a driver reading that misses the truth.
 */

/** The smaller-magnitude root of a*x^2 + b*x + c = 0 (the one near -c/b when a is small). */
function quadraticRoot(a: number, b: number, c: number): number {
  if (a === 0) return -c / b;
  const d = Math.sqrt(Math.max(0, b * b - 4 * a * c));
  // Stable form: q = -(b + sign(b) d) / 2, roots q/a and c/q.
  const q = -(b + Math.sign(b || 1) * d) / 2;
  return c / q;
}

const rawCount = (x: number, max: number): number => clamp(Math.round(x), 0, max);

/** t_fine (temperature x 5120) of a raw temperature count, datasheet floating point. */
export function floatTFine(adcT: number, cal: Bme280Calibration): number {
  const x = adcT / 131072 - cal.T1 / 8192;
  return Math.trunc(8 * cal.T2 * x + cal.T3 * x * x);
}

/**
 * Raw 20-bit temperature count for `celsius`. The datasheet's var1 + var2 is
 * 8·T2·x + T3·x² with x = adc/131072 − T1/8192, and temperature = (var1 + var2) / 5120.
 */
export function invertTemperature(celsius: number, cal: Bme280Calibration): number {
  const x = quadraticRoot(cal.T3, 8 * cal.T2, -celsius * 5120);
  return rawCount((x + cal.T1 / 8192) * 131072, 0xfffff);
}

/**
 * Raw 20-bit pressure count for `pascal` at `tFine`: the datasheet's pressure is
 * p + (P9·p²/2^31 + P8·p/32768 + P7)/16 with p = ((2^20 − adc) − var2/4096)·6250/var1.
 */
export function invertPressure(pascal: number, tFine: number, cal: Bme280Calibration): number {
  let v1 = tFine / 2 - 64000;
  let v2 = (v1 * v1 * cal.P6) / 32768;
  v2 = v2 + v1 * cal.P5 * 2;
  v2 = v2 / 4 + cal.P4 * 65536;
  v1 = ((cal.P3 * v1 * v1) / 524288 + cal.P2 * v1) / 524288;
  v1 = (1 + v1 / 32768) * cal.P1;
  const p = quadraticRoot(cal.P9 / 2147483648 / 16, 1 + cal.P8 / 32768 / 16, cal.P7 / 16 - pascal);
  return rawCount(1048576 - ((p * v1) / 6250 + v2 / 4096), 0xfffff);
}

/**
 * Raw 16-bit humidity count for `percent` at `tFine`: the datasheet's h' = h·(1 − H1·h/524288)
 * with h = (adc − (64·H4 + H5/16384·t)) · H2/65536 · (1 + H6/2^26·t·(1 + H3/2^26·t)), t = tFine − 76800.
 */
export function invertHumidity(percent: number, tFine: number, cal: Bme280Calibration): number {
  const t = tFine - 76800;
  const h = quadraticRoot(-cal.H1 / 524288, 1, -percent);
  const gain = (cal.H2 / 65536) * (1 + (cal.H6 / 67108864) * t * (1 + (cal.H3 / 67108864) * t));
  return rawCount(h / gain + cal.H4 * 64 + (cal.H5 / 16384) * t, 0xffff);
}

/** Rounds a 20-bit count to the resolution the oversampling (or the IIR filter) gives. */
function toResolution(count: number, oversampling: number, filtered: boolean): number {
  const bits = filtered ? 20 : 15 + Math.log2(oversampling) + 1;
  const step = 2 ** (20 - bits);
  return clamp(Math.round(count / step) * step, 0, 0xfffff);
}

export interface Bme280SimOptions {
  clock?: Clock;
  seed?: number;
  calibration?: Bme280Calibration;
  environment?: EnvironmentOptions;
  /** Replaces the environment model: the true values at a time (tests use fixed values). */
  signal?: (timeMs: number) => EnvironmentReading;
}

export const BME280_FAULT_DEFAULTS: FaultDefaults = {
  channels: ['temperature', 'humidity', 'pressure'],
  primary: 'temperature',
  driftPerMinute: { temperature: 0.05, humidity: 0.2, pressure: 0.1 },
  spikeMagnitude: { temperature: 8, humidity: 25, pressure: 15 },
};

export class Bme280Sim extends ByteRegisterDevice {
  readonly chip = 'BME280';
  readonly calibration: Bme280Calibration;
  readonly faults: FaultModel;
  private readonly clock: Clock;
  private readonly signal: (timeMs: number) => EnvironmentReading;
  /** Last true physical values behind the data registers (after faults), for tests. */
  lastTruth: EnvironmentReading | undefined;
  private resetUntil = 0;
  /** Oversampling of humidity in effect (ctrl_hum is latched by a ctrl_meas write). */
  private osrsH = 0;
  private conversionEnd: number | undefined;
  private normalStart: number | undefined;
  private lastCycle = -1;
  private filtered: { t: number; p: number } | undefined;
  private wasGone = false;
  /** Number of measurements performed, for tests. */
  measurements = 0;

  constructor(options: Bme280SimOptions = {}) {
    super();
    this.clock = options.clock ?? systemClock;
    const rng = new SeededRandom(options.seed ?? 1);
    this.calibration = { ...(options.calibration ?? BME280_EXAMPLE_CALIBRATION) };
    const environment = new Environment(rng.fork(1), options.environment);
    this.signal = options.signal ?? ((t) => environment.at(t));
    this.faults = new FaultModel(this.clock, rng.fork(2), BME280_FAULT_DEFAULTS);
    this.powerOn();
  }

  /** Register state after power-on or soft reset: sleep mode, data registers "skipped". */
  private powerOn(): void {
    this.registers.fill(0);
    const { block88, blockE1 } = encodeBme280Calibration(this.calibration);
    this.registers.set(block88, BME280_REG.calib00);
    this.registers.set(blockE1, BME280_REG.calib26);
    this.registers[BME280_REG.chipId] = BME280_CHIP_ID;
    this.writeData(BME280_SKIPPED_20BIT, BME280_SKIPPED_20BIT, BME280_SKIPPED_16BIT);
    this.osrsH = 0;
    this.conversionEnd = undefined;
    this.normalStart = undefined;
    this.lastCycle = -1;
    this.filtered = undefined;
    this.resetUntil = this.clock.now() + 2; // NVM copy after start-up / reset
  }

  isPresent(): boolean {
    const gone = this.faults.isGone();
    if (!gone && this.wasGone) this.powerOn(); // it lost power while it was gone
    this.wasGone = gone;
    return !gone;
  }

  private get ctrlMeas(): number {
    return this.registers[BME280_REG.ctrlMeas];
  }

  private oversampling(): { t: number; p: number; h: number } {
    return {
      t: BME280_OVERSAMPLING_BY_CODE[(this.ctrlMeas >> 5) & 7],
      p: BME280_OVERSAMPLING_BY_CODE[(this.ctrlMeas >> 2) & 7],
      h: BME280_OVERSAMPLING_BY_CODE[this.osrsH & 7],
    };
  }

  private measurementMs(): number {
    const o = this.oversampling();
    return bme280MeasurementTimeMs(o.t, o.p, o.h, true);
  }

  protected override onWrite(register: number, value: number): void {
    if (register === BME280_REG.reset) {
      if (value === BME280_RESET_COMMAND) this.powerOn();
      return;
    }
    const writable = [BME280_REG.ctrlHum, BME280_REG.ctrlMeas, BME280_REG.config] as number[];
    if (!writable.includes(register)) return; // id, calibration, status and data are read-only
    this.registers[register] = value;
    if (register === BME280_REG.ctrlMeas) {
      this.osrsH = this.registers[BME280_REG.ctrlHum] & 7;
      const mode = value & 3;
      const now = this.clock.now();
      if (mode === 1 || mode === 2) {
        this.conversionEnd = now + this.measurementMs();
        this.normalStart = undefined;
      } else if (mode === 3) {
        this.normalStart = now;
        this.lastCycle = -1;
        this.conversionEnd = undefined;
      } else {
        this.normalStart = undefined;
      }
    }
  }

  /** Completes measurements that are due by now and updates status and data registers. */
  private update(): void {
    const now = this.clock.now();
    let status = now < this.resetUntil ? 0x01 : 0;
    if (this.conversionEnd !== undefined) {
      if (now >= this.conversionEnd) {
        this.measure(this.conversionEnd);
        this.conversionEnd = undefined;
        this.registers[BME280_REG.ctrlMeas] &= ~3; // forced mode returns to sleep
      } else {
        status |= 0x08;
      }
    } else if (this.normalStart !== undefined) {
      const measureMs = this.measurementMs();
      const period = measureMs + BME280_STANDBY_BY_CODE[(this.registers[BME280_REG.config] >> 5) & 7];
      const elapsed = now - this.normalStart;
      const cycle = Math.floor((elapsed - measureMs) / period);
      if (cycle > this.lastCycle && elapsed >= measureMs) {
        this.lastCycle = cycle;
        this.measure(this.normalStart + cycle * period + measureMs);
      }
      if (elapsed - Math.floor(elapsed / period) * period < measureMs) status |= 0x08;
    }
    this.registers[BME280_REG.status] = status;
  }

  protected override beforeRead(): void {
    this.update();
  }

  /** One measurement of the true values at `timeMs`, turned into raw counts. */
  private measure(timeMs: number): void {
    this.measurements++;
    const truth = this.faults.apply({ ...this.signal(timeMs) }) as unknown as EnvironmentReading;
    truth.humidity = clamp(truth.humidity, 0, 100);
    this.lastTruth = truth;
    const o = this.oversampling();
    const cal = this.calibration;
    const filterCoefficient = BME280_FILTER_BY_CODE[(this.registers[BME280_REG.config] >> 2) & 7];
    const filterOn = filterCoefficient > 0;
    let adcT = o.t
      ? toResolution(invertTemperature(truth.temperature, cal), o.t, filterOn)
      : BME280_SKIPPED_20BIT;
    const tFineUnfiltered = floatTFine(adcT, cal);
    let adcP = o.p
      ? toResolution(invertPressure(truth.pressure * 100, tFineUnfiltered, cal), o.p, filterOn)
      : BME280_SKIPPED_20BIT;
    if (filterOn && o.t) {
      // Datasheet 3.4.4: data = (data_prev * (c - 1) + data_new) / c, on temperature and pressure.
      const prev = this.filtered ?? { t: adcT, p: adcP };
      adcT = Math.round((prev.t * (filterCoefficient - 1) + adcT) / filterCoefficient);
      if (o.p) adcP = Math.round((prev.p * (filterCoefficient - 1) + adcP) / filterCoefficient);
      this.filtered = { t: adcT, p: adcP };
    }
    const tFine = floatTFine(adcT, cal);
    const adcH = o.h ? invertHumidity(truth.humidity, tFine, cal) : BME280_SKIPPED_16BIT;
    this.writeData(adcP, adcT, adcH);
  }

  private writeData(adcP: number, adcT: number, adcH: number): void {
    const r = this.registers;
    const base = BME280_REG.data;
    r[base] = (adcP >> 12) & 0xff;
    r[base + 1] = (adcP >> 4) & 0xff;
    r[base + 2] = (adcP & 0x0f) << 4;
    r[base + 3] = (adcT >> 12) & 0xff;
    r[base + 4] = (adcT >> 4) & 0xff;
    r[base + 5] = (adcT & 0x0f) << 4;
    r[base + 6] = (adcH >> 8) & 0xff;
    r[base + 7] = adcH & 0xff;
  }
}
