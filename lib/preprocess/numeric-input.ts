/**
 * The numeric input shapes every processing node accepts (see the message contracts):
 * a number, an array of numbers, a typed array, an object of named numbers, or a
 * 2-D array (timesteps x features).
 */

import { InputError } from '../errors';
import { isTypedArray } from './shape';
import { MAX_CHANNELS } from '../util/text';

export { InputError };

export interface Sample {
  /** One value per channel; non-numeric entries become NaN so the caller's policy decides. */
  values: number[];
  channels: string[];
}

export interface Matrix {
  /** timesteps x features */
  rows: number[][];
  channels: string[];
}

function toNumber(value: unknown): number {
  if (typeof value === 'number') return value;
  if (typeof value === 'boolean') return value ? 1 : 0;
  return NaN;
}

function indexChannels(count: number): string[] {
  return Array.from({ length: count }, (_, i) => `ch${i}`);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  return typeof value;
}

/**
 * Converts one timestep. For an object, `channels` fixes the order (missing keys become NaN);
 * without it the object's own key order is used.
 */
export function toSample(payload: unknown, channels?: readonly string[]): Sample {
  if (typeof payload === 'number' || typeof payload === 'boolean') {
    const names = channels && channels.length === 1 ? [...channels] : ['value'];
    return { values: [toNumber(payload)], channels: names };
  }
  if (isTypedArray(payload) || (Array.isArray(payload) && !payload.some(Array.isArray))) {
    const values = Array.from(payload as ArrayLike<unknown>, toNumber);
    if (values.length === 0) throw new InputError('empty array: expected at least one number');
    const names =
      channels && channels.length === values.length ? [...channels] : indexChannels(values.length);
    return { values, channels: names };
  }
  if (payload !== null && typeof payload === 'object' && !Array.isArray(payload)) {
    const record = payload as Record<string, unknown>;
    const names = channels && channels.length > 0 ? [...channels] : Object.keys(record);
    if (names.length > MAX_CHANNELS && !channels?.length)
      throw new InputError(
        `an object of ${names.length} named values is more than ${MAX_CHANNELS} channels: send fewer or configure the channels`,
      );
    if (names.length === 0)
      throw new InputError('empty object: expected named numbers such as {"temperature": 21.4}');
    return { values: names.map((name) => toNumber(record[name])), channels: names };
  }
  throw new InputError(
    `expected a number, an array of numbers or an object of named numbers, got ${describe(payload)}`,
  );
}

/** Converts any accepted input to timesteps x features; a single sample becomes one row. */
export function toMatrix(payload: unknown, channels?: readonly string[]): Matrix {
  if (
    Array.isArray(payload) &&
    payload.length > 0 &&
    payload.every((row) => Array.isArray(row) || isTypedArray(row))
  ) {
    const rows = (payload as ArrayLike<unknown>[]).map((row) => Array.from(row, toNumber));
    const width = rows[0].length;
    if (width === 0) throw new InputError('empty rows: expected timesteps x features');
    const bad = rows.findIndex((row) => row.length !== width);
    if (bad >= 0)
      throw new InputError(`ragged 2-D array: row 0 has ${width} values, row ${bad} has ${rows[bad].length}`);
    const names = channels && channels.length === width ? [...channels] : indexChannels(width);
    return { rows, channels: names };
  }
  if (Array.isArray(payload) && payload.some(Array.isArray)) {
    throw new InputError('mixed array: expected either numbers or rows of numbers');
  }
  const sample = toSample(payload, channels);
  return { rows: [sample.values], channels: sample.channels };
}

/** Flattens nested numeric arrays (any depth) into one Float32Array, row-major. */
export function flattenNumeric(payload: unknown): Float32Array {
  const out: number[] = [];
  const walk = (value: unknown): void => {
    if (Array.isArray(value)) value.forEach(walk);
    else if (isTypedArray(value)) for (let i = 0; i < value.length; i++) out.push(value[i]);
    else if (typeof value === 'number') out.push(value);
    else throw new InputError(`expected numbers, found ${describe(value)}`);
  };
  walk(payload);
  return Float32Array.from(out);
}

export function allFinite(values: ArrayLike<number>): boolean {
  for (let i = 0; i < values.length; i++) if (!Number.isFinite(values[i])) return false;
  return true;
}
