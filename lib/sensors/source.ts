/**
 * SensorSource: what the edge-sensor node (or any script) reads from. One interface over the
 * real I2C drivers, GPIO, their simulators and CSV replay; sources open their hardware lazily,
 * re-initialise a device after it failed (so it recovers when it comes back), and simulated
 * sources take injected faults.
 */
import { type Clock, SimClock, systemClock } from './clock';
import { SensorError, deviceError, hex, isSensorError, osErrorCode } from './errors';
import { type I2cBus, type OpenI2cOptions, openI2cBus } from './i2c-bus';
import { Bme280, BME280_UNITS, type Bme280Options } from './drivers/bme280';
import { Mpu6050, MPU6050_UNITS, type Mpu6050Options } from './drivers/mpu6050';
import { Ads1115, type Ads1115Options } from './drivers/ads1115';
import { RawRegister, type RawRegisterOptions } from './drivers/raw-register';
import {
  type GpioLine,
  type GpioLineOptions,
  type GpioSysfsOptions,
  type CommandRunner,
  SimulatedGpioLine,
  openGpioLine,
} from './gpio';
import {
  CsvReplay,
  type CsvReplayOptions,
  type OriginalTimingOptions,
  playAtOriginalTiming,
} from './csv-replay';
import { SimulatedI2cBus, type SimDevice } from './sim/sim-bus';
import { Bme280Sim } from './sim/bme280-sim';
import { Mpu6050Sim } from './sim/mpu6050-sim';
import { Ads1115Sim, type Ads1115PinVoltages } from './sim/ads1115-sim';
import { Lm75Sim } from './sim/lm75-sim';
import { type FaultModel, type FaultSpec, parseFault } from './sim/faults';
import { SwitchSignal } from './sim/switch-signal';
import type { EnvironmentOptions, VibrationOptions } from './sim/signals';

export type SensorDevice = 'bme280' | 'mpu6050' | 'ads1115' | 'raw-i2c' | 'gpio' | 'csv';
export const SENSOR_DEVICES: readonly SensorDevice[] = [
  'bme280',
  'mpu6050',
  'ads1115',
  'raw-i2c',
  'gpio',
  'csv',
];
export type SimulatedDevice = Exclude<SensorDevice, 'csv'>;

/** Default I2C address per device (raw-i2c: an LM75/TMP102 temperature sensor). */
export const DEFAULT_ADDRESSES: Record<'bme280' | 'mpu6050' | 'ads1115' | 'raw-i2c', number> = {
  bme280: 0x76,
  mpu6050: 0x68,
  ads1115: 0x48,
  'raw-i2c': 0x48,
};

export interface SensorReading {
  /** Named numbers, or 0/1 for a GPIO input. */
  payload: Record<string, number> | number;
  /** Unit per channel. */
  units: Record<string, string>;
  /** The time the reading was recorded, when the source knows it (CSV with a timestamp column). */
  recordedAt?: number;
}

export type ReadingListener = (err: Error | null, reading?: SensorReading) => void;

export interface SensorSource {
  readonly device: SensorDevice;
  readonly simulated: boolean;
  /** Human description, e.g. "BME280 at 0x76 on I2C bus 1 (simulated)". */
  readonly description: string;
  /** One reading now. Opens and initialises the device first if needed. */
  read(): Promise<SensorReading>;
  /** Sources that produce readings by themselves (GPIO edges, CSV at original timing). */
  start?(listener: ReadingListener): void;
  /** Simulated sources: inject a fault (drift, spike, stuck, bearing-wear, gone, back, clear). */
  injectFault?(fault: FaultSpec): void;
  activeFaults?(): FaultSpec[];
  /** Releases bus and GPIO handles, timers and files. Safe to call twice. */
  close(): Promise<void>;
}

export interface SimulationOptions {
  /** Seed of every random stream (noise, spikes); same seed, same signal. */
  seed?: number;
  /** Faults active from the start. */
  faults?: FaultSpec[];
  environment?: EnvironmentOptions;
  vibration?: VibrationOptions;
  /** ADS1115: pin voltages at a time, instead of the default signals. */
  adcSignal?: (timeMs: number) => Ads1115PinVoltages;
  /** GPIO: mean time between switch changes, ms (default 2000); 0 = the line stays put. */
  switchPeriodMs?: number;
  /** GPIO: contact bounce flips per change (default 4). */
  switchBounces?: number;
}

export interface GpioSourceOptions extends GpioLineOptions, GpioSysfsOptions {
  /** BCM pin number. */
  pin: number;
  runCommand?: CommandRunner;
}

export interface CsvSourceOptions extends CsvReplayOptions {
  /** Push rows at the file's own timing (needs timestampColumn), instead of on read(). */
  originalTiming?: boolean | OriginalTimingOptions;
}

export interface SensorSourceConfig {
  device: SensorDevice;
  /** Run the real driver against a register-level simulator instead of hardware. */
  simulate?: boolean;
  bus?: number;
  address?: number;
  bme280?: Bme280Options;
  mpu6050?: Mpu6050Options;
  ads1115?: Ads1115Options;
  raw?: RawRegisterOptions;
  gpio?: GpioSourceOptions;
  csv?: CsvSourceOptions;
  sim?: SimulationOptions;
  /** Time for conversion waits, simulated signals and timers (tests pass a SimClock). */
  clock?: Clock;
  /** How the real I2C bus is opened (tests point devDir at an empty directory). */
  i2c?: OpenI2cOptions;
  /** Told about problems that do not stop the source (e.g. a pull resistor that was not set). */
  onWarning?: (message: string) => void;
}

/** Delays for retrying a failed device: doubling from `initialMs` up to `maxMs`. */
export class Backoff {
  private attempt = 0;

  constructor(
    readonly initialMs = 1000,
    readonly maxMs = 30_000,
    readonly factor = 2,
  ) {}

  /** The delay before the next retry; each call lengthens the following one. */
  next(): number {
    const delay = Math.min(this.maxMs, this.initialMs * this.factor ** this.attempt);
    this.attempt++;
    return delay;
  }

  reset(): void {
    this.attempt = 0;
  }

  get failures(): number {
    return this.attempt;
  }
}

// ---------------------------------------------------------------------------------------------
// I2C device sources

interface I2cDriver {
  readonly what: string;
  init(): Promise<void>;
  read(): Promise<Record<string, number>>;
}

/** Errors after which the bus itself must be reopened (an adapter that went away). */
function busIsGone(err: unknown): boolean {
  const code = (err as SensorError)?.osCode ?? osErrorCode(err);
  return code === 'ENODEV' || code === 'ENOENT' || isSensorError(err, 'NO_HARDWARE');
}

class I2cDeviceSource implements SensorSource {
  private openBusHandle: I2cBus | undefined;
  private driver: I2cDriver | undefined;
  private ready = false;
  private closed = false;

  constructor(
    readonly device: SensorDevice,
    readonly simulated: boolean,
    readonly description: string,
    private readonly openBus: () => Promise<I2cBus>,
    private readonly makeDriver: (bus: I2cBus) => I2cDriver,
    private readonly unitsOf: (payload: Record<string, number>) => Record<string, string>,
    private readonly faults?: FaultModel[],
  ) {
    // Build a driver once against an empty bus so configuration errors surface now, not at the
    // first read (where they would look like a device that keeps failing).
    makeDriver(new SimulatedI2cBus());
  }

  async read(): Promise<SensorReading> {
    if (this.closed) throw new SensorError('DEVICE_UNAVAILABLE', `${this.description} is closed`);
    try {
      if (!this.openBusHandle) {
        this.openBusHandle = await this.openBus();
        this.driver = this.makeDriver(this.openBusHandle);
      }
      if (!this.ready) {
        await this.driver!.init();
        this.ready = true;
      }
      const payload = await this.driver!.read();
      return { payload, units: this.unitsOf(payload) };
    } catch (err) {
      // Initialise again on the next read: a device that was gone comes back in its power-on state.
      this.ready = false;
      if (this.openBusHandle && !this.openBusHandle.simulated && busIsGone(err)) await this.dropBus();
      throw err;
    }
  }

  private async dropBus(): Promise<void> {
    const bus = this.openBusHandle;
    this.openBusHandle = undefined;
    this.driver = undefined;
    await bus?.close().catch(() => undefined);
  }

  injectFault(fault: FaultSpec): void {
    if (!this.faults)
      throw new SensorError(
        'BAD_FAULT',
        'fault injection needs a simulated device ("Simulate (no hardware)")',
      );
    const spec = parseFault(fault);
    for (const model of this.faults) model.inject(spec);
  }

  activeFaults(): FaultSpec[] {
    return this.faults?.[0]?.active() ?? [];
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.dropBus();
  }
}

function unitsFor(table: Record<string, string>) {
  return (payload: Record<string, number>): Record<string, string> =>
    Object.fromEntries(Object.keys(payload).map((key) => [key, table[key] ?? '']));
}

function i2cDriverFor(config: SensorSourceConfig, address: number, clock: Clock): (bus: I2cBus) => I2cDriver {
  switch (config.device) {
    case 'bme280':
      return (bus) => {
        const driver = new Bme280(bus, address, config.bme280, clock);
        return {
          what: driver.what,
          init: () => driver.init(),
          read: async () => ({ ...(await driver.read()) }) as Record<string, number>,
        };
      };
    case 'mpu6050':
      return (bus) => {
        const driver = new Mpu6050(bus, address, config.mpu6050, clock);
        return {
          what: driver.what,
          init: () => driver.init(),
          read: async () => ({ ...(await driver.read()) }),
        };
      };
    case 'ads1115':
      return (bus) => new Ads1115(bus, address, config.ads1115, clock);
    case 'raw-i2c':
      if (!config.raw) throw new SensorError('BAD_CONFIG', 'raw-i2c needs register options');
      return (bus) => new RawRegister(bus, address, config.raw!);
    default:
      throw new SensorError('BAD_CONFIG', `${config.device} is not an I2C device`);
  }
}

function i2cUnits(config: SensorSourceConfig): (payload: Record<string, number>) => Record<string, string> {
  switch (config.device) {
    case 'bme280':
      return unitsFor(BME280_UNITS);
    case 'mpu6050':
      return unitsFor(MPU6050_UNITS);
    case 'raw-i2c':
      return unitsFor({ [config.raw?.channel || 'value']: config.raw?.unit ?? '' });
    default:
      return (payload) => Object.fromEntries(Object.keys(payload).map((key) => [key, 'V']));
  }
}

const CHIP_NAMES: Record<string, string> = {
  bme280: 'BME280',
  mpu6050: 'MPU6050',
  ads1115: 'ADS1115',
  'raw-i2c': 'device',
};

/** The register-level model the simulated bus holds for a device. */
export function createSimDevice(
  device: 'bme280' | 'mpu6050' | 'ads1115' | 'raw-i2c',
  sim: SimulationOptions = {},
  clock: Clock = systemClock,
): SimDevice & { faults: FaultModel } {
  const seed = sim.seed;
  switch (device) {
    case 'bme280':
      return new Bme280Sim({ clock, seed, environment: sim.environment });
    case 'mpu6050':
      return new Mpu6050Sim({ clock, seed, vibration: sim.vibration, environment: sim.environment });
    case 'ads1115':
      return new Ads1115Sim({ clock, seed, signal: sim.adcSignal });
    case 'raw-i2c':
      return new Lm75Sim({ clock, seed, environment: sim.environment });
  }
}

// ---------------------------------------------------------------------------------------------
// GPIO sources

class GpioSource implements SensorSource {
  readonly device = 'gpio' as const;
  private openLineHandle: GpioLine | undefined;
  private opening: Promise<GpioLine> | undefined;
  private listener: ReadingListener | undefined;
  private closed = false;

  constructor(
    readonly simulated: boolean,
    readonly description: string,
    private readonly openLine: () => Promise<GpioLine>,
    private readonly onClose: () => void = () => undefined,
    private readonly faultHandler?: (fault: FaultSpec) => void,
    private readonly faultList?: () => FaultSpec[],
  ) {}

  private async ensureOpen(): Promise<GpioLine> {
    if (this.closed) throw new SensorError('DEVICE_UNAVAILABLE', `${this.description} is closed`);
    if (this.openLineHandle) return this.openLineHandle;
    this.opening ??= this.openLine().finally(() => (this.opening = undefined));
    const line = await this.opening;
    if (this.closed) {
      await line.close();
      throw new SensorError('DEVICE_UNAVAILABLE', `${this.description} is closed`);
    }
    if (!this.openLineHandle) {
      this.openLineHandle = line;
      if (this.listener) this.attach(line, this.listener);
    }
    return this.openLineHandle;
  }

  private attach(line: GpioLine, listener: ReadingListener): void {
    line.watch((err, value) => {
      if (err) listener(err);
      else listener(null, { payload: value, units: {} });
    });
  }

  start(listener: ReadingListener): void {
    this.listener = listener;
    if (this.openLineHandle) this.attach(this.openLineHandle, listener);
    else
      this.ensureOpen().catch((err: unknown) =>
        listener(err instanceof Error ? err : new Error(String(err))),
      );
  }

  async read(): Promise<SensorReading> {
    const line = await this.ensureOpen();
    try {
      return { payload: await line.read(), units: {} };
    } catch (err) {
      throw deviceError(err, this.description);
    }
  }

  injectFault(fault: FaultSpec): void {
    if (!this.faultHandler)
      throw new SensorError(
        'BAD_FAULT',
        'fault injection needs a simulated device ("Simulate (no hardware)")',
      );
    this.faultHandler(parseFault(fault));
  }

  activeFaults(): FaultSpec[] {
    return this.faultList?.() ?? [];
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.onClose();
    const line = this.openLineHandle ?? (await this.opening?.catch(() => undefined));
    this.openLineHandle = undefined;
    await line?.close();
  }
}

function simulatedGpioSource(
  config: SensorSourceConfig,
  clock: Clock,
): SensorSource & { line: SimulatedGpioLine } {
  const options = config.gpio ?? { pin: 17 };
  const line = new SimulatedGpioLine(options.pin, options, clock);
  const sim = config.sim ?? {};
  const signal = new SwitchSignal(line, {
    clock,
    seed: sim.seed,
    meanPeriodMs: sim.switchPeriodMs || 2000,
    bounces: sim.switchBounces,
  });
  if ((sim.switchPeriodMs ?? 2000) > 0) signal.start();
  const active: FaultSpec[] = [];
  let backTimer: ReturnType<Clock['setTimer']> | undefined;
  const handle = (fault: FaultSpec): void => {
    if (fault.type === 'stuck') signal.stuck = true;
    else if (fault.type === 'gone') {
      line.gone = true;
      clock.clearTimer(backTimer);
      if (fault.durationMs !== undefined)
        backTimer = clock.setTimer(() => handle({ type: 'back' }), fault.durationMs);
    } else if (fault.type === 'back') line.gone = false;
    else if (fault.type === 'clear') {
      line.gone = false;
      signal.stuck = false;
      active.length = 0;
      return;
    } else throw new SensorError('BAD_FAULT', `a GPIO input can be stuck or gone, not ${fault.type}`);
    if (fault.type === 'back') {
      const i = active.findIndex((f) => f.type === 'gone');
      if (i >= 0) active.splice(i, 1);
    } else active.push(fault);
  };
  for (const fault of sim.faults ?? []) handle(parseFault(fault));
  const source = new GpioSource(
    true,
    `GPIO ${options.pin} (simulated)`,
    async () => line,
    () => {
      signal.stop();
      clock.clearTimer(backTimer);
    },
    handle,
    () => active.map((f) => ({ ...f })),
  );
  return Object.assign(source, { line });
}

// ---------------------------------------------------------------------------------------------
// CSV source

class CsvSource implements SensorSource {
  readonly device = 'csv' as const;
  readonly simulated = false;
  readonly description: string;
  private readonly replay: CsvReplay;
  private stop: (() => void) | undefined;

  constructor(
    private readonly options: CsvSourceOptions,
    private readonly clock: Clock,
  ) {
    this.replay = new CsvReplay({ ...options, clock });
    this.description = `CSV replay of ${options.path}`;
    if (options.originalTiming) this.start = (listener) => this.startOriginalTiming(listener);
  }

  private toReading(row: { values: Record<string, number>; timestamp?: number }): SensorReading {
    const units = Object.fromEntries(Object.keys(row.values).map((k) => [k, this.options.units?.[k] ?? '']));
    const reading: SensorReading = { payload: row.values, units };
    if (row.timestamp !== undefined) reading.recordedAt = row.timestamp;
    return reading;
  }

  async read(): Promise<SensorReading> {
    return this.toReading(await this.replay.next());
  }

  /** Present only when the rows are pushed at the file's own timing. */
  start?: (listener: ReadingListener) => void;

  private startOriginalTiming(listener: ReadingListener): void {
    if (this.stop) return;
    const timing = typeof this.options.originalTiming === 'object' ? this.options.originalTiming : {};
    this.stop = playAtOriginalTiming(
      this.replay,
      (row) => listener(null, this.toReading(row)),
      (err) => listener(err),
      { clock: this.clock, ...timing },
    );
  }

  async close(): Promise<void> {
    this.stop?.();
    await this.replay.close();
  }
}

// ---------------------------------------------------------------------------------------------
// Factories

export type SimulatedSource = SensorSource & {
  /** The simulated bus (I2C devices). */
  bus?: SimulatedI2cBus;
  /** The register-level model at `address` (I2C devices). */
  sim?: SimDevice & { faults: FaultModel };
  /** The simulated line (GPIO). */
  line?: SimulatedGpioLine;
  injectFault(fault: FaultSpec): void;
  activeFaults(): FaultSpec[];
};

/**
 * A source that runs the real driver against a register-level simulator: `bme280`
 * (room climate), `mpu6050` (machine vibration), `ads1115` (four analogue inputs), `raw-i2c`
 * (an LM75-style temperature register) or `gpio` (a bouncing switch). Faults in
 * `options.sim.faults` are active from the start; more can be injected later.
 */
export function createSimulatedSource(
  device: SimulatedDevice,
  options: Omit<SensorSourceConfig, 'device' | 'simulate'> = {},
): SimulatedSource {
  const clock = options.clock ?? systemClock;
  const config: SensorSourceConfig = { ...options, device, simulate: true };
  if (device === 'gpio') return simulatedGpioSource(config, clock) as SimulatedSource;
  if (!(device in DEFAULT_ADDRESSES))
    throw new SensorError('BAD_CONFIG', `no simulator for device ${String(device)}`);
  const address = options.address ?? DEFAULT_ADDRESSES[device];
  const busNumber = options.bus ?? 1;
  const bus = new SimulatedI2cBus(busNumber);
  const sim = createSimDevice(device, options.sim, clock);
  bus.attach(address, sim);
  for (const fault of options.sim?.faults ?? []) sim.faults.inject(fault);
  if (device === 'raw-i2c') {
    config.raw = {
      register: 0,
      length: 2,
      signed: true,
      scale: 1 / 256,
      channel: 'temperature',
      unit: '°C',
      ...config.raw,
    };
  }
  const source = new I2cDeviceSource(
    device,
    true,
    `${CHIP_NAMES[device]} at ${hex(address)} on I2C bus ${busNumber} (simulated)`,
    async () => bus,
    i2cDriverFor(config, address, clock),
    i2cUnits(config),
    [sim.faults],
  );
  return Object.assign(source, { bus, sim }) as SimulatedSource;
}

/** A source for any device: real hardware, its simulator (`simulate: true`), or a CSV replay. */
export function createSensorSource(config: SensorSourceConfig): SensorSource {
  const clock = config.clock ?? systemClock;
  if (!(SENSOR_DEVICES as readonly string[]).includes(config.device)) {
    throw new SensorError(
      'BAD_CONFIG',
      `unknown device "${String(config.device)}"; expected ${SENSOR_DEVICES.join(', ')}`,
    );
  }
  if (config.device === 'csv') {
    if (!config.csv) throw new SensorError('BAD_CONFIG', 'csv needs a file path');
    return new CsvSource(config.csv, clock);
  }
  if (config.simulate) {
    const { device, ...rest } = config;
    return createSimulatedSource(device as SimulatedDevice, rest);
  }
  if (config.device === 'gpio') {
    const gpio = config.gpio;
    if (!gpio) throw new SensorError('BAD_CONFIG', 'gpio needs a pin');
    return new GpioSource(false, `GPIO ${gpio.pin}`, () =>
      openGpioLine(gpio.pin, gpio, {
        sysfsRoot: gpio.sysfsRoot,
        chipLabel: gpio.chipLabel,
        runCommand: gpio.runCommand,
        onWarning: config.onWarning,
      }),
    );
  }
  const device = config.device as keyof typeof DEFAULT_ADDRESSES;
  const address = config.address ?? DEFAULT_ADDRESSES[device];
  const busNumber = config.bus ?? 1;
  return new I2cDeviceSource(
    device,
    false,
    `${CHIP_NAMES[device]} at ${hex(address)} on I2C bus ${busNumber}`,
    () => openI2cBus(busNumber, config.i2c),
    i2cDriverFor(config, address, clock),
    i2cUnits(config),
  );
}

/** Addresses answering on a real bus (opened and closed for the scan). */
export async function scanI2cBus(busNumber: number, options: OpenI2cOptions = {}): Promise<number[]> {
  const bus = await openI2cBus(busNumber, options);
  try {
    return await bus.scan();
  } finally {
    await bus.close();
  }
}

export interface SimulatedRun extends Omit<SensorSourceConfig, 'device' | 'simulate' | 'clock'> {
  /** Number of readings. */
  count: number;
  /** Simulated time between readings, ms (default 1000). */
  intervalMs?: number;
  /** Start of the simulated time, ms since epoch (default 2024-06-01T00:00Z). */
  startMs?: number;
}

export interface TimedReading extends SensorReading {
  /** Simulated time of the reading, ms since epoch. */
  timestamp: number;
}

/**
 * Runs a simulated device on its own simulated clock and returns `count` readings taken
 * `intervalMs` apart, at full speed: an hour of bearing wear takes a fraction of a second.
 * Faults go in `sim.faults` (use `afterMs` to start them partway through).
 */
export async function simulateReadings(device: SimulatedDevice, run: SimulatedRun): Promise<TimedReading[]> {
  const { count, intervalMs = 1000, startMs, ...options } = run;
  const clock = new SimClock(startMs);
  const source = createSimulatedSource(device, { ...options, clock });
  const out: TimedReading[] = [];
  try {
    let next = clock.now();
    for (let i = 0; i < count; i++) {
      if (clock.now() < next) clock.advance(next - clock.now());
      const reading = await source.read();
      out.push({ ...reading, timestamp: clock.now() });
      next += intervalMs;
    }
  } finally {
    await source.close();
  }
  return out;
}
