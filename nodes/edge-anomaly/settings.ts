/**
 * The edge-anomaly editor fields, one line per setting: adding a setting is one line in
 * SETTINGS (and its use in parseOptions).
 */
import { DEFAULT_OPTIONS, METHODS, type DetectorOptions } from '../../lib/anomaly/detector';
import { parseSettings, type SettingsTable } from '../shared/settings';

const UNIT_MS: Record<string, number> = { samples: 0, seconds: 1000, minutes: 60000, hours: 3600000 };
const UNITS = Object.keys(UNIT_MS);
const D = DEFAULT_OPTIONS;

interface EdgeAnomalySettings {
  method: DetectorOptions['method'];
  window: number;
  alpha: number;
  learning: number;
  learningUnit: string;
  threshold: number;
  hysteresis: number;
  minDuration: number;
  nanPolicy: DetectorOptions['nanPolicy'];
  adaptRate: number;
  relearn: number;
  relearnUnit: string;
  keepAlarm: boolean;
  seqWindow: number;
  epochs: number;
  channels: string[];
  persist: boolean;
}

/** One line per editor field; a bad value is an error naming the field. */
const SETTINGS: SettingsTable<EdgeAnomalySettings> = {
  method: (s) => s.choice('method', METHODS, 'auto'),
  window: (s) => s.number('window', D.window, { integer: true, min: 1 }),
  alpha: (s) => s.number('alpha', D.alpha, { min: 0, max: 1 }),
  learning: (s) => s.number('learning', D.learningSamples, { above: 0 }),
  learningUnit: (s) => s.choice('learningUnit', UNITS, 'samples'),
  threshold: (s) => s.number('threshold', D.threshold),
  hysteresis: (s) => s.number('hysteresis', D.hysteresis, { min: 0 }),
  minDuration: (s) => s.number('minDuration', D.minDuration, { min: 0 }),
  nanPolicy: (s) => s.choice('nanPolicy', ['hold', 'mean', 'error'] as const, 'hold'),
  adaptRate: (s) => s.number('adaptRate', D.adaptRate, { min: 0, max: 1 }),
  relearn: (s) => s.number('relearn', D.relearnAfter, { min: 0 }),
  relearnUnit: (s) => s.choice('relearnUnit', UNITS, 'samples'),
  keepAlarm: (s) => s.bool('keepAlarm', D.keepAlarm),
  seqWindow: (s) => s.number('seqWindow', D.sequence.window, { integer: true, min: 1 }),
  epochs: (s) => s.number('epochs', D.sequence.epochs, { integer: true, min: 1 }),
  channels: (s) => s.list('channels'),
  persist: (s) => s.bool('persist', true),
};

/** The detector options of the editor fields. */
export function parseOptions(
  config: object,
): Partial<DetectorOptions> & { channels: string[]; persist: boolean } {
  const s = parseSettings(config, SETTINGS);
  const unitMs = UNIT_MS[s.learningUnit];
  const relearnUnitMs = UNIT_MS[s.relearnUnit];
  return {
    method: s.method,
    window: s.window,
    alpha: s.alpha,
    learningSamples: unitMs ? D.learningSamples : s.learning,
    learningMs: unitMs ? s.learning * unitMs : 0,
    threshold: s.threshold,
    hysteresis: s.hysteresis,
    minDuration: s.minDuration,
    nanPolicy: s.nanPolicy,
    adaptRate: s.adaptRate,
    relearnAfter: relearnUnitMs ? 0 : s.relearn,
    relearnMs: relearnUnitMs ? s.relearn * relearnUnitMs : 0,
    keepAlarm: s.keepAlarm,
    sequence: { ...D.sequence, window: s.seqWindow, epochs: s.epochs },
    channels: s.channels,
    persist: s.persist,
  };
}
