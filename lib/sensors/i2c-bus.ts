/**
 * The I2C bus as drivers see it: register reads and writes on 7-bit addresses. Two
 * implementations: the Linux bus through the `i2c-bus` module (here), and a simulated bus
 * holding register-level device models (sim/sim-bus.ts).
 */
import fs from 'node:fs';
import path from 'node:path';
import { SensorError, osErrorCode, hex } from './errors';

export interface I2cBus {
  readonly busNumber: number;
  readonly simulated: boolean;
  readByte(address: number, register: number): Promise<number>;
  writeByte(address: number, register: number, value: number): Promise<void>;
  /** Reads `length` (1..32) consecutive registers starting at `register`. */
  readI2cBlock(address: number, register: number, length: number): Promise<Buffer>;
  writeI2cBlock(address: number, register: number, data: Buffer | readonly number[]): Promise<void>;
  /** Addresses 0x03..0x77 that acknowledge. */
  scan(): Promise<number[]>;
  close(): Promise<void>;
}

/** Largest block an SMBus/I2C block transfer carries. */
export const MAX_BLOCK_LENGTH = 32;

export function checkAddress(address: number): void {
  if (!Number.isInteger(address) || address < 0x03 || address > 0x77) {
    throw new SensorError('BAD_CONFIG', `I2C address ${address} is outside 0x03..0x77`);
  }
}

export function checkBlockLength(length: number): void {
  if (!Number.isInteger(length) || length < 1 || length > MAX_BLOCK_LENGTH) {
    throw new SensorError('BAD_CONFIG', `I2C block length ${length} is outside 1..${MAX_BLOCK_LENGTH}`);
  }
}

/** The subset of the `i2c-bus` module used here (its promises API). */
interface I2cModule {
  openPromisified(busNumber: number): Promise<PromisifiedBus>;
}
interface PromisifiedBus {
  close(): Promise<void>;
  scan(startAddr: number, endAddr: number): Promise<number[]>;
  readByte(address: number, command: number): Promise<number>;
  writeByte(address: number, command: number, byte: number): Promise<void>;
  readI2cBlock(
    address: number,
    command: number,
    length: number,
    buffer: Buffer,
  ): Promise<{ bytesRead: number; buffer: Buffer }>;
  writeI2cBlock(
    address: number,
    command: number,
    length: number,
    buffer: Buffer,
  ): Promise<{ bytesWritten: number; buffer: Buffer }>;
}

export interface OpenI2cOptions {
  /** Where the bus device files live (tests point this elsewhere). Default /dev. */
  devDir?: string;
  /** Loads the `i2c-bus` module; default require('i2c-bus'), done lazily so it stays optional. */
  loadModule?: () => I2cModule;
}

function defaultLoadModule(): I2cModule {
  return require('i2c-bus') as I2cModule;
}

function noBus(busNumber: number, devicePath: string, detail: string): SensorError {
  return new SensorError(
    'NO_HARDWARE',
    `no I2C bus ${busNumber} on this machine (${devicePath} ${detail}); enable I2C (raspi-config) ` +
      `or tick "Simulate (no hardware)"`,
    'ENOENT',
    'i2c-bus-missing',
    { bus: busNumber },
  );
}

/** Opens /dev/i2c-<busNumber>; fails with a plain "no I2C bus N on this machine" where there is none. */
export async function openI2cBus(busNumber: number, options: OpenI2cOptions = {}): Promise<I2cBus> {
  if (!Number.isInteger(busNumber) || busNumber < 0) {
    throw new SensorError('BAD_CONFIG', `I2C bus number ${busNumber} is not a whole number >= 0`);
  }
  const devicePath = path.join(options.devDir ?? '/dev', `i2c-${busNumber}`);
  if (!fs.existsSync(devicePath)) throw noBus(busNumber, devicePath, 'not found');
  let i2c: I2cModule;
  try {
    i2c = (options.loadModule ?? defaultLoadModule)();
  } catch (err) {
    throw new SensorError(
      'NO_HARDWARE',
      `I2C is not available: the optional module i2c-bus could not be loaded ` +
        `(${err instanceof Error ? err.message : String(err)}); run "npm install i2c-bus" on the board`,
      undefined,
      'i2c-module-missing',
    );
  }
  try {
    const bus = await i2c.openPromisified(busNumber);
    return new LinuxI2cBus(busNumber, bus);
  } catch (err) {
    const code = osErrorCode(err);
    if (code === 'ENOENT' || code === 'ENODEV') throw noBus(busNumber, devicePath, 'not found');
    if (code === 'EACCES' || code === 'EPERM') {
      throw new SensorError(
        'NO_ACCESS',
        `no permission to open ${devicePath}; add the Node-RED user to the "i2c" group`,
        code,
      );
    }
    throw new SensorError(
      'DEVICE_UNAVAILABLE',
      `cannot open I2C bus ${busNumber}: ${err instanceof Error ? err.message : String(err)}`,
      code,
    );
  }
}

class LinuxI2cBus implements I2cBus {
  readonly simulated = false;
  private closed = false;

  constructor(
    readonly busNumber: number,
    private readonly bus: PromisifiedBus,
  ) {}

  private open(): PromisifiedBus {
    if (this.closed) throw new SensorError('DEVICE_UNAVAILABLE', `I2C bus ${this.busNumber} is closed`);
    return this.bus;
  }

  readByte(address: number, register: number): Promise<number> {
    checkAddress(address);
    return this.open().readByte(address, register);
  }

  writeByte(address: number, register: number, value: number): Promise<void> {
    checkAddress(address);
    return this.open().writeByte(address, register, value & 0xff);
  }

  async readI2cBlock(address: number, register: number, length: number): Promise<Buffer> {
    checkAddress(address);
    checkBlockLength(length);
    const buffer = Buffer.alloc(length);
    const { bytesRead } = await this.open().readI2cBlock(address, register, length, buffer);
    if (bytesRead !== length) {
      throw Object.assign(new Error(`short read from ${hex(address)}: ${bytesRead} of ${length} bytes`), {
        code: 'EIO',
      });
    }
    return buffer;
  }

  async writeI2cBlock(address: number, register: number, data: Buffer | readonly number[]): Promise<void> {
    checkAddress(address);
    const buffer = Buffer.from(data as readonly number[]);
    checkBlockLength(buffer.length);
    await this.open().writeI2cBlock(address, register, buffer.length, buffer);
  }

  scan(): Promise<number[]> {
    return this.open().scan(0x03, 0x77);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.bus.close();
  }
}
