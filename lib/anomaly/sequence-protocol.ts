/** Types shared by the detector and its neural sequence models. */

export type SequenceArchitecture = 'ae-dense' | 'ae-conv' | 'ae-lstm' | 'forecast';

/** Sent after each training epoch of a neural method. */
export interface TrainingProgress {
  type: 'progress';
  epoch: number;
  epochs: number;
  loss: number;
}
