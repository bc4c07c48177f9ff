import type { onnx } from '../onnx-proto';

/**
 * Model metadata key of a JSON object { [input or output name]: { scale, zeroPoint, type } }:
 * graph inputs and outputs that hold quantized integers while callers deal in real numbers.
 * OrtRunner quantizes such inputs and dequantizes such outputs itself, bit for bit as ONNX's
 * QuantizeLinear and DequantizeLinear would, which saves two graph nodes per run.
 */
export const IO_QUANTIZATION_KEY = 'edge-ai.io-quantization';

/** How a quantized graph input or output maps to real numbers: real = (q - zeroPoint) * scale. */
export interface IoQuantization {
  scale: number;
  zeroPoint: number;
  type: 'uint8' | 'int8';
}

/** The IO_QUANTIZATION_KEY metadata of a model: its integer inputs and outputs. */
export function ioQuantizationOf(model: onnx.ModelProto): Record<string, IoQuantization> {
  const entry = model.metadataProps.find((p) => p.key === IO_QUANTIZATION_KEY);
  if (!entry?.value) return {};
  try {
    const parsed = JSON.parse(entry.value) as Record<string, IoQuantization>;
    const ok = Object.values(parsed).every(
      (q) =>
        Number.isFinite(q.scale) &&
        q.scale > 0 &&
        Number.isInteger(q.zeroPoint) &&
        (q.type === 'uint8' || q.type === 'int8'),
    );
    return ok ? parsed : {};
  } catch {
    return {};
  }
}

/** Adding and subtracting 1.5 * 2^52 rounds a double to an integer, half to even. */
const ROUND_EVEN = 6755399441055744;

/**
 * Real numbers -> integers exactly as ONNX's QuantizeLinear computes them: x / scale in float32,
 * rounded half to even, plus the zero point, saturated (NaN gives the zero point). Writes into
 * `into` (of the input's length and q's type) when given.
 */
export function quantizeReal(
  input: Float32Array,
  q: IoQuantization,
  into?: Uint8Array | Int8Array,
): Uint8Array | Int8Array {
  const n = input.length;
  const out = into ?? (q.type === 'uint8' ? new Uint8Array(n) : new Int8Array(n));
  const lo = q.type === 'uint8' ? 0 : -128;
  const hi = q.type === 'uint8' ? 255 : 127;
  const zp = q.zeroPoint;
  const scale = Math.fround(q.scale);
  for (let i = 0; i < n; i++) {
    const v = Math.fround(input[i] / scale) + ROUND_EVEN - ROUND_EVEN + zp;
    out[i] = v < lo ? lo : v > hi ? hi : v === v ? v : zp;
  }
  return out;
}

/** Integers -> real numbers exactly as ONNX's DequantizeLinear computes them. */
export function dequantizeReal(raw: ArrayLike<number>, q: IoQuantization): Float32Array {
  const out = new Float32Array(raw.length);
  const scale = Math.fround(q.scale);
  for (let i = 0; i < raw.length; i++) out[i] = (raw[i] - q.zeroPoint) * scale;
  return out;
}
