/**
 * TI ADS1115 16-bit ADC over I2C, following the datasheet (SBAS444): input multiplexer for
 * single-ended and differential inputs, programmable gain (full-scale range), data rate, and
 * single-shot conversions that wait for the conversion-ready (OS) bit.
 */
import type { I2cBus } from '../i2c-bus';
import { type Clock, systemClock } from '../clock';
import { SensorError, deviceError, hex } from '../errors';

export const ADS1115_ADDRESSES = [0x48, 0x49, 0x4a, 0x4b] as const;

export const ADS1115_REG = { conversion: 0x00, config: 0x01, loThresh: 0x02, hiThresh: 0x03 } as const;

/** Power-on value of the config register. */
export const ADS1115_CONFIG_DEFAULT = 0x8583;
export const ADS1115_OS = 0x8000;
export const ADS1115_MODE_SINGLE = 0x0100;
/** Comparator off (COMP_QUE = 11), as at power-on. */
export const ADS1115_COMPARATOR_OFF = 0x0003;

/** Inputs by MUX[2:0]: 0..3 differential pairs, 4..7 single-ended against GND. */
export const ADS1115_INPUTS = [
  'ain0-ain1',
  'ain0-ain3',
  'ain1-ain3',
  'ain2-ain3',
  'ain0',
  'ain1',
  'ain2',
  'ain3',
] as const;
export type Ads1115Input = (typeof ADS1115_INPUTS)[number];

/** Full-scale range (±V) by PGA[2:0]. */
export const ADS1115_FULL_SCALE = [6.144, 4.096, 2.048, 1.024, 0.512, 0.256, 0.256, 0.256] as const;
export type Ads1115FullScale = 6.144 | 4.096 | 2.048 | 1.024 | 0.512 | 0.256;
/** Samples per second by DR[2:0]. */
export const ADS1115_DATA_RATES = [8, 16, 32, 64, 128, 250, 475, 860] as const;
export type Ads1115DataRate = (typeof ADS1115_DATA_RATES)[number];

/**
 * Reads a channel name: "ain0", "0", "A0" for single-ended, "ain0-ain1", "0-1" for a
 * differential pair (only the pairs the multiplexer has).
 */
export function parseAds1115Input(text: string): Ads1115Input {
  const parts = text
    .trim()
    .toLowerCase()
    .split(/\s*[-_]\s*/)
    .map((part) => part.replace(/^(ain|a)/, ''));
  const name = parts.map((p) => `ain${p}`).join('-');
  if (parts.every((p) => /^[0-3]$/.test(p)) && (ADS1115_INPUTS as readonly string[]).includes(name)) {
    return name as Ads1115Input;
  }
  throw new SensorError(
    'BAD_CONFIG',
    `ADS1115 input "${text}" is not one of ain0..ain3 or the pairs ain0-ain1, ain0-ain3, ain1-ain3, ain2-ain3`,
  );
}

/** The payload key of an input: "ain0", or "ain0_ain1" for a pair (keeps it a plain identifier). */
export function ads1115ChannelName(input: Ads1115Input): string {
  return input.replace('-', '_');
}

export interface Ads1115Options {
  /** Inputs to convert on every read, in order (default ["ain0"]). */
  inputs?: Ads1115Input[];
  /** Full-scale range ±V (PGA); default 4.096. */
  fullScale?: Ads1115FullScale;
  /** Samples per second; default 128. */
  dataRate?: Ads1115DataRate;
}

/** Converts a signed conversion result to volts for a full-scale range. */
export function ads1115Volts(code: number, fullScale: number): number {
  return (code * fullScale) / 32768;
}

export class Ads1115 {
  readonly what: string;
  readonly inputs: Ads1115Input[];
  private readonly pga: number;
  private readonly dr: number;
  private ready = false;

  constructor(
    private readonly bus: I2cBus,
    readonly address = 0x48,
    options: Ads1115Options = {},
    private readonly clock: Clock = systemClock,
  ) {
    this.what = `ADS1115 at ${hex(address)} on I2C bus ${bus.busNumber}`;
    this.inputs = (options.inputs ?? ['ain0']).map((input) => parseAds1115Input(input));
    if (this.inputs.length === 0) throw new SensorError('BAD_CONFIG', 'ADS1115 needs at least one input');
    const fullScale = options.fullScale ?? 4.096;
    this.pga = ADS1115_FULL_SCALE.indexOf(fullScale as (typeof ADS1115_FULL_SCALE)[number]);
    if (this.pga < 0) {
      throw new SensorError(
        'BAD_CONFIG',
        `ADS1115 full scale ±${fullScale} V is not one of 6.144, 4.096, 2.048, 1.024, 0.512, 0.256`,
      );
    }
    this.dr = ADS1115_DATA_RATES.indexOf(options.dataRate ?? 128);
    if (this.dr < 0) {
      throw new SensorError(
        'BAD_CONFIG',
        `ADS1115 data rate ${options.dataRate} is not one of ${ADS1115_DATA_RATES.join(', ')}`,
      );
    }
  }

  get fullScale(): number {
    return ADS1115_FULL_SCALE[this.pga];
  }

  get dataRate(): number {
    return ADS1115_DATA_RATES[this.dr];
  }

  /** The config word that starts a single-shot conversion of `input`. */
  configFor(input: Ads1115Input, start = true): number {
    const mux = ADS1115_INPUTS.indexOf(input);
    return (
      (start ? ADS1115_OS : 0) |
      (mux << 12) |
      (this.pga << 9) |
      ADS1115_MODE_SINGLE |
      (this.dr << 5) |
      ADS1115_COMPARATOR_OFF
    );
  }

  /**
   * The chip has no id register: check that it answers and that the config register holds what
   * is written to it (with OS clear, so no conversion starts).
   */
  async init(): Promise<void> {
    this.ready = false;
    try {
      const probe = this.configFor(this.inputs[0], false);
      await this.writeRegister(ADS1115_REG.config, probe);
      const back = await this.readRegister(ADS1115_REG.config);
      if ((back & 0x7fff) !== probe) {
        throw new SensorError(
          'WRONG_CHIP',
          `${this.what}: config register reads ${hex(back, 4)} after writing ${hex(probe, 4)}; not an ADS1115?`,
        );
      }
      this.ready = true;
    } catch (err) {
      throw deviceError(err, this.what);
    }
  }

  private async readRegister(register: number): Promise<number> {
    const data = await this.bus.readI2cBlock(this.address, register, 2);
    return data.readUInt16BE(0);
  }

  private writeRegister(register: number, value: number): Promise<void> {
    return this.bus.writeI2cBlock(this.address, register, [(value >> 8) & 0xff, value & 0xff]);
  }

  /** One single-shot conversion: start, wait about one sample period, poll OS, read the result. */
  async convert(input: Ads1115Input): Promise<number> {
    await this.writeRegister(ADS1115_REG.config, this.configFor(input));
    // The datasheet allows the data rate to be 10% slow.
    await this.clock.sleep((1000 / this.dataRate) * 1.1 + 0.1);
    for (let attempt = 0; attempt < 10; attempt++) {
      if ((await this.readRegister(ADS1115_REG.config)) & ADS1115_OS) {
        const code = (await this.bus.readI2cBlock(this.address, ADS1115_REG.conversion, 2)).readInt16BE(0);
        return ads1115Volts(code, this.fullScale);
      }
      await this.clock.sleep(Math.max(1, 100 / this.dataRate));
    }
    throw new SensorError('TIMEOUT', `${this.what}: conversion of ${input} did not finish`);
  }

  /** Converts every configured input; keys as ads1115ChannelName, values in volts. */
  async read(): Promise<Record<string, number>> {
    if (!this.ready) throw new SensorError('DEVICE_UNAVAILABLE', `${this.what}: not initialised`);
    try {
      const out: Record<string, number> = {};
      for (const input of this.inputs) out[ads1115ChannelName(input)] = await this.convert(input);
      return out;
    } catch (err) {
      throw deviceError(err, this.what);
    }
  }
}
