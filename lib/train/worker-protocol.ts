import type { TrainedArtifacts, TrainData, TrainSettings } from './trainer';
import type { BackendChoice } from './trainer';

/** Methods of the training worker (lib/train/worker.ts), called through lib/util/worker-rpc. */

/** `train`: trains one model; with `keep`, the worker then holds it for `predict`. */
export interface TrainParams {
  settings: TrainSettings;
  data: TrainData;
  keep?: boolean;
}

/** `load`: holds a trained model for `predict`. */
export interface LoadParams {
  artifacts: TrainedArtifacts;
  backend?: BackendChoice;
}

/** `predict`: runs the held model on `count` samples, flat row-major; resolves with its flat output. */
export interface PredictParams {
  x: Float32Array;
  count: number;
}

/** `memory`: the worker's live tensors (leak checks); resolves with a number. */
