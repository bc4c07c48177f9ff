/**
 * Turns the edge-sensor editor fields (strings and booleans) into a SensorSourceConfig, with
 * the dialog's defaults for blank fields and an error naming the field for a bad one.
 */
import {
  ADS1115_DATA_RATES,
  DEFAULT_ADDRESSES,
  FAULT_TYPES,
  type FaultSpec,
  GPIO_EDGES,
  SENSOR_DEVICES,
  type SensorDevice,
  type SensorSourceConfig,
  parseAds1115Input,
  parseFault,
  parseRegisterWrites,
} from '../../lib/sensors';
import { SettingError, Settings } from '../shared/settings';

export { resolveCsvPath } from '../../lib/sensors';

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

/** "temperature=°C, humidity=%RH" -> {temperature: "°C", humidity: "%RH"} */
function unitMap(items: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const item of items) {
    const [key, ...unit] = item.split('=');
    if (key.trim() && unit.length) out[key.trim()] = unit.join('=').trim();
  }
  return out;
}

/** The simulator fault set in the dialog (its "amount" means what the fault type needs). */
function dialogFault(s: Settings): FaultSpec | undefined {
  const type = s.choice('simFault', ['none', ...FAULT_TYPES], 'none');
  if (type === 'none') return undefined;
  const raw: Record<string, unknown> = { type, channel: s.text('simFaultChannel') || undefined };
  const amount = s.number('simFaultAmount', NaN);
  if (!Number.isNaN(amount)) {
    if (type === 'drift') raw.perMinute = amount;
    else if (type === 'spike') raw.magnitude = amount;
    else if (type === 'bearing-wear') raw.growthPerMinute = amount;
    else if (type === 'gone') raw.durationMs = amount * 1000;
  }
  if (type === 'spike') {
    const probability = s.number('simFaultProbability', NaN, { min: 0, max: 1 });
    if (!Number.isNaN(probability)) raw.probability = probability;
  }
  const after = s.number('simFaultAfter', 0, { min: 0 });
  if (after > 0) raw.afterMs = after * 1000;
  return parseFault(raw);
}

const OVERSAMPLING = [0, 1, 2, 4, 8, 16] as const;
const FILTERS = [0, 2, 4, 8, 16] as const;
const STANDBY = [0.5, 10, 20, 62.5, 125, 250, 500, 1000] as const;
const ACCEL_RANGES = [2, 4, 8, 16] as const;
const GYRO_RANGES = [250, 500, 1000, 2000] as const;
const FULL_SCALES = [6.144, 4.096, 2.048, 1.024, 0.512, 0.256] as const;
const PULLS = ['none', 'up', 'down'] as const;

export function parseEdgeSensorFields(f: EdgeSensorFields): EdgeSensorSettings {
  const s = new Settings(f as Record<string, unknown>);
  const device: SensorDevice = s.choice('device', SENSOR_DEVICES, 'bme280');
  const simulate = device !== 'csv' && s.bool('simulate', true);
  const intervalMs = s.number('interval', 1000, { min: 0 });
  const source: SensorSourceConfig = { device, simulate };
  if (device !== 'gpio' && device !== 'csv') {
    source.bus = s.number('bus', 1, { integer: true, min: 0, max: 255 });
    source.address = s.number('address', DEFAULT_ADDRESSES[device], { integer: true, min: 0x03, max: 0x77 });
  }
  switch (device) {
    case 'bme280':
      source.bme280 = {
        mode: s.choice('bmeMode', ['forced', 'normal'] as const, 'forced'),
        oversampling: {
          temperature: s.numberOf('bmeOsT', OVERSAMPLING, 1),
          pressure: s.numberOf('bmeOsP', OVERSAMPLING, 1),
          humidity: s.numberOf('bmeOsH', OVERSAMPLING, 1),
        },
        filter: s.numberOf('bmeFilter', FILTERS, 0),
        standbyMs: s.numberOf('bmeStandby', STANDBY, 1000),
      };
      break;
    case 'mpu6050':
      source.mpu6050 = {
        accelRange: s.numberOf('mpuAccelRange', ACCEL_RANGES, 2),
        gyroRange: s.numberOf('mpuGyroRange', GYRO_RANGES, 250),
        lowPass: s.number('mpuLowPass', 0, { integer: true, min: 0, max: 6 }),
      };
      break;
    case 'ads1115': {
      const inputs = s.list('adsInputs');
      source.ads1115 = {
        inputs: (inputs.length ? inputs : ['ain0']).map(parseAds1115Input),
        fullScale: s.numberOf('adsGain', FULL_SCALES, 4.096),
        dataRate: s.numberOf('adsRate', ADS1115_DATA_RATES, 128),
      };
      break;
    }
    case 'raw-i2c':
      source.raw = {
        register: s.number('rawRegister', 0, { integer: true, min: 0, max: 255 }),
        length: s.number('rawLength', 2, { integer: true, min: 1, max: 4 }),
        byteOrder: s.choice('rawByteOrder', ['big', 'little'] as const, 'big'),
        signed: s.bool('rawSigned', true),
        // Defaults as in the dialog: an LM75/TMP102 temperature (signed word / 256, °C).
        scale: s.number('rawScale', f.rawScale === undefined ? 1 / 256 : 1),
        offset: s.number('rawOffset', 0),
        channel: f.rawChannel === undefined ? 'temperature' : s.text('rawChannel', 'value'),
        unit: f.rawUnit === undefined ? (f.rawChannel === undefined ? '°C' : '') : s.text('rawUnit'),
        setup: parseRegisterWrites(s.text('rawSetup')),
      };
      break;
    case 'gpio':
      source.gpio = {
        pin: s.number('gpioPin', 17, { integer: true, min: 0, max: 63 }),
        edge: s.choice('gpioEdge', GPIO_EDGES, 'both'),
        debounceMs: s.number('gpioDebounce', 10, { min: 0 }),
        activeLow: s.bool('gpioActiveLow', false),
        pull: s.choice('gpioPull', PULLS, 'none'),
        chipLabel: s.text('gpioChipLabel') || undefined,
      };
      break;
    case 'csv': {
      const speed = s.number('csvSpeed', 1, { above: 0 });
      // Not trimmed: a tab is a delimiter.
      const delimiter = typeof f.csvDelimiter === 'string' && f.csvDelimiter !== '' ? f.csvDelimiter : 'auto';
      source.csv = {
        path: s.text('csvPath'),
        delimiter,
        timestampColumn: s.text('csvTimestamp') || undefined,
        channels: s.list('csvChannels'),
        units: unitMap(s.list('csvUnits')),
        loop: s.bool('csvLoop', true),
        originalTiming: s.bool('csvOriginalTiming', false) ? { speed } : false,
      };
      if (!source.csv.path) throw new SettingError('csvPath', f.csvPath ?? '', 'a CSV file path');
      if (source.csv.originalTiming && !source.csv.timestampColumn) {
        throw new SettingError('csvTimestamp', '', 'a time column (original timing needs one)');
      }
      break;
    }
  }
  if (simulate) {
    const fault = dialogFault(s);
    const seed = s.number('simSeed', NaN, { integer: true });
    source.sim = {
      seed: Number.isNaN(seed) ? Math.floor(Math.random() * 2 ** 31) : seed,
      faults: fault ? [fault] : [],
    };
  }
  return {
    source,
    intervalMs,
    emitInitial: device === 'gpio' && s.bool('gpioInitial', true),
    topic: s.text('name') || device,
  };
}
