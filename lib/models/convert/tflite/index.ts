export { TfliteError, type TfliteErrorCode } from './errors';
export { isTfliteBuffer, readTflite, type TfliteGraph, type TfliteOp, type TfliteTensor } from './read';
export {
  convertTfliteGraph,
  convertTfliteToOnnx,
  IO_QUANTIZATION_KEY,
  type IoQuantization,
  SUPPORTED_TFLITE_OPS,
  TFLITE_ONNX_OPSET,
  type TfliteConversion,
  type TfliteConvertOptions,
  type TfliteIo,
} from './to-onnx';
