/**
 * Post-training weight quantization of TF.js layers models, written in exactly the manifest
 * format of `tensorflowjs_converter --quantize_{uint8,uint16,float16}`, so the official TF.js
 * loader (`tf.loadLayersModel`, `tf.io.decodeWeights`) reads the files unmodified.
 *
 * uint8 / uint16: affine per tensor, `value = q * scale + min`. As in the converter, the range
 * is nudged so that 0 is represented exactly whenever min <= 0 <= max (zero padding and pruned
 * weights stay exactly zero). float16: IEEE half precision, round to nearest even.
 * Only float32 weights are quantized; int32 and bool weights are stored as they are.
 */
import type { io } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { tf } from '../runtime/tfjs';
import { decodeEntries } from '../store/weights';

export type WeightQuantization = 'uint8' | 'uint16' | 'float16';
export const WEIGHT_QUANTIZATIONS: readonly WeightQuantization[] = ['uint8', 'uint16', 'float16'];

export function isWeightQuantization(value: unknown): value is WeightQuantization {
  return typeof value === 'string' && (WEIGHT_QUANTIZATIONS as readonly string[]).includes(value);
}

/** The `quantization` object of a manifest entry, keys in the converter's order. */
export interface ManifestQuantization {
  dtype: WeightQuantization;
  /** One per tensor (the converter's format), or one per channel of the last axis. */
  min?: number | number[];
  scale?: number | number[];
  original_dtype?: string;
}

/**
 * How a uint8/uint16 tensor gets its min and scale: the converter's (one range per tensor, nudged
 * so 0 is exact), plain (one range per tensor, not nudged), or per channel (one plain range per
 * output unit, the last axis: this package's loader reads it, the official TF.js loader does not).
 */
export type AffineScheme = 'converter' | 'plain' | 'per-channel';

/** 'converter' for every tensor, or per tensor the scheme with the smallest measured error. */
export type SchemeChoice = 'converter' | 'best';

/** A weights manifest entry as the converter writes it (tfjs-core's type lacks original_dtype). */
export interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: io.WeightsManifestEntry['dtype'];
  group?: io.WeightGroup;
  quantization?: ManifestQuantization;
}

export type WeightDtype = 'float32' | 'int32' | 'bool';

/** One weight as plain values (dequantized if it was stored quantized). */
export interface DecodedWeight {
  name: string;
  shape: number[];
  dtype: WeightDtype;
  values: Float32Array | Int32Array | Uint8Array;
  group?: io.WeightGroup;
}

export interface EncodedWeights {
  weightSpecs: ManifestEntry[];
  weightData: ArrayBuffer;
  /** Names of the uint8/uint16 weights by the scheme they were quantized with. */
  schemes?: Partial<Record<AffineScheme, string[]>>;
}

/** NumPy's np.round: halves go to the even neighbour. */
function roundHalfToEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/**
 * The converter's `_get_affine_quantization_range`: scale spreads [min, max] over the integer
 * range; when the range covers 0 it is shifted so that 0 falls on an integer (TF-Lite's
 * nudging), otherwise it is left alone.
 */
function affineQuantizationRange(
  min: number,
  max: number,
  dtype: 'uint8' | 'uint16',
): { scale: number; min: number; max: number } {
  const quantMax = dtype === 'uint8' ? 255 : 65535;
  const scale = (max - min) / quantMax;
  if (min <= 0 && 0 <= max) {
    const nudgedZeroPoint = roundHalfToEven((0 - min) / scale);
    const nudgedMin = -nudgedZeroPoint * scale;
    return { scale, min: nudgedMin, max: quantMax * scale + nudgedMin };
  }
  return { scale, min, max };
}

/**
 * The converter's `quantize_weights` for uint8/uint16, in float64 arithmetic (as NumPy 2
 * evaluates it). A constant tensor becomes all zeros with scale 1 and min = the constant.
 * `nudge` false keeps the plain [min, max] range (0 then need not be exact).
 */
function quantizeAffine(
  values: Float32Array,
  dtype: 'uint8' | 'uint16',
  nudge = true,
): { data: Uint8Array | Uint16Array; min: number; scale: number } {
  let lo = Infinity;
  let hi = -Infinity;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!Number.isFinite(v)) throw new Error(`cannot quantize a non-finite weight value (${v})`);
    if (v < lo) lo = v;
    if (v > hi) hi = v;
  }
  const data = dtype === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  if (lo === hi) return { data, min: lo, scale: 1 };
  const quantMax = dtype === 'uint8' ? 255 : 65535;
  const range = nudge
    ? affineQuantizationRange(lo, hi, dtype)
    : { scale: (hi - lo) / quantMax, min: lo, max: hi };
  for (let i = 0; i < values.length; i++) {
    const clipped = Math.min(Math.max(values[i], range.min), range.max);
    const q = roundHalfToEven((clipped - range.min) / range.scale);
    data[i] = q < 0 ? 0 : q > quantMax ? quantMax : q;
  }
  return { data, min: range.min, scale: range.scale };
}

interface AffineResult {
  data: Uint8Array | Uint16Array;
  min: number | number[];
  scale: number | number[];
  scheme: AffineScheme;
  /** Sum of squared differences between the weights and their decoded values. */
  error: number;
}

/** One range per channel of the last axis (nudged so 0 is exact, or plain). */
function quantizePerChannel(
  values: Float32Array,
  channels: number,
  dtype: 'uint8' | 'uint16',
  nudge: boolean,
): AffineResult {
  const rows = values.length / channels;
  const data = dtype === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  const min: number[] = [];
  const scale: number[] = [];
  const column = new Float32Array(rows);
  for (let c = 0; c < channels; c++) {
    for (let r = 0; r < rows; r++) column[r] = values[r * channels + c];
    const q = quantizeAffine(column, dtype, nudge);
    for (let r = 0; r < rows; r++) data[r * channels + c] = q.data[r];
    min.push(q.min);
    scale.push(q.scale);
  }
  const result: AffineResult = { data, min, scale, scheme: 'per-channel', error: 0 };
  result.error = affineError(values, result, channels);
  return result;
}

function affineError(values: Float32Array, q: Omit<AffineResult, 'error'>, channels = 1): number {
  let sum = 0;
  for (let i = 0; i < values.length; i++) {
    const c = i % channels;
    const min = Array.isArray(q.min) ? q.min[c] : q.min;
    const scale = Array.isArray(q.scale) ? q.scale[c] : q.scale;
    const d = values[i] - (q.data[i] * scale + min);
    sum += d * d;
  }
  return sum;
}

/**
 * A tensor quantized by the converter's scheme, or (choice 'best') by whichever of converter,
 * plain and per-channel (tensors of rank >= 2 with several output units) decodes closest to
 * the weights; ties keep the converter's format. A tensor holding exact zeros (pruned weights,
 * padding) only gets ranges that keep them exactly zero.
 */
export function quantizeTensor(
  values: Float32Array,
  shape: readonly number[],
  dtype: 'uint8' | 'uint16',
  choice: SchemeChoice = 'converter',
): AffineResult {
  const converter = quantizeAffine(values, dtype, true);
  const first: AffineResult = { ...converter, scheme: 'converter', error: 0 };
  if (choice === 'converter') return first;
  first.error = affineError(values, first);
  const candidates: AffineResult[] = [first];
  const keepZeros = values.includes(0);
  if (!keepZeros) {
    const plain = quantizeAffine(values, dtype, false);
    candidates.push({ ...plain, scheme: 'plain', error: affineError(values, { ...plain, scheme: 'plain' }) });
  }
  const channels = shape[shape.length - 1];
  if (shape.length >= 2 && channels > 1 && values.length > channels) {
    candidates.push(quantizePerChannel(values, channels, dtype, true));
    if (!keepZeros) candidates.push(quantizePerChannel(values, channels, dtype, false));
  }
  return candidates.reduce((best, c) => (c.error < best.error ? c : best));
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** IEEE 754 binary16 bits of a float32, rounding to nearest even (NumPy's astype(float16)). */
export function toFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 31) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Subnormal half (or zero): shift the mantissa with its implicit bit into place.
    if (halfExponent < -10) return sign;
    const full = mantissa | 0x800000;
    const shift = 14 - halfExponent;
    let half = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const halfway = 1 << (shift - 1);
    if (rest > halfway || (rest === halfway && (half & 1) === 1)) half++;
    return sign | half;
  }
  let half = (halfExponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa correctly bumps the exponent (up to infinity).
  if (rest > 0x1000 || (rest === 0x1000 && (half & 1) === 1)) half++;
  return sign | half;
}

function quantizeFloat16(values: Float32Array): Uint16Array {
  const out = new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = toFloat16Bits(values[i]);
  return out;
}

function joinWeightData(data: io.WeightData | undefined): Uint8Array {
  if (data === undefined) return new Uint8Array(0);
  if (Array.isArray(data)) {
    const total = data.reduce((n, b) => n + b.byteLength, 0);
    const out = new Uint8Array(total);
    let offset = 0;
    for (const b of data) {
      out.set(new Uint8Array(b), offset);
      offset += b.byteLength;
    }
    return out;
  }
  return new Uint8Array(data);
}

/**
 * Reads weight values without creating tensors (usable in a worker), dequantizing entries
 * stored in any of the converter's quantized formats.
 */
export function decodeWeightData(
  specs: readonly ManifestEntry[],
  data: io.WeightData | undefined,
): DecodedWeight[] {
  return decodeEntries(specs, joinWeightData(data)).map(({ entry, dtype, values }) => {
    const weight: DecodedWeight = { name: entry.name, shape: [...entry.shape], dtype, values };
    if (entry.group) weight.group = entry.group as io.WeightGroup;
    return weight;
  });
}

/** How to quantize each weight: one dtype for all float32 weights, or a choice per weight. */
export type QuantizationPlan =
  WeightQuantization | undefined | ((weight: DecodedWeight) => WeightQuantization | undefined);

/**
 * Writes weights into one buffer with converter-format specs. float32 weights are quantized
 * as planned; all other dtypes (and empty tensors) are stored unquantized in the same buffer.
 */
export function encodeWeights(
  weights: readonly DecodedWeight[],
  plan: QuantizationPlan,
  choice: SchemeChoice = 'converter',
): EncodedWeights {
  const specs: ManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  const schemes: Partial<Record<AffineScheme, string[]>> = {};
  for (const weight of weights) {
    const chosen = typeof plan === 'function' ? plan(weight) : plan;
    const spec: ManifestEntry = { name: weight.name, shape: [...weight.shape], dtype: weight.dtype };
    if (weight.group) spec.group = weight.group;
    const { values } = weight;
    if (chosen && weight.dtype === 'float32' && values.length > 0) {
      const floats = values as Float32Array;
      if (chosen === 'float16') {
        const half = quantizeFloat16(floats);
        spec.quantization = { dtype: 'float16', original_dtype: 'float32' };
        parts.push(new Uint8Array(half.buffer, half.byteOffset, half.byteLength));
      } else {
        const { data, min, scale, scheme } = quantizeTensor(floats, weight.shape, chosen, choice);
        spec.quantization = { dtype: chosen, min, scale, original_dtype: 'float32' };
        (schemes[scheme] ??= []).push(weight.name);
        parts.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      }
    } else {
      parts.push(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
    }
    specs.push(spec);
  }
  const total = parts.reduce((n, p) => n + p.byteLength, 0);
  const joined = new Uint8Array(total);
  let offset = 0;
  for (const part of parts) {
    joined.set(part, offset);
    offset += part.byteLength;
  }
  return { weightSpecs: specs, weightData: joined.buffer, schemes };
}

/** Re-encodes the weights of model artifacts with the given quantization. */
export function quantizeArtifacts(artifacts: io.ModelArtifacts, plan: QuantizationPlan): io.ModelArtifacts {
  const weights = decodeWeightData((artifacts.weightSpecs ?? []) as ManifestEntry[], artifacts.weightData);
  const encoded = encodeWeights(weights, plan);
  return {
    ...artifacts,
    weightSpecs: encoded.weightSpecs as io.WeightsManifestEntry[],
    weightData: encoded.weightData,
  };
}

/** The artifacts TF.js would save for `model` (topology, specs, float32 weight bytes). */
export async function modelArtifacts(model: LayersModel): Promise<io.ModelArtifacts> {
  let captured: io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (artifacts) => {
      captured = artifacts;
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    }),
  );
  if (!captured) throw new Error('the model did not produce save artifacts');
  return captured;
}

/** Quantized artifacts of a layers model; save them with fileSaveHandler or tf.io handlers. */
export async function quantizeLayersModel(
  model: LayersModel,
  plan: QuantizationPlan,
): Promise<io.ModelArtifacts> {
  return quantizeArtifacts(await modelArtifacts(model), plan);
}
