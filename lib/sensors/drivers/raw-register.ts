/**
 * Reads a value from any I2C device's registers: address, start register, length 1..4 bytes,
 * byte order, signed or unsigned, then value * scale + offset. Optional setup writes (e.g.
 * waking a chip) run once before the first read.
 */
import type { I2cBus } from '../i2c-bus';
import { SensorError, deviceError, hex } from '../errors';

export type ByteOrder = 'big' | 'little';

export interface RegisterWrite {
  register: number;
  value: number;
}

export interface RawRegisterOptions {
  register: number;
  /** Bytes to read and combine into one integer (1..4). */
  length?: number;
  byteOrder?: ByteOrder;
  signed?: boolean;
  scale?: number;
  offset?: number;
  /** Payload key of the value (default "value"). */
  channel?: string;
  unit?: string;
  /** Register writes done once when the device is (re)initialised. */
  setup?: RegisterWrite[];
}

/** Combines bytes into an integer with the given byte order and signedness. */
export function decodeRegisterValue(bytes: Buffer, byteOrder: ByteOrder, signed: boolean): number {
  const length = bytes.length;
  if (length < 1 || length > 4) throw new SensorError('BAD_CONFIG', `register length ${length} is not 1..4`);
  return byteOrder === 'big'
    ? signed
      ? bytes.readIntBE(0, length)
      : bytes.readUIntBE(0, length)
    : signed
      ? bytes.readIntLE(0, length)
      : bytes.readUIntLE(0, length);
}

function byteValue(text: string, what: string): number {
  const n = Number(text.trim());
  if (!Number.isInteger(n) || n < 0 || n > 255)
    throw new SensorError('BAD_CONFIG', `${what} "${text}" is not a byte`);
  return n;
}

/** Parses setup writes written as "0x6B=0x00, 0x1C=0x08". */
export function parseRegisterWrites(text: string): RegisterWrite[] {
  return text
    .split(/[,;\n]/)
    .map((item) => item.trim())
    .filter(Boolean)
    .map((item) => {
      const [register, value, extra] = item.split('=');
      if (value === undefined || extra !== undefined) {
        throw new SensorError('BAD_CONFIG', `setup write "${item}" is not register=value`);
      }
      return { register: byteValue(register, 'register'), value: byteValue(value, 'value') };
    });
}

export class RawRegister {
  readonly what: string;
  readonly channel: string;
  readonly unit: string;
  private readonly o: Required<Omit<RawRegisterOptions, 'channel' | 'unit'>>;
  private ready = false;

  constructor(
    private readonly bus: I2cBus,
    readonly address: number,
    options: RawRegisterOptions,
  ) {
    this.what = `device at ${hex(address)} on I2C bus ${bus.busNumber}`;
    this.o = {
      length: 1,
      byteOrder: 'big',
      signed: false,
      scale: 1,
      offset: 0,
      setup: [],
      ...options,
    };
    if (!Number.isInteger(this.o.register) || this.o.register < 0 || this.o.register > 255) {
      throw new SensorError('BAD_CONFIG', `register ${this.o.register} is not 0..255`);
    }
    if (!Number.isInteger(this.o.length) || this.o.length < 1 || this.o.length > 4) {
      throw new SensorError('BAD_CONFIG', `register length ${this.o.length} is not 1..4`);
    }
    if (this.o.byteOrder !== 'big' && this.o.byteOrder !== 'little') {
      throw new SensorError('BAD_CONFIG', `byte order ${String(this.o.byteOrder)} is not big or little`);
    }
    if (!Number.isFinite(this.o.scale) || !Number.isFinite(this.o.offset)) {
      throw new SensorError('BAD_CONFIG', 'scale and offset must be finite numbers');
    }
    this.channel = options.channel || 'value';
    this.unit = options.unit ?? '';
  }

  async init(): Promise<void> {
    this.ready = false;
    try {
      for (const write of this.o.setup) await this.bus.writeByte(this.address, write.register, write.value);
      this.ready = true;
    } catch (err) {
      throw deviceError(err, this.what);
    }
  }

  async read(): Promise<Record<string, number>> {
    if (!this.ready) throw new SensorError('DEVICE_UNAVAILABLE', `${this.what}: not initialised`);
    try {
      const bytes = await this.bus.readI2cBlock(this.address, this.o.register, this.o.length);
      const integer = decodeRegisterValue(bytes, this.o.byteOrder, this.o.signed);
      return { [this.channel]: integer * this.o.scale + this.o.offset };
    } catch (err) {
      throw deviceError(err, this.what);
    }
  }
}
