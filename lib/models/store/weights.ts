import type * as tf from '@tensorflow/tfjs-core';
import { ModelLoadError } from '../../errors';
import { sizeOf } from '../../preprocess/shape';

/**
 * Reading weights in the TF.js converter's manifest format, including its quantized forms:
 * `quantization: {dtype: 'uint8' | 'uint16', min, scale}` (value = q * scale + min) and
 * `{dtype: 'float16'}`, with or without `original_dtype`, in groups whose shards may mix
 * quantized and plain (e.g. int32) entries. The result is plain float32 / int32 / bool data
 * that any TF.js loader reads, so quantization never reaches the runtimes.
 */

export interface ManifestEntry {
  name: string;
  shape: number[];
  dtype: string;
  group?: string;
  /** min and scale: one per tensor, or one per channel of the last axis (this package's per-channel form). */
  quantization?: {
    dtype: string;
    min?: number | number[];
    scale?: number | number[];
    original_dtype?: string;
  };
}

export interface ManifestGroup {
  paths: string[];
  weights: ManifestEntry[];
}

export interface DecodedWeights {
  specs: tf.io.WeightsManifestEntry[];
  data: ArrayBuffer;
  /** Names of entries that were stored quantized, with the stored type. */
  quantized: Record<string, string>;
}

const PLAIN_BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1 };
const QUANT_BYTES: Record<string, number> = { uint8: 1, uint16: 2, float16: 2 };

function count(shape: number[], name: string): number {
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new ModelLoadError(`weight ${name}: invalid shape ${JSON.stringify(shape)}`);
  }
  return sizeOf(shape);
}

/** IEEE 754 half precision to single, including subnormals, infinities and NaN. */
export function float16ToFloat32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** The type a weight has once decoded: a quantized entry may name the stored type in `dtype`. */
function targetDtype(entry: ManifestEntry): string {
  const q = entry.quantization;
  if (!q) return entry.dtype;
  if (q.original_dtype) return q.original_dtype;
  // Without original_dtype, a `dtype` naming the stored type means the weights were float32.
  return entry.dtype in QUANT_BYTES ? 'float32' : entry.dtype;
}

function storedBytes(entry: ManifestEntry): number {
  const q = entry.quantization;
  if (q) {
    const size = QUANT_BYTES[q.dtype];
    if (!size) {
      throw new ModelLoadError(
        `weight ${entry.name}: unknown quantization dtype "${q.dtype}" (expected uint8, uint16 or float16)`,
      );
    }
    return size;
  }
  const size = PLAIN_BYTES[entry.dtype];
  if (!size) throw new ModelLoadError(`weight ${entry.name}: unsupported dtype "${entry.dtype}"`);
  return size;
}

function decodeEntry(
  entry: ManifestEntry,
  bytes: Uint8Array,
  n: number,
): Float32Array | Int32Array | Uint8Array {
  const q = entry.quantization;
  const dtype = targetDtype(entry);
  // Copy into an aligned buffer: entries after a uint8 one start at odd offsets.
  const aligned = bytes.slice().buffer;
  if (q) {
    if (dtype !== 'float32' && dtype !== 'int32') {
      throw new ModelLoadError(`weight ${entry.name}: cannot dequantize to ${dtype}`);
    }
    if (q.dtype === 'float16') {
      if (dtype !== 'float32') throw new ModelLoadError(`weight ${entry.name}: float16 only encodes float32`);
      const halves = new Uint16Array(aligned);
      const out = new Float32Array(n);
      for (let i = 0; i < n; i++) out[i] = float16ToFloat32(halves[i]);
      return out;
    }
    const channels = Array.isArray(q.min) ? q.min.length : 1;
    const mins = Array.isArray(q.min) ? q.min : [q.min];
    const scales = Array.isArray(q.scale) ? q.scale : [q.scale];
    const lastAxis = entry.shape[entry.shape.length - 1];
    if (
      scales.length !== channels ||
      (channels > 1 && channels !== lastAxis) ||
      ![...mins, ...scales].every((v) => typeof v === 'number' && isFinite(v))
    ) {
      throw new ModelLoadError(
        `weight ${entry.name}: ${q.dtype} quantization needs numeric min and scale (one each, or one per channel of the last axis)`,
      );
    }
    const codes = q.dtype === 'uint8' ? new Uint8Array(aligned) : new Uint16Array(aligned);
    const out = dtype === 'int32' ? new Int32Array(n) : new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const c = channels > 1 ? i % channels : 0;
      const v = codes[i] * (scales[c] as number) + (mins[c] as number);
      out[i] = dtype === 'int32' ? Math.round(v) : v;
    }
    return out;
  }
  if (entry.dtype === 'float32') return new Float32Array(aligned);
  if (entry.dtype === 'int32') return new Int32Array(aligned);
  return new Uint8Array(aligned); // bool
}

/** One decoded weight: its entry, the type it decodes to, and its plain values. */
export interface DecodedEntry {
  entry: ManifestEntry;
  dtype: 'float32' | 'int32' | 'bool';
  values: Float32Array | Int32Array | Uint8Array;
}

/** Bytes the entries occupy in their shards, in their stored (possibly quantized) form. */
function storedByteLength(entries: readonly ManifestEntry[]): number {
  return entries.reduce((a, e) => a + count(e.shape, e.name) * storedBytes(e), 0);
}

/**
 * Decodes entries laid out one after another in `bytes` (the TF.js weight data layout),
 * dequantizing the quantized ones. Used for weights read from disk and for in-memory artifacts.
 */
export function decodeEntries(entries: readonly ManifestEntry[], bytes: Uint8Array): DecodedEntry[] {
  const out: DecodedEntry[] = [];
  let offset = 0;
  for (const entry of entries) {
    const n = count(entry.shape, entry.name);
    const length = n * storedBytes(entry);
    if (offset + length > bytes.byteLength) {
      throw new ModelLoadError(
        `weight data too short: ${entry.name} needs bytes ${offset}..${offset + length}, have ${bytes.byteLength}`,
      );
    }
    const values = decodeEntry(entry, bytes.subarray(offset, offset + length), n);
    offset += length;
    out.push({ entry, dtype: targetDtype(entry) as DecodedEntry['dtype'], values });
  }
  return out;
}

/**
 * Decodes every group of a weights manifest. `readShard` returns a shard's bytes by the path
 * written in the manifest. Each group's shards are concatenated and must hold exactly the
 * bytes its entries describe; anything else means a truncated or corrupt shard.
 */
export async function decodeWeightsManifest(
  groups: ManifestGroup[],
  readShard: (shardPath: string) => Promise<Uint8Array>,
): Promise<DecodedWeights> {
  if (!Array.isArray(groups)) throw new ModelLoadError('weightsManifest is not a list of groups');
  const specs: tf.io.WeightsManifestEntry[] = [];
  const parts: Uint8Array[] = [];
  const quantized: Record<string, string> = {};
  let total = 0;
  for (const [g, group] of groups.entries()) {
    if (!group || !Array.isArray(group.paths) || !Array.isArray(group.weights)) {
      throw new ModelLoadError(`weightsManifest group ${g + 1} needs "paths" and "weights" lists`);
    }
    const shards: Uint8Array[] = [];
    for (const p of group.paths) shards.push(await readShard(p));
    const held = shards.reduce((a, s) => a + s.length, 0);
    const data = new Uint8Array(held);
    let at = 0;
    for (const s of shards) {
      data.set(s, at);
      at += s.length;
    }
    const needed = storedByteLength(group.weights);
    if (needed !== held) {
      throw new ModelLoadError(
        `weight group ${g + 1} (${group.paths.join(', ')}) should hold ${needed} bytes but holds ${held}: ` +
          `a shard is ${held < needed ? 'truncated or missing data' : 'corrupt or does not match model.json'}`,
      );
    }
    for (const { entry, dtype, values } of decodeEntries(group.weights, data)) {
      if (values instanceof Float32Array) {
        for (let i = 0; i < values.length; i++) {
          // Infinities can be legitimate graph constants; NaN in weights means damage.
          if (Number.isNaN(values[i])) {
            throw new ModelLoadError(`weight ${entry.name} holds NaN at index ${i}: the shard is corrupt`);
          }
        }
      }
      if (entry.quantization) quantized[entry.name] = entry.quantization.dtype;
      const spec: tf.io.WeightsManifestEntry = { name: entry.name, shape: entry.shape, dtype };
      if (entry.group) spec.group = entry.group as tf.io.WeightGroup;
      specs.push(spec);
      parts.push(new Uint8Array(values.buffer, values.byteOffset, values.byteLength));
      total += values.byteLength;
    }
  }
  const buffer = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    buffer.set(p, at);
    at += p.length;
  }
  return { specs, data: buffer.buffer, quantized };
}
