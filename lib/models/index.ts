/**
 * Models: the versioned model store, reading TF.js (layers, graph; Keras 2/3 exports) and ONNX
 * models, runners on TF.js and ONNX Runtime with runtime selection, the shared model handle,
 * inference input/output mapping, ONNX export, quantization, pruning and compression.
 */
export {
  ModelLoadError,
  ModelNotInStoreYet,
  QueueFullError,
  DroppedError,
  BatcherClosedError,
} from '../errors';
export * from './runtime/runner';
export { sizeOf } from '../preprocess/shape';
export {
  useBackend,
  tfjsNodeMissing,
  fileLoadHandler,
  fileSaveHandler,
  type TfBackendName,
} from './runtime/tfjs';
export * from './store/store';
export * from './store/model-files';
export * from './store/source';
export * from './runtime/tfjs-runner';
export * from './runtime/ort-runner';
export * from './runtime/select';
export * from './serve/model-handle';
export * from './serve/inference';
export { exportLayersModelToOnnx, OnnxExportUnsupported, ONNX_EXPORT_OPSET } from './convert/onnx-export';
export {
  quantizeOnnxInt8,
  quantizeOnnxInt8Calibrated,
  calibrateOnnxActivations,
  compareOnnxModels,
  type OnnxInt8Options,
  type OnnxInt8Report,
} from './compress/onnx-quantize';
export {
  WEIGHT_QUANTIZATIONS,
  type WeightQuantization,
  type QuantizationPlan,
  quantizeArtifacts,
  quantizeLayersModel,
  modelArtifacts,
  decodeWeightData,
  encodeWeights,
} from './compress/quantize';
export {
  PRUNE_SCOPES,
  type PruneScope,
  type PruneOptions,
  type PruneStats,
  measureSparsity,
  pruneArtifacts,
  pruneLayersModel,
} from './compress/prune';
export {
  COMPRESS_QUANTIZATIONS,
  type CompressQuantization,
  type CompressOptions,
  type CompressStoredRequest,
  type CompressStoredResult,
  compressStoredModel,
} from './compress/compress';
export type { CompressionReport } from './compress/compress-report';
