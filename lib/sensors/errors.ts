/**
 * Errors of the sensor layer. Each carries a stable `code` so callers (the node, tests, flows
 * with a Catch node) can tell "this machine has no such hardware" from "the device stopped
 * answering" without parsing messages.
 */

export type SensorErrorCode =
  /** The bus, GPIO sysfs or driver module does not exist here: not a transient fault. */
  | 'NO_HARDWARE'
  /** The hardware exists but this process may not open it (permissions). */
  | 'NO_ACCESS'
  /** The device did not answer (EIO, ENXIO, EREMOTEIO, ...): it may come back. */
  | 'DEVICE_UNAVAILABLE'
  /** Something answered at the address but it is not the expected chip. */
  | 'WRONG_CHIP'
  /** The device answered but a conversion or reset never finished. */
  | 'TIMEOUT'
  /** A configuration value is out of range. */
  | 'BAD_CONFIG'
  /** A replay source has no more rows. */
  | 'END_OF_DATA'
  /** A fault injection request that the source cannot apply. */
  | 'BAD_FAULT';

export class SensorError extends Error {
  readonly code: SensorErrorCode;
  /** The operating system's error code underneath, when there was one (EIO, ENOENT, ...). */
  readonly osCode?: string;

  constructor(code: SensorErrorCode, message: string, osCode?: string) {
    super(message);
    this.name = 'SensorError';
    this.code = code;
    this.osCode = osCode;
  }
}

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

export function isSensorError(err: unknown, code?: SensorErrorCode): err is SensorError {
  return err instanceof SensorError && (code === undefined || err.code === code);
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
