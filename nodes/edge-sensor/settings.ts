/**
 * Turns the edge-sensor editor fields (strings and booleans) into a SensorSourceConfig, with
 * the dialog's defaults for blank fields and a clear message for a bad one.
 */
import fs from 'node:fs';
import path from 'node:path';
import {
  DEFAULT_ADDRESSES,
  type FaultSpec,
  SENSOR_DEVICES,
  type SensorDevice,
  SensorError,
  type SensorSourceConfig,
  parseAds1115Input,
  parseFault,
  parseRegisterWrites,
  type Ads1115DataRate,
  type Ads1115FullScale,
  type AccelRange,
  type Bme280Filter,
  type Bme280Oversampling,
  type Bme280Standby,
  type GpioEdge,
  type GpioPull,
  type GyroRange,
} from '../../lib/sensors';

export interface EdgeSensorFields {
  name?: string;
  device?: string;
  simulate?: boolean | string;
  bus?: string | number;
  address?: string | number;
  interval?: string | number;
  bmeMode?: string;
  bmeOsT?: string | number;
  bmeOsP?: string | number;
  bmeOsH?: string | number;
  bmeFilter?: string | number;
  bmeStandby?: string | number;
  mpuAccelRange?: string | number;
  mpuGyroRange?: string | number;
  mpuLowPass?: string | number;
  adsInputs?: string;
  adsGain?: string | number;
  adsRate?: string | number;
  rawRegister?: string | number;
  rawLength?: string | number;
  rawByteOrder?: string;
  rawSigned?: boolean | string;
  rawScale?: string | number;
  rawOffset?: string | number;
  rawChannel?: string;
  rawUnit?: string;
  rawSetup?: string;
  gpioPin?: string | number;
  gpioEdge?: string;
  gpioDebounce?: string | number;
  gpioActiveLow?: boolean | string;
  gpioPull?: string;
  gpioInitial?: boolean | string;
  gpioChipLabel?: string;
  csvPath?: string;
  /** Directory CSV paths are confined to; the Node-RED user directory when blank. */
  csvRoot?: string;
  csvDelimiter?: string;
  csvTimestamp?: string;
  csvChannels?: string;
  csvUnits?: string;
  csvOriginalTiming?: boolean | string;
  csvSpeed?: string | number;
  csvLoop?: boolean | string;
  simSeed?: string | number;
  simFault?: string;
  simFaultChannel?: string;
  simFaultAmount?: string | number;
  simFaultProbability?: string | number;
  simFaultAfter?: string | number;
}

export interface EdgeSensorSettings {
  source: SensorSourceConfig;
  /** Read every this many ms; 0 = only on input (and GPIO edges / CSV timing). */
  intervalMs: number;
  /** GPIO: send the level once at start (and after recovering). */
  emitInitial: boolean;
  topic: string;
}

function flag(value: unknown, fallback: boolean): boolean {
  if (value === undefined || value === null || value === '') return fallback;
  return value === true || value === 'true' || value === 'on' || value === 1;
}

function num(value: unknown, fallback: number, what: string, check?: (n: number) => boolean): number {
  if (value === undefined || value === null || (typeof value === 'string' && value.trim() === ''))
    return fallback;
  const n = typeof value === 'number' ? value : Number(String(value).trim());
  if (!Number.isFinite(n) || (check && !check(n))) {
    throw new SensorError('BAD_CONFIG', `${what} ${JSON.stringify(value)} is not valid`);
  }
  return n;
}

const whole = (low: number, high: number) => (n: number) => Number.isInteger(n) && n >= low && n <= high;

function list(value: unknown): string[] {
  return typeof value === 'string'
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

/** "temperature=°C, humidity=%RH" -> {temperature: "°C", humidity: "%RH"} */
function unitMap(value: unknown): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of list(value)) {
    const [key, ...unit] = item.split('=');
    if (key.trim() && unit.length) out[key.trim()] = unit.join('=').trim();
  }
  return out;
}

/** The simulator fault set in the dialog (its "amount" means what the fault type needs). */
function dialogFault(f: EdgeSensorFields): FaultSpec | undefined {
  const type = (f.simFault || 'none').trim();
  if (type === 'none') return undefined;
  const raw: Record<string, unknown> = { type, channel: f.simFaultChannel || undefined };
  const amount =
    f.simFaultAmount === '' || f.simFaultAmount === undefined ? undefined : Number(f.simFaultAmount);
  if (amount !== undefined) {
    if (type === 'drift') raw.perMinute = amount;
    else if (type === 'spike') raw.magnitude = amount;
    else if (type === 'bearing-wear') raw.growthPerMinute = amount;
    else if (type === 'gone') raw.durationMs = amount * 1000;
  }
  if (type === 'spike') raw.probability = f.simFaultProbability === '' ? undefined : f.simFaultProbability;
  const after = num(f.simFaultAfter, 0, 'fault start', (n) => n >= 0);
  if (after > 0) raw.afterMs = after * 1000;
  return parseFault(raw);
}

/** The package root: dist/nodes/edge-sensor/ -> three levels up. */
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

/**
 * CSV paths are confined like model paths: to `root` (the Node-RED user directory unless the
 * node configures another), so a flow cannot replay /etc/passwd or climb out with `..`. A
 * relative path is looked up there, then in the package's recordings/ folder (the recordings
 * the examples replay); links are followed before the check.
 */
export function resolveCsvPath(file: string, root: string): string {
  // The package's recordings are allowed only under its recordings/ folder.
  const places = [{ base: root, allowed: root }];
  if (!path.isAbsolute(file))
    places.push({ base: PACKAGE_ROOT, allowed: path.join(PACKAGE_ROOT, 'recordings') });
  for (const { base, allowed } of places) {
    const wanted = path.resolve(base, file);
    if (!within(allowed, wanted)) continue;
    const real = realpathOrUndefined(wanted);
    if (real === undefined) continue;
    if (within(realpathOrUndefined(allowed) ?? allowed, real)) return real;
  }
  const wanted = path.resolve(root, file);
  if (!within(root, wanted) || fs.existsSync(wanted)) {
    throw new SensorError(
      'BAD_CONFIG',
      `CSV file ${file} is outside the allowed directory ${root}: move it there or set the node's allowed root`,
      undefined,
      'path-outside-root',
      { path: file, root },
    );
  }
  return wanted; // missing: the replay reports it when it opens the file
}

function within(dir: string, target: string): boolean {
  const rel = path.relative(dir, target);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function realpathOrUndefined(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}

export function parseEdgeSensorFields(f: EdgeSensorFields): EdgeSensorSettings {
  const device = (f.device || 'bme280') as SensorDevice;
  if (!SENSOR_DEVICES.includes(device)) {
    throw new SensorError('BAD_CONFIG', `unknown device "${device}"; expected ${SENSOR_DEVICES.join(', ')}`);
  }
  const simulate = device !== 'csv' && flag(f.simulate, true);
  const intervalMs = num(f.interval, 1000, 'interval', (n) => n >= 0);
  const source: SensorSourceConfig = { device, simulate };
  if (device !== 'gpio' && device !== 'csv') {
    source.bus = num(f.bus, 1, 'I2C bus', whole(0, 255));
    source.address = num(f.address, DEFAULT_ADDRESSES[device], 'I2C address', whole(0x03, 0x77));
  }
  switch (device) {
    case 'bme280':
      source.bme280 = {
        mode: f.bmeMode === 'normal' ? 'normal' : 'forced',
        oversampling: {
          temperature: num(f.bmeOsT, 1, 'temperature oversampling') as Bme280Oversampling,
          pressure: num(f.bmeOsP, 1, 'pressure oversampling') as Bme280Oversampling,
          humidity: num(f.bmeOsH, 1, 'humidity oversampling') as Bme280Oversampling,
        },
        filter: num(f.bmeFilter, 0, 'filter') as Bme280Filter,
        standbyMs: num(f.bmeStandby, 1000, 'standby') as Bme280Standby,
      };
      break;
    case 'mpu6050':
      source.mpu6050 = {
        accelRange: num(f.mpuAccelRange, 2, 'accelerometer range') as AccelRange,
        gyroRange: num(f.mpuGyroRange, 250, 'gyro range') as GyroRange,
        lowPass: num(f.mpuLowPass, 0, 'low-pass setting', whole(0, 6)),
      };
      break;
    case 'ads1115':
      source.ads1115 = {
        inputs: (list(f.adsInputs).length ? list(f.adsInputs) : ['ain0']).map(parseAds1115Input),
        fullScale: num(f.adsGain, 4.096, 'full scale') as Ads1115FullScale,
        dataRate: num(f.adsRate, 128, 'data rate') as Ads1115DataRate,
      };
      break;
    case 'raw-i2c':
      source.raw = {
        register: num(f.rawRegister, 0, 'register', whole(0, 255)),
        length: num(f.rawLength, 2, 'length', whole(1, 4)),
        byteOrder: f.rawByteOrder === 'little' ? 'little' : 'big',
        signed: flag(f.rawSigned, true),
        // Defaults as in the dialog: an LM75/TMP102 temperature (signed word / 256, °C).
        scale: num(f.rawScale, f.rawScale === undefined ? 1 / 256 : 1, 'scale'),
        offset: num(f.rawOffset, 0, 'offset'),
        channel: (f.rawChannel === undefined ? 'temperature' : f.rawChannel.trim()) || 'value',
        unit: f.rawUnit ?? (f.rawChannel === undefined ? '°C' : ''),
        setup: parseRegisterWrites(f.rawSetup ?? ''),
      };
      break;
    case 'gpio':
      source.gpio = {
        pin: num(f.gpioPin, 17, 'GPIO pin', whole(0, 63)),
        edge: (f.gpioEdge || 'both') as GpioEdge,
        debounceMs: num(f.gpioDebounce, 10, 'debounce', (n) => n >= 0),
        activeLow: flag(f.gpioActiveLow, false),
        pull: (f.gpioPull || 'none') as GpioPull,
        chipLabel: f.gpioChipLabel?.trim() || undefined,
      };
      break;
    case 'csv': {
      const speed = num(f.csvSpeed, 1, 'speed', (n) => n > 0);
      source.csv = {
        path: (f.csvPath ?? '').trim(),
        delimiter: f.csvDelimiter || 'auto',
        timestampColumn: f.csvTimestamp?.trim() || undefined,
        channels: list(f.csvChannels),
        units: unitMap(f.csvUnits),
        loop: flag(f.csvLoop, true),
        originalTiming: flag(f.csvOriginalTiming, false) ? { speed } : false,
      };
      if (!source.csv.path) throw new SensorError('BAD_CONFIG', 'CSV replay needs a file path');
      if (source.csv.originalTiming && !source.csv.timestampColumn) {
        throw new SensorError('BAD_CONFIG', 'original timing needs a timestamp column');
      }
      break;
    }
  }
  if (simulate) {
    const fault = dialogFault(f);
    const seed = num(f.simSeed, NaN, 'seed', (n) => Number.isInteger(n));
    source.sim = {
      seed: Number.isNaN(seed) ? Math.floor(Math.random() * 2 ** 31) : seed,
      faults: fault ? [fault] : [],
    };
  }
  return {
    source,
    intervalMs,
    emitInitial: device === 'gpio' && flag(f.gpioInitial, true),
    topic: (f.name ?? '').trim() || device,
  };
}
