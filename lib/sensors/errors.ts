/**
 * Helpers for the sensor layer's errors (the SensorError class lives in lib/errors.ts). Each
 * error carries a broad `kind` ("no such hardware" vs "the device stopped answering") and a
 * precise `code`, so callers tell them apart without parsing messages.
 */

import { SensorError, type SensorErrorKind } from '../errors';

export { SensorError, type SensorErrorKind };

/** Errno codes that mean "the device (or its bus) is not answering right now". */
const UNAVAILABLE_CODES = new Set([
  'EIO',
  'ENXIO',
  'EREMOTEIO',
  'ENODEV',
  'ENOENT',
  'ETIMEDOUT',
  'EAGAIN',
  'EBUSY',
]);

export function osErrorCode(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

export function isSensorError(err: unknown, kind?: SensorErrorKind): err is SensorError {
  return err instanceof SensorError && (kind === undefined || err.kind === kind);
}

/**
 * Turns whatever a bus operation threw into a SensorError that names the device, so a status
 * line reads "BME280 at 0x76 on I2C bus 1 does not answer (EREMOTEIO)" rather than "EREMOTEIO".
 */
export function deviceError(err: unknown, what: string): SensorError {
  if (err instanceof SensorError) return err;
  const os = osErrorCode(err);
  if (os && UNAVAILABLE_CODES.has(os)) {
    return new SensorError('DEVICE_UNAVAILABLE', `${what} does not answer (${os})`, os);
  }
  const text = err instanceof Error ? err.message : String(err);
  return new SensorError('DEVICE_UNAVAILABLE', `${what}: ${text}`, os);
}

export function hex(value: number, digits = 2): string {
  return `0x${value.toString(16).padStart(digits, '0')}`;
}
