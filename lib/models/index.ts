/**
 * Models: the versioned model store, reading TF.js (layers, graph; Keras 2/3 exports) and ONNX
 * models, runners on TF.js and ONNX Runtime with runtime selection, the shared model handle,
 * inference input/output mapping, ONNX export, quantization, pruning and compression.
 */
export * from './errors';
export * from './runner';
export { useBackend, fileLoadHandler, fileSaveHandler, type TfBackendName } from './tfjs';
export * from './store';
export * from './model-files';
export * from './source';
export * from './tfjs-runner';
export * from './ort-runner';
export * from './select';
export * from './model-handle';
export * from './inference';
export { exportLayersModelToOnnx, OnnxExportUnsupported, ONNX_EXPORT_OPSET } from './onnx-export';
export {
  quantizeOnnxInt8,
  quantizeOnnxInt8Calibrated,
  calibrateOnnxActivations,
  compareOnnxModels,
  type OnnxInt8Options,
  type OnnxInt8Report,
} from './onnx-quantize';
export {
  WEIGHT_QUANTIZATIONS,
  type WeightQuantization,
  type QuantizationPlan,
  quantizeArtifacts,
  quantizeLayersModel,
  modelArtifacts,
  decodeWeightData,
  encodeWeights,
} from './quantize';
export {
  PRUNE_SCOPES,
  type PruneScope,
  type PruneOptions,
  type PruneStats,
  measureSparsity,
  pruneArtifacts,
  pruneLayersModel,
} from './prune';
export {
  COMPRESS_QUANTIZATIONS,
  type CompressQuantization,
  type CompressOptions,
  type CompressStoredRequest,
  type CompressStoredResult,
  compressStoredModel,
} from './compress';
export type { CompressionReport } from './compress-report';
