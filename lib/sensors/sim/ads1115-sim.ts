/**
 * Register-level ADS1115 model: the address pointer selects one of four 16-bit registers;
 * writing the config with OS set starts a single-shot conversion that takes one sample period,
 * during which OS reads 0; the result is the differential input voltage scaled by the full-scale
 * range, saturating at the 16-bit limits. Continuous mode converts back to back.
 */
import { type Clock, systemClock } from '../clock';
import { SeededRandom } from '../../util/random';
import {
  ADS1115_CONFIG_DEFAULT,
  ADS1115_DATA_RATES,
  ADS1115_FULL_SCALE,
  ADS1115_OS,
  ADS1115_REG,
} from '../drivers/ads1115';
import type { SimDevice } from './sim-bus';
import { FaultModel, type FaultDefaults } from './faults';
import { Environment, clamp } from './signals';

/** Pin voltages (V against GND) of AIN0..AIN3. */
export type Ads1115PinVoltages = [number, number, number, number];

export interface Ads1115SimOptions {
  clock?: Clock;
  seed?: number;
  /** Supply voltage; inputs are clamped to GND-0.3 .. VDD+0.3 V. Default 3.3. */
  supply?: number;
  /** The pin voltages at a time; default: a slowly swept potentiometer on AIN0, a thermistor
   * divider following the room temperature on AIN1, half the supply on AIN2, ground on AIN3. */
  signal?: (timeMs: number) => Ads1115PinVoltages;
}

export const ADS1115_FAULT_DEFAULTS: FaultDefaults = {
  channels: ['ain0', 'ain1', 'ain2', 'ain3'],
  primary: 'ain0',
  driftPerMinute: { ain0: 0.005, ain1: 0.005, ain2: 0.005, ain3: 0.005 },
  spikeMagnitude: { ain0: 1, ain1: 1, ain2: 1, ain3: 1 },
};

/** Pairs by MUX[2:0] as [positive, negative] pin; -1 is GND. */
const MUX_PINS: Array<[number, number]> = [
  [0, 1],
  [0, 3],
  [1, 3],
  [2, 3],
  [0, -1],
  [1, -1],
  [2, -1],
  [3, -1],
];

export class Ads1115Sim implements SimDevice {
  readonly chip = 'ADS1115';
  readonly faults: FaultModel;
  private readonly clock: Clock;
  private readonly supply: number;
  private readonly signal: (timeMs: number) => Ads1115PinVoltages;
  private pointer = 0;
  private config = ADS1115_CONFIG_DEFAULT;
  private conversion = 0;
  private loThresh = 0x8000;
  private hiThresh = 0x7fff;
  private conversionEnd: number | undefined;
  private wasGone = false;
  /** Pin voltages behind the last conversion (after faults), for tests. */
  lastPins: Ads1115PinVoltages | undefined;

  constructor(options: Ads1115SimOptions = {}) {
    this.clock = options.clock ?? systemClock;
    const rng = new SeededRandom(options.seed ?? 3);
    this.supply = options.supply ?? 3.3;
    const environment = new Environment(rng.fork(1));
    const noise = rng.fork(2);
    const startMs = this.clock.now();
    this.signal =
      options.signal ??
      ((t) => {
        const room = environment.at(t).temperature;
        const seconds = (t - startMs) / 1000;
        return [
          1.65 + 1.2 * Math.sin((2 * Math.PI * seconds) / 60) + noise.gaussian(0.0005),
          // 10k NTC (beta 3950) under a 10k resistor to 3.3 V.
          (3.3 * ntcOhms(room)) / (ntcOhms(room) + 10_000) + noise.gaussian(0.0005),
          this.supply / 2 + noise.gaussian(0.0003),
          noise.gaussian(0.0002),
        ];
      });
    this.faults = new FaultModel(this.clock, rng.fork(3), ADS1115_FAULT_DEFAULTS);
  }

  private powerOn(): void {
    this.pointer = 0;
    this.config = ADS1115_CONFIG_DEFAULT;
    this.conversion = 0;
    this.loThresh = 0x8000;
    this.hiThresh = 0x7fff;
    this.conversionEnd = undefined;
  }

  isPresent(): boolean {
    const gone = this.faults.isGone();
    if (!gone && this.wasGone) this.powerOn();
    this.wasGone = gone;
    return !gone;
  }

  private periodMs(): number {
    return 1000 / ADS1115_DATA_RATES[(this.config >> 5) & 7];
  }

  private get continuous(): boolean {
    return (this.config & 0x0100) === 0;
  }

  /** Finishes a conversion that is due by now. */
  private update(): void {
    const now = this.clock.now();
    if (this.conversionEnd === undefined || now < this.conversionEnd) return;
    if (this.continuous) {
      const periods = Math.floor((now - this.conversionEnd) / this.periodMs());
      this.conversion = this.convertAt(this.conversionEnd + periods * this.periodMs());
      this.conversionEnd += (periods + 1) * this.periodMs();
    } else {
      this.conversion = this.convertAt(this.conversionEnd);
      this.conversionEnd = undefined;
      this.config |= ADS1115_OS; // idle again
    }
  }

  private convertAt(timeMs: number): number {
    const raw = this.signal(timeMs);
    const faulted = this.faults.apply({ ain0: raw[0], ain1: raw[1], ain2: raw[2], ain3: raw[3] });
    const pins = [faulted.ain0, faulted.ain1, faulted.ain2, faulted.ain3].map((v) =>
      clamp(v, -0.3, this.supply + 0.3),
    ) as Ads1115PinVoltages;
    this.lastPins = pins;
    const [positive, negative] = MUX_PINS[(this.config >> 12) & 7];
    const volts = pins[positive] - (negative < 0 ? 0 : pins[negative]);
    const fullScale = ADS1115_FULL_SCALE[(this.config >> 9) & 7];
    return clamp(Math.round((volts / fullScale) * 32768), -32768, 32767);
  }

  private registerValue(register: number): number {
    switch (register) {
      case ADS1115_REG.conversion:
        return this.conversion & 0xffff;
      case ADS1115_REG.config:
        return this.config;
      case ADS1115_REG.loThresh:
        return this.loThresh;
      default:
        return this.hiThresh;
    }
  }

  readRegisters(register: number, length: number): Buffer {
    this.pointer = register & 3;
    this.update();
    const value = this.registerValue(this.pointer);
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = i % 2 === 0 ? value >> 8 : value & 0xff;
    return out;
  }

  writeRegisters(register: number, data: Buffer): void {
    this.pointer = register & 3;
    if (data.length < 2) return; // a pointer-only write
    this.update();
    const value = data.readUInt16BE(0);
    if (this.pointer === ADS1115_REG.config) {
      const start = (value & ADS1115_OS) !== 0;
      this.config = value & 0x7fff;
      if (value & 0x0100) {
        // Single-shot: OS=1 starts a conversion (OS reads 0 until it is done); else power-down.
        if (start && this.conversionEnd === undefined)
          this.conversionEnd = this.clock.now() + this.periodMs();
        else if (this.conversionEnd === undefined) this.config |= ADS1115_OS;
      } else {
        this.conversionEnd = this.clock.now() + this.periodMs();
      }
    } else if (this.pointer === ADS1115_REG.loThresh) {
      this.loThresh = value;
    } else if (this.pointer === ADS1115_REG.hiThresh) {
      this.hiThresh = value;
    }
  }
}

/** Resistance of a 10 kΩ (25 °C) NTC thermistor with beta 3950 at `celsius`. */
function ntcOhms(celsius: number): number {
  return 10_000 * Math.exp(3950 * (1 / (celsius + 273.15) - 1 / 298.15));
}
