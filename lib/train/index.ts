/**
 * On-device training: the DeviceTrainer (dataset on disk, training in a worker thread, saving
 * to the model store), the built-in architectures, the dataset, and the trainer itself.
 */
export * from './device-trainer';
export * from './architectures';
export * from './dataset';
export {
  trainModel,
  prepareBackend,
  CancelledError,
  type TrainSettings,
  type TrainData,
  type TrainResult,
  type EpochProgress,
  type BackendChoice,
  type OptimizerName,
} from './trainer';
export { registerWasmGradients } from './wasm-gradients';
