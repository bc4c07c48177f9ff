/** Messages between the detector and its sequence-model worker thread. */

export type SequenceArchitecture = 'ae-dense' | 'ae-conv' | 'ae-lstm' | 'forecast';

export interface SequenceArtifacts {
  modelTopology: object;
  weightSpecs: unknown[];
  weightData: Uint8Array;
}

export interface TrainRequest {
  type: 'train';
  arch: SequenceArchitecture;
  /** Standardised windows, flat [count x window x channels]. */
  data: Float32Array;
  count: number;
  window: number;
  channels: number;
  latent: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** Fraction of the latest windows held out to calibrate the scores. */
  validationSplit: number;
  seed: number;
  /** Training uses at most this many windows, evenly spaced (neighbours overlap almost fully). */
  maxTrainWindows: number;
  /** TF.js backends to try, in order (default wasm, then cpu). */
  backends?: ('wasm' | 'cpu')[];
}

export type SequenceRequest =
  | TrainRequest
  | { type: 'load'; arch: SequenceArchitecture; artifacts: SequenceArtifacts; backends?: ('wasm' | 'cpu')[] }
  | { type: 'score'; data: Float32Array; count: number; window: number; channels: number }
  | { type: 'memory' };

export type SequenceReply =
  | {
      type: 'trained';
      artifacts: SequenceArtifacts;
      /** Per-window, per-channel errors of the held-out windows, flat [n x channels]. */
      calibration: Float32Array;
      loss: number;
      trainingBackend: string;
      inferenceBackend: string;
    }
  | { type: 'loaded'; inferenceBackend: string }
  | { type: 'scored'; errors: Float32Array }
  | { type: 'memory'; numTensors: number };

export interface TrainingProgress {
  type: 'progress';
  epoch: number;
  epochs: number;
  loss: number;
}
