import type { EpochProgress, TrainData, TrainResult, TrainSettings } from './trainer';

/** Main thread -> training worker. */
export type WorkerRequest = {
  type: 'train';
  settings: TrainSettings;
  data: TrainData;
  /** Int32Array[1] over this buffer; non-zero asks the worker to stop after the current batch. */
  cancelFlag: SharedArrayBuffer;
};

/** Training worker -> main thread. */
export type WorkerReply =
  | { type: 'progress'; progress: EpochProgress }
  | { type: 'done'; result: TrainResult }
  | { type: 'cancelled' }
  | { type: 'error'; message: string };
