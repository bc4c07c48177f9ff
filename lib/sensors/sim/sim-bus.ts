/**
 * A simulated I2C bus: register-level device models hosted at addresses, behind the same
 * I2cBus interface the real bus has, so drivers run unchanged against them. A device that is
 * absent (removed, or "gone" by an injected fault) fails like a real one that does not
 * acknowledge: the operation rejects with an errno-style error (code ENXIO).
 */
import { I2cBus, checkAddress, checkBlockLength } from '../i2c-bus';
import { SensorError, hex } from '../errors';

/** A device model that answers register reads and writes. */
export interface SimDevice {
  /** Chip name, for scans and messages. */
  readonly chip: string;
  /** False while an injected "gone" fault lasts: the device does not acknowledge. */
  isPresent(): boolean;
  readRegisters(register: number, length: number): Buffer;
  writeRegisters(register: number, data: Buffer): void;
}

function osError(code: string, message: string): Error {
  return Object.assign(new Error(`${code}: ${message}`), { code });
}

export class SimulatedI2cBus implements I2cBus {
  readonly simulated = true;
  private readonly devices = new Map<number, SimDevice>();
  private closed = false;
  private unplugged = false;
  /** Count of transfers, for tests that check a driver's bus traffic. */
  transfers = 0;

  constructor(readonly busNumber = 1) {}

  attach(address: number, device: SimDevice): this {
    checkAddress(address);
    this.devices.set(address, device);
    return this;
  }

  /** Removes the device at `address` (it stops answering) and returns it so it can be put back. */
  detach(address: number): SimDevice | undefined {
    const device = this.devices.get(address);
    this.devices.delete(address);
    return device;
  }

  device(address: number): SimDevice | undefined {
    return this.devices.get(address);
  }

  /** The whole bus disappears (an adapter unplugged) or comes back. */
  setUnplugged(unplugged: boolean): void {
    this.unplugged = unplugged;
  }

  isClosed(): boolean {
    return this.closed;
  }

  private target(address: number, operation: string): SimDevice {
    checkAddress(address);
    if (this.closed) throw new SensorError('DEVICE_UNAVAILABLE', `I2C bus ${this.busNumber} is closed`);
    if (this.unplugged) throw osError('ENODEV', `no such device, ${operation} on I2C bus ${this.busNumber}`);
    this.transfers++;
    const device = this.devices.get(address);
    if (!device || !device.isPresent()) {
      throw osError('ENXIO', `no such device or address, ${operation} ${hex(address)}`);
    }
    return device;
  }

  async readByte(address: number, register: number): Promise<number> {
    return this.target(address, 'read').readRegisters(register & 0xff, 1)[0];
  }

  async writeByte(address: number, register: number, value: number): Promise<void> {
    this.target(address, 'write').writeRegisters(register & 0xff, Buffer.from([value & 0xff]));
  }

  async readI2cBlock(address: number, register: number, length: number): Promise<Buffer> {
    checkBlockLength(length);
    return Buffer.from(this.target(address, 'read').readRegisters(register & 0xff, length));
  }

  async writeI2cBlock(address: number, register: number, data: Buffer | readonly number[]): Promise<void> {
    const buffer = Buffer.from(data as readonly number[]);
    checkBlockLength(buffer.length);
    this.target(address, 'write').writeRegisters(register & 0xff, buffer);
  }

  async scan(): Promise<number[]> {
    if (this.closed) throw new SensorError('DEVICE_UNAVAILABLE', `I2C bus ${this.busNumber} is closed`);
    if (this.unplugged) throw osError('ENODEV', `no such device, scan on I2C bus ${this.busNumber}`);
    return [...this.devices.entries()]
      .filter(([, device]) => device.isPresent())
      .map(([address]) => address)
      .sort((a, b) => a - b);
  }

  async close(): Promise<void> {
    this.closed = true;
  }
}

/**
 * Base for devices with one byte per register address and auto-incrementing burst access
 * (BME280, MPU6050, LM75-style parts). Subclasses hook reads of live registers and writes of
 * control registers.
 */
export abstract class ByteRegisterDevice implements SimDevice {
  abstract readonly chip: string;
  protected readonly registers = new Uint8Array(256);

  abstract isPresent(): boolean;

  /** Called once before a burst read starting at `register`, e.g. to latch fresh samples. */
  protected beforeRead(_register: number, _length: number): void {}

  /** Called for every written byte; the default stores it. */
  protected onWrite(register: number, value: number): void {
    this.registers[register] = value;
  }

  readRegisters(register: number, length: number): Buffer {
    this.beforeRead(register, length);
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = this.registers[(register + i) & 0xff];
    return out;
  }

  writeRegisters(register: number, data: Buffer): void {
    for (let i = 0; i < data.length; i++) this.onWrite((register + i) & 0xff, data[i]);
  }
}
