/**
 * Reads a node's editor settings with one policy: a blank field takes its default, a bad one is
 * an error naming the field (shown as the node's status and logged), never a silent fallback.
 */
export class SettingError extends Error {
  readonly code = 'setting-invalid';
  readonly params: { field: string; value: string; expected: string };

  constructor(field: string, value: unknown, expected: string) {
    super(`setting "${field}": ${JSON.stringify(value)} is not ${expected}`);
    this.name = 'SettingError';
    this.params = { field, value: JSON.stringify(value), expected };
  }
}

const blank = (value: unknown): boolean =>
  value === undefined || value === null || (typeof value === 'string' && value.trim() === '');

export interface NumberRule {
  min?: number;
  max?: number;
  integer?: boolean;
  /** min is excluded (e.g. a rate above 0). */
  above?: number;
}

function describe(rule: NumberRule): string {
  const kind = rule.integer ? 'a whole number' : 'a number';
  if (rule.above !== undefined) return `${kind} above ${rule.above}`;
  if (rule.min !== undefined && rule.max !== undefined) return `${kind} from ${rule.min} to ${rule.max}`;
  if (rule.min !== undefined) return `${kind} >= ${rule.min}`;
  if (rule.max !== undefined) return `${kind} <= ${rule.max}`;
  return kind;
}

/** Readers for one node's config object; each names the field in its error. */
export class Settings {
  constructor(private readonly config: Record<string, unknown>) {}

  number(field: string, fallback: number, rule: NumberRule = {}): number {
    const value = this.config[field];
    if (blank(value)) return fallback;
    const n = typeof value === 'number' ? value : Number(String(value).trim());
    const ok =
      Number.isFinite(n) &&
      (!rule.integer || Number.isInteger(n)) &&
      (rule.min === undefined || n >= rule.min) &&
      (rule.max === undefined || n <= rule.max) &&
      (rule.above === undefined || n > rule.above);
    if (!ok) throw new SettingError(field, value, describe(rule));
    return n;
  }

  /** One of `values`; blank takes the fallback. */
  choice<T extends string>(field: string, values: readonly T[], fallback: T): T {
    const value = this.config[field];
    if (blank(value)) return fallback;
    if (typeof value === 'string' && values.includes(value.trim() as T)) return value.trim() as T;
    throw new SettingError(field, value, `one of ${values.join(', ')}`);
  }

  /** One of the numbers in `values` (a select of numbers); blank takes the fallback. */
  numberOf<T extends number>(field: string, values: readonly T[], fallback: T): T {
    const n = this.number(field, fallback);
    if (values.includes(n as T)) return n as T;
    throw new SettingError(field, this.config[field], `one of ${values.join(', ')}`);
  }

  /** A checkbox: true/false or their strings; blank takes the fallback. */
  bool(field: string, fallback: boolean): boolean {
    const value = this.config[field];
    if (blank(value)) return fallback;
    if (value === true || value === 'true') return true;
    if (value === false || value === 'false') return false;
    throw new SettingError(field, value, 'true or false');
  }

  text(field: string, fallback = ''): string {
    const value = this.config[field];
    if (blank(value)) return fallback;
    if (typeof value !== 'string') throw new SettingError(field, value, 'text');
    return value.trim();
  }

  /** A comma-separated list (or an array). */
  list(field: string): string[] {
    const value = this.config[field];
    if (blank(value)) return [];
    if (Array.isArray(value)) return value.map(String).filter(Boolean);
    if (typeof value !== 'string') throw new SettingError(field, value, 'a comma-separated list');
    return value
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean);
  }

  /** A comma-separated list of numbers meeting `rule`. */
  numbers(field: string, rule: NumberRule = {}): number[] {
    return this.list(field).map((item) => new Settings({ [field]: item }).number(field, NaN, rule));
  }
}

/** A table of readers: adding a setting is one line. */
export type SettingsTable<T> = { [K in keyof T]: (s: Settings) => T[K] };

export function parseSettings<T>(config: object, table: SettingsTable<T>): T {
  const settings = new Settings(config as Record<string, unknown>);
  const out = {} as T;
  for (const key of Object.keys(table) as (keyof T)[]) out[key] = table[key](settings);
  return out;
}
