/**
 * Int8 quantization of ONNX models (dynamic quantization of MatMul/Gemm/Conv weights or QDQ),
 * provided by lib/models/onnx-quantize.ts as `quantizeOnnxInt8(bytes)`. That module is built
 * separately; it is looked up at run time so this package works (with a clear error for
 * int8 requests) in builds that do not include it yet.
 */

type QuantizeOnnxInt8 = (bytes: Uint8Array) => Uint8Array | Promise<Uint8Array>;

export class OnnxInt8Unavailable extends Error {
  constructor(reason: string) {
    super(`int8 ONNX quantization is not available in this build (${reason})`);
    this.name = 'OnnxInt8Unavailable';
  }
}

function findQuantizer(): QuantizeOnnxInt8 {
  let mod: { quantizeOnnxInt8?: unknown };
  try {
    mod = require('./onnx-quantize') as { quantizeOnnxInt8?: unknown };
  } catch (err) {
    const { code, message } = err as { code?: string; message?: string };
    if (code === 'MODULE_NOT_FOUND' && String(message).includes('onnx-quantize'))
      throw new OnnxInt8Unavailable('lib/models/onnx-quantize is missing');
    throw err;
  }
  if (typeof mod.quantizeOnnxInt8 !== 'function') {
    throw new OnnxInt8Unavailable('lib/models/onnx-quantize does not export quantizeOnnxInt8');
  }
  return mod.quantizeOnnxInt8 as QuantizeOnnxInt8;
}

export function onnxInt8Available(): boolean {
  try {
    findQuantizer();
    return true;
  } catch {
    return false;
  }
}

/** ONNX model bytes with int8 weights (and int8 compute where ONNX Runtime supports it). */
export async function quantizeOnnxModelInt8(bytes: Uint8Array): Promise<Uint8Array> {
  return findQuantizer()(bytes);
}
