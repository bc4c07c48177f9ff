import { ModelLoadError } from '../../errors';

/** Stable codes for what went wrong with a TFLite model (callers and tests match on them). */
export type TfliteErrorCode = 'tflite-invalid' | 'tflite-unsupported-op' | 'tflite-unsupported';

/** A TFLite model that cannot be read or converted; `code` says which kind of problem. */
export class TfliteError extends ModelLoadError {
  constructor(
    readonly code: TfliteErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'TfliteError';
  }
}
