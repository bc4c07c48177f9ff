/**
 * The one error family of lib/. Every error carries a stable string `code` naming the cause and
 * optional `params` (values a translated message can interpolate), so a node can look the code up
 * in its i18n catalog and a flow's Catch node can branch on it without parsing messages.
 *
 * Codes:
 *   model-invalid            a model file is malformed or holds something unsupported
 *   model-invalid-onnx       the bytes are not an ONNX model (corrupt, truncated, another format)
 *   tflite-invalid           a TFLite file is not a TFLite flatbuffer or is damaged
 *   tflite-unsupported-op    a TFLite model uses an operator (or an option of one) not converted   params: op
 *   tflite-unsupported       a TFLite model uses a tensor feature not converted (sparse, custom quantization)
 *   model-not-found          no model file at the given path or URL            params: location
 *   model-not-in-store       the named model has no version in the store yet   params: name
 *   model-not-loaded         no model is loaded (yet)
 *   model-download-failed    downloading a model failed                         params: url
 *   model-too-large          a model exceeds the size limit                     params: limit
 *   model-shard-origin       a model.json points a shard at another origin      params: url, origin
 *   runtime-missing          no runtime that can run the model loads here       params: runtime
 *   runtime-failed           the runtime rejected or could not start the model
 *   onnx-export-unsupported  a layers model holds something the ONNX exporter cannot express
 *   input-invalid            a message's input cannot be used
 *   dataset-invalid          a training dataset or sample is unusable
 *   too-few-samples          too few samples to train                          params: have, need
 *   setting-invalid          a configuration value is out of range or missing
 *   path-outside-root        a file path leads outside the allowed directory   params: path, root
 *   cancelled                the work was cancelled
 *   worker-stopped           a worker thread was terminated or stopped before it answered
 *   queue-full               the inference queue is full: message rejected      params: limit
 *   queue-dropped            the inference queue is full: oldest message dropped params: limit
 *   queue-closed             inference stopped before the message ran
 *   hardware-missing         the bus, GPIO or driver module does not exist here
 *   i2c-bus-missing          no I2C bus of that number on this machine          params: bus
 *   i2c-module-missing       the optional i2c-bus module does not load
 *   gpio-missing             no GPIO (or no such gpiochip) on this machine
 *   gpio-module-missing      the optional onoff module does not load
 *   sensor-no-access         the hardware exists but this process may not open it
 *   sensor-unavailable       the device does not answer (it may come back)
 *   sensor-wrong-chip        something answered at the address but not the expected chip
 *   sensor-timeout           a conversion or reset never finished
 *   sensor-end-of-data       a replay source has no more rows
 *   sensor-fault-invalid     a fault injection request the source cannot apply
 *   fleet-connect-failed     the MQTT broker of a fleet cannot be reached or refused us  params: url
 *   fleet-key-invalid        a fleet signing or public key cannot be read
 *   fleet-unsigned           a fleet model manifest carries no signature       params: name
 *   fleet-bad-signature      a fleet model manifest's signature does not verify params: name, version
 *   fleet-manifest-invalid   a fleet model manifest is malformed               params: name
 *   fleet-tampered           a fleet model file does not match its signed hash params: name, version, file
 *   fleet-truncated          a fleet model's chunks stopped short or never all arrived  params: name, version
 *   fleet-update-invalid     a federated weight update is malformed, mis-shaped or not finite  params: device, round
 *   fleet-tls-untrusted      the broker's TLS certificate is not trusted (wrong CA, host or expired)  params: url
 *   fleet-duplicate-id       another connection uses the same MQTT client id: the broker keeps ending one  params: url, clientId, device
 */

export type ErrorCode =
  | 'model-invalid'
  | 'model-invalid-onnx'
  | 'tflite-invalid'
  | 'tflite-unsupported-op'
  | 'tflite-unsupported'
  | 'model-not-found'
  | 'model-not-in-store'
  | 'model-not-loaded'
  | 'model-download-failed'
  | 'model-too-large'
  | 'model-shard-origin'
  | 'runtime-missing'
  | 'runtime-failed'
  | 'onnx-export-unsupported'
  | 'input-invalid'
  | 'dataset-invalid'
  | 'too-few-samples'
  | 'setting-invalid'
  | 'path-outside-root'
  | 'cancelled'
  | 'worker-stopped'
  | 'queue-full'
  | 'queue-dropped'
  | 'queue-closed'
  | 'hardware-missing'
  | 'i2c-bus-missing'
  | 'i2c-module-missing'
  | 'gpio-missing'
  | 'gpio-module-missing'
  | 'sensor-no-access'
  | 'sensor-unavailable'
  | 'sensor-wrong-chip'
  | 'sensor-timeout'
  | 'sensor-end-of-data'
  | 'sensor-fault-invalid'
  | 'fleet-connect-failed'
  | 'fleet-key-invalid'
  | 'fleet-unsigned'
  | 'fleet-bad-signature'
  | 'fleet-manifest-invalid'
  | 'fleet-tampered'
  | 'fleet-truncated'
  | 'fleet-update-invalid'
  | 'fleet-tls-untrusted'
  | 'fleet-duplicate-id';

export type ErrorParams = Record<string, string | number>;

export class EdgeAiError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    readonly params?: ErrorParams,
  ) {
    super(message);
    this.name = 'EdgeAiError';
  }
}

export function isEdgeAiError(err: unknown, code?: ErrorCode): err is EdgeAiError {
  return err instanceof EdgeAiError && (code === undefined || err.code === code);
}

// ---- models ----

/** A model could not be read, understood or started; the message says what and where. */
export class ModelLoadError extends EdgeAiError {
  constructor(message: string, code: ErrorCode = 'model-invalid', params?: ErrorParams) {
    super(code, message, params);
    this.name = 'ModelLoadError';
  }
}

/** The named model has no version in the store yet (e.g. before its first training): wait for it. */
export class ModelNotInStoreYet extends ModelLoadError {
  constructor(readonly modelName: string) {
    super(`no model named ${modelName} in the store yet`, 'model-not-in-store', { name: modelName });
    this.name = 'ModelNotInStoreYet';
  }
}

/** Thrown when a layers model holds something the ONNX exporter cannot express. */
export class OnnxExportUnsupported extends EdgeAiError {
  constructor(what: string) {
    super('onnx-export-unsupported', `cannot export to ONNX: ${what}`, { what });
    this.name = 'OnnxExportUnsupported';
  }
}

export class QueueFullError extends EdgeAiError {
  constructor(limit: number) {
    super('queue-full', `inference queue full (${limit} waiting): message rejected`, { limit });
    this.name = 'QueueFullError';
  }
}

export class DroppedError extends EdgeAiError {
  constructor(limit: number) {
    super('queue-dropped', `inference queue full (${limit} waiting): oldest message dropped`, { limit });
    this.name = 'DroppedError';
  }
}

export class BatcherClosedError extends EdgeAiError {
  constructor() {
    super('queue-closed', 'inference stopped before this message ran');
    this.name = 'BatcherClosedError';
  }
}

// ---- input and training ----

export class InputError extends EdgeAiError {
  constructor(message: string, code: ErrorCode = 'input-invalid', params?: ErrorParams) {
    super(code, message, params);
    this.name = 'InputError';
  }
}

export class DatasetError extends InputError {
  constructor(message: string) {
    super(message, 'dataset-invalid');
    this.name = 'DatasetError';
  }
}

export class TooFewSamplesError extends EdgeAiError {
  constructor(have: number, need: number) {
    super(
      'too-few-samples',
      `too few samples to train: the dataset has ${have}, at least ${need} are needed`,
      {
        have,
        need,
      },
    );
    this.name = 'TooFewSamplesError';
  }
}

export class CancelledError extends EdgeAiError {
  constructor() {
    super('cancelled', 'training cancelled');
    this.name = 'CancelledError';
  }
}

// ---- sensors ----

/** The broad kind of a sensor failure, for callers that only need "no hardware" vs "not answering". */
export type SensorErrorKind =
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

const SENSOR_CODES: Record<SensorErrorKind, ErrorCode> = {
  NO_HARDWARE: 'hardware-missing',
  NO_ACCESS: 'sensor-no-access',
  DEVICE_UNAVAILABLE: 'sensor-unavailable',
  WRONG_CHIP: 'sensor-wrong-chip',
  TIMEOUT: 'sensor-timeout',
  BAD_CONFIG: 'setting-invalid',
  END_OF_DATA: 'sensor-end-of-data',
  BAD_FAULT: 'sensor-fault-invalid',
};

export class SensorError extends EdgeAiError {
  /** The operating system's error code underneath, when there was one (EIO, ENOENT, ...). */
  readonly osCode?: string;

  /** `code` defaults from the kind; pass one where the cause is more precise (e.g. 'i2c-bus-missing'). */
  constructor(
    readonly kind: SensorErrorKind,
    message: string,
    osCode?: string,
    code: ErrorCode = SENSOR_CODES[kind],
    params?: ErrorParams,
  ) {
    super(code, message, params);
    this.name = 'SensorError';
    this.osCode = osCode;
  }
}

/** A request that settled because the worker was terminated or stopped. */
export class WorkerStoppedError extends EdgeAiError {
  constructor(message: string) {
    super('worker-stopped', message);
    this.name = 'WorkerStoppedError';
  }
}

// ---- fleet ----

/** A fleet operation failed: a broker problem, or a model roll-out refused (the code says why). */
export class FleetError extends EdgeAiError {
  constructor(code: ErrorCode, message: string, params?: ErrorParams) {
    super(code, message, params);
    this.name = 'FleetError';
  }
}
