/**
 * Shapes of nested numeric arrays: measuring them, their element count, printing them and
 * rebuilding nested arrays from flat row-major values.
 */
import { InputError } from '../errors';

/** Number of elements in a tensor of `shape` (1 for a scalar's []). */
export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** A shape as users read it: [50, 6]. */
export function shapeText(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

export function isTypedArray(value: unknown): value is ArrayLike<number> {
  return ArrayBuffer.isView(value) && !(value instanceof DataView);
}

/**
 * Dimensions of a rectangular nested array (numbers and booleans are leaves); throws on ragged,
 * empty or non-numeric content, through `fail` so callers choose the error class.
 */
export function nestedShape(
  value: unknown,
  where = 'input',
  fail: (message: string) => Error = (message) => new InputError(message),
): number[] {
  if (typeof value === 'number' || typeof value === 'boolean') return [];
  if (isTypedArray(value)) return [value.length];
  if (!Array.isArray(value)) {
    throw fail(`${where} holds ${value === null ? 'null' : typeof value}, expected numbers`);
  }
  if (value.length === 0) throw fail(`${where} is an empty array`);
  const first = nestedShape(value[0], `${where}[0]`, fail);
  for (let i = 1; i < value.length; i++) {
    const other = nestedShape(value[i], `${where}[${i}]`, fail);
    if (other.length !== first.length || other.some((d, k) => d !== first[k])) {
      throw fail(
        `ragged array: ${where}[0] has shape ${shapeText(first)}, ${where}[${i}] has ${shapeText(other)}`,
      );
    }
  }
  return [value.length, ...first];
}

/** Nested arrays of `shape` from flat row-major values. */
export function nest(values: ArrayLike<number>, shape: readonly number[]): unknown {
  if (shape.length <= 1) return Array.from(values);
  const [first, ...rest] = shape;
  const step = sizeOf(rest);
  return Array.from({ length: first }, (_, i) => nest(slice(values, i * step, (i + 1) * step), rest));
}

function slice(values: ArrayLike<number>, start: number, end: number): ArrayLike<number> {
  return isTypedArray(values)
    ? (values as Float32Array).subarray(start, end)
    : (Array.prototype.slice.call(values, start, end) as number[]);
}
