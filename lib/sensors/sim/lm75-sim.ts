/**
 * Register-level model of an LM75/TMP102-style temperature sensor: pointer register, 16-bit
 * big-endian temperature with the value left-aligned (°C = signed word / 256), configuration,
 * T_HYST and T_OS. It is what the raw register reader meets at its address in simulation.
 */
import { type Clock, systemClock } from '../clock';
import { SeededRandom } from '../../util/random';
import type { SimDevice } from './sim-bus';
import { FaultModel, type FaultDefaults } from './faults';
import { Environment, type EnvironmentOptions, clamp } from './signals';

export interface Lm75SimOptions {
  clock?: Clock;
  seed?: number;
  environment?: EnvironmentOptions;
  /** Resolution in bits of the temperature (9 for LM75, 11 for LM75A, 12 for TMP102). */
  bits?: 9 | 10 | 11 | 12;
  signal?: (timeMs: number) => number;
}

export const LM75_FAULT_DEFAULTS: FaultDefaults = {
  channels: ['temperature'],
  primary: 'temperature',
  driftPerMinute: { temperature: 0.05 },
  spikeMagnitude: { temperature: 8 },
};

export class Lm75Sim implements SimDevice {
  readonly chip = 'LM75';
  readonly faults: FaultModel;
  private readonly clock: Clock;
  private readonly signal: (timeMs: number) => number;
  private readonly bits: number;
  private pointer = 0;
  private config = 0;
  private hysteresis = 75 * 256;
  private overTemperature = 80 * 256;
  lastTruth: number | undefined;

  constructor(options: Lm75SimOptions = {}) {
    this.clock = options.clock ?? systemClock;
    const rng = new SeededRandom(options.seed ?? 4);
    const environment = new Environment(rng.fork(1), options.environment);
    this.signal = options.signal ?? ((t) => environment.at(t).temperature);
    this.bits = options.bits ?? 11;
    this.faults = new FaultModel(this.clock, rng.fork(2), LM75_FAULT_DEFAULTS);
  }

  isPresent(): boolean {
    return !this.faults.isGone();
  }

  private temperatureWord(): number {
    const truth = this.faults.apply({ temperature: this.signal(this.clock.now()) }).temperature;
    this.lastTruth = truth;
    const step = 2 ** (8 - (this.bits - 8)); // LSBs of the word per resolution step
    const word = Math.round((truth * 256) / step) * step;
    return clamp(word, -32768, 32767) & 0xffff;
  }

  readRegisters(register: number, length: number): Buffer {
    this.pointer = register & 3;
    const value =
      this.pointer === 0
        ? this.temperatureWord()
        : this.pointer === 1
          ? this.config << 8
          : this.pointer === 2
            ? this.hysteresis
            : this.overTemperature;
    const out = Buffer.alloc(length);
    for (let i = 0; i < length; i++) out[i] = i % 2 === 0 ? value >> 8 : value & 0xff;
    return out;
  }

  writeRegisters(register: number, data: Buffer): void {
    this.pointer = register & 3;
    if (this.pointer === 1 && data.length >= 1) this.config = data[0];
    if (this.pointer === 2 && data.length >= 2) this.hysteresis = data.readUInt16BE(0);
    if (this.pointer === 3 && data.length >= 2) this.overTemperature = data.readUInt16BE(0);
  }
}
