import { ModelLoadError, type ErrorCode } from '../../../errors';

/** The codes of TFLite problems (see lib/errors.ts). */
export type TfliteErrorCode = Extract<
  ErrorCode,
  'tflite-invalid' | 'tflite-unsupported-op' | 'tflite-unsupported'
>;

/** A TFLite model that cannot be read or converted; `code` says which kind of problem. */
export class TfliteError extends ModelLoadError {
  constructor(code: TfliteErrorCode, message: string, params?: Record<string, string | number>) {
    super(message, code, params);
    this.name = 'TfliteError';
  }
}
