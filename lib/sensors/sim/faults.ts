/**
 * Faults a simulated device can be told to show, so anomaly flows have something to find.
 * They act on the physical values before the simulator turns them into raw register counts,
 * so the real driver code sees them exactly as it would see a faulty chip.
 */
import type { Clock } from '../clock';
import { SensorError } from '../errors';
import type { SeededRandom } from '../../util/random';

export type FaultType = 'drift' | 'spike' | 'stuck' | 'bearing-wear' | 'gone' | 'back' | 'clear';

export interface FaultSpec {
  type: FaultType;
  /** Channel the fault acts on (drift, spike, stuck). Default: the device's main channel; stuck: all. */
  channel?: string;
  /** drift: units per minute the channel walks away from the truth. */
  perMinute?: number;
  /** spike: the jump added to a reading (channel units). */
  magnitude?: number;
  /** spike: chance per reading (0..1) once active. */
  probability?: number;
  /** spike: exactly this many consecutive spiked readings, then the fault ends. */
  count?: number;
  /** bearing-wear: growth of the defect vibration amplitude, in g per minute. */
  growthPerMinute?: number;
  /** gone: the device is back after this long; without it, until a "back" or "clear". */
  durationMs?: number;
  /** Delay from injection until the fault starts. */
  afterMs?: number;
}

export const FAULT_TYPES: readonly FaultType[] = [
  'drift',
  'spike',
  'stuck',
  'bearing-wear',
  'gone',
  'back',
  'clear',
];

/** What a device model tells the fault model about its channels. */
export interface FaultDefaults {
  channels: readonly string[];
  /** Channel used when a drift/spike names none. */
  primary: string;
  driftPerMinute: Readonly<Record<string, number>>;
  spikeMagnitude: Readonly<Record<string, number>>;
  /** Whether the device has a vibration signal that bearing wear can grow in. */
  vibration?: boolean;
}

interface ActiveFault {
  spec: FaultSpec;
  startsAt: number;
  /** stuck: the frozen values, captured at the first reading after the start. */
  held?: Record<string, number>;
  /** spike: readings still to spike when `count` was given. */
  remaining?: number;
}

function optionalNumber(
  raw: Record<string, unknown>,
  key: string,
  min?: number,
  max?: number,
): number | undefined {
  const value = raw[key];
  if (value === undefined || value === null || value === '') return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || (min !== undefined && n < min) || (max !== undefined && n > max)) {
    const range = max !== undefined ? ` in ${min}..${max}` : min !== undefined ? ` >= ${min}` : '';
    throw new SensorError('BAD_FAULT', `fault ${key} must be a number${range}, got ${JSON.stringify(value)}`);
  }
  return n;
}

/** Validates a fault request from a message or the editor, e.g. {type: "spike", magnitude: 5}. */
export function parseFault(input: unknown): FaultSpec {
  const raw: Record<string, unknown> =
    typeof input === 'string'
      ? { type: input }
      : input !== null && typeof input === 'object' && !Array.isArray(input)
        ? (input as Record<string, unknown>)
        : {};
  const type = typeof raw.type === 'string' ? raw.type.trim().toLowerCase() : '';
  if (!(FAULT_TYPES as readonly string[]).includes(type)) {
    throw new SensorError(
      'BAD_FAULT',
      `unknown fault ${JSON.stringify(raw.type ?? input)}; expected one of ${FAULT_TYPES.join(', ')}`,
    );
  }
  const spec: FaultSpec = { type: type as FaultType };
  if (typeof raw.channel === 'string' && raw.channel.trim()) spec.channel = raw.channel.trim();
  const numbers: Array<[keyof FaultSpec, number | undefined]> = [
    ['perMinute', optionalNumber(raw, 'perMinute')],
    ['magnitude', optionalNumber(raw, 'magnitude')],
    ['probability', optionalNumber(raw, 'probability', 0, 1)],
    ['count', optionalNumber(raw, 'count', 1)],
    ['growthPerMinute', optionalNumber(raw, 'growthPerMinute', 0)],
    ['durationMs', optionalNumber(raw, 'durationMs', 0)],
    ['afterMs', optionalNumber(raw, 'afterMs', 0)],
  ];
  for (const [key, value] of numbers) {
    if (value !== undefined) (spec as unknown as Record<string, number>)[key] = value;
  }
  return spec;
}

export class FaultModel {
  private faults: ActiveFault[] = [];

  constructor(
    private readonly clock: Clock,
    private readonly rng: SeededRandom,
    readonly defaults: FaultDefaults,
  ) {}

  inject(input: FaultSpec): void {
    const spec = parseFault(input);
    if (spec.type === 'clear') {
      this.faults = [];
      return;
    }
    if (spec.type === 'back') {
      this.faults = this.faults.filter((f) => f.spec.type !== 'gone');
      return;
    }
    if (spec.type === 'bearing-wear' && !this.defaults.vibration) {
      throw new SensorError('BAD_FAULT', 'bearing-wear needs a vibration sensor (the simulated mpu6050)');
    }
    if (spec.channel !== undefined && !this.defaults.channels.includes(spec.channel)) {
      throw new SensorError(
        'BAD_FAULT',
        `no channel "${spec.channel}" on this device; channels: ${this.defaults.channels.join(', ')}`,
      );
    }
    const fault: ActiveFault = { spec, startsAt: this.clock.now() + (spec.afterMs ?? 0) };
    if (spec.type === 'spike' && spec.count !== undefined) fault.remaining = Math.round(spec.count);
    this.faults.push(fault);
  }

  clear(): void {
    this.faults = [];
  }

  /** The faults injected and not yet over, e.g. for a status line. */
  active(): FaultSpec[] {
    this.expire();
    return this.faults.map((f) => ({ ...f.spec }));
  }

  private expire(): void {
    const now = this.clock.now();
    this.faults = this.faults.filter((f) => {
      if (f.spec.type === 'gone' && f.spec.durationMs !== undefined) {
        return now < f.startsAt + f.spec.durationMs;
      }
      if (f.remaining !== undefined) return f.remaining > 0;
      return true;
    });
  }

  private started(f: ActiveFault): boolean {
    return this.clock.now() >= f.startsAt;
  }

  /** True while a "gone" fault holds: the device does not answer on the bus. */
  isGone(): boolean {
    this.expire();
    return this.faults.some((f) => f.spec.type === 'gone' && this.started(f));
  }

  /** Amplitude (g) of the bearing-defect vibration at this moment: grows with time since onset. */
  wearLevel(): number {
    const now = this.clock.now();
    let level = 0;
    for (const f of this.faults) {
      if (f.spec.type !== 'bearing-wear' || now < f.startsAt) continue;
      level += (f.spec.growthPerMinute ?? 0.05) * ((now - f.startsAt) / 60000);
    }
    return level;
  }

  /** Applies drift, spikes and stuck values to one set of physical readings. */
  apply(values: Record<string, number>): Record<string, number> {
    this.expire();
    const out = { ...values };
    const now = this.clock.now();
    for (const f of this.faults) {
      if (!this.started(f)) continue;
      const channel = f.spec.channel ?? this.defaults.primary;
      if (f.spec.type === 'drift' && channel in out) {
        const rate = f.spec.perMinute ?? this.defaults.driftPerMinute[channel] ?? 0;
        out[channel] += rate * ((now - f.startsAt) / 60000);
      } else if (f.spec.type === 'spike' && channel in out) {
        const due =
          f.remaining !== undefined ? f.remaining-- > 0 : this.rng.next() < (f.spec.probability ?? 0.05);
        if (due) out[channel] += f.spec.magnitude ?? this.defaults.spikeMagnitude[channel] ?? 0;
      }
    }
    for (const f of this.faults) {
      if (f.spec.type !== 'stuck' || !this.started(f)) continue;
      const channels = f.spec.channel ? [f.spec.channel] : Object.keys(out);
      if (!f.held) f.held = Object.fromEntries(channels.map((c) => [c, out[c]]));
      for (const c of channels) if (c in f.held) out[c] = f.held[c];
    }
    return out;
  }
}
