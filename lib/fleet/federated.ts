import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { FleetError } from '../errors';
import type { StoredModel } from '../models/store/store';
import type { FleetTopics } from './topics';

/**
 * Federated averaging (FedAvg, McMahan et al. 2017): the weights of a TF.js layers model as
 * flat float32 tensors, the weight update a device publishes (its trained weights minus the
 * fleet's global version, quantized), and the checks an aggregator applies to it.
 *
 * An update travels on `<root>/<fleet>/federated/<name>/updates/<device>` as one binary
 * message: a 4-byte little-endian header length, the header JSON (round, samples, encoding and
 * per-tensor shapes and quantization ranges), then the tensors' values one after another.
 * Only the update leaves the device, never a sample.
 */

export type UpdateEncoding = 'float32' | 'float16' | 'uint8';
export const UPDATE_ENCODINGS: readonly UpdateEncoding[] = ['uint8', 'float16', 'float32'];

export const UPDATE_FORMAT = 'edge-ai-fedavg-update';

export interface WeightSpec {
  name: string;
  shape: number[];
}

/** The weights of a model: one float32 array per tensor, in the model's order. */
export interface ModelWeights {
  specs: WeightSpec[];
  values: Float32Array[];
}

export interface UpdateTensorHeader {
  name: string;
  shape: number[];
  /** uint8: the value of code 0 and the step between codes. */
  min?: number;
  step?: number;
}

export interface UpdateHeader {
  format: typeof UPDATE_FORMAT;
  fleet: string;
  name: string;
  device: string;
  /** The global version the update was trained from (= the round it belongs to). */
  round: number;
  /** Local samples it was trained on: its weight in the average. */
  samples: number;
  encoding: UpdateEncoding;
  tensors: UpdateTensorHeader[];
  /** L2 norm of the update before clipping. */
  norm: number;
  /** The norm it was clipped to (0: not clipped). */
  clipNorm: number;
  /** Standard deviation of the Gaussian noise added to every value (0: none). */
  noiseStd: number;
  /** The local training's metrics (accuracy, loss...), if any. */
  metrics?: Record<string, number>;
}

export interface DecodedUpdate {
  header: UpdateHeader;
  delta: Float32Array[];
}

export interface EncodeOptions {
  encoding: UpdateEncoding;
  /** Clip the update's L2 norm to this (0 or unset: no clipping). */
  clipNorm?: number;
  /** Gaussian noise of standard deviation noise x clipNorm (or noise alone without clipping). */
  noise?: number;
  /** Random numbers in [0, 1) for stochastic rounding and noise; default crypto-strength. */
  random?: () => number;
}

export class FederatedTopics {
  readonly base: string;
  constructor(
    readonly topics: FleetTopics,
    readonly name: string,
  ) {
    this.base = `${topics.base}/federated/${name}`;
  }
  update(device: string): string {
    return `${this.base}/updates/${device}`;
  }
  updates(): string {
    return `${this.base}/updates/+`;
  }
  /** Retained: the last closed round's summary. */
  round(): string {
    return `${this.base}/round`;
  }
}

const sizeOf = (shape: number[]): number => shape.reduce((a, b) => a * b, 1);

interface LayersModelJson {
  modelTopology?: unknown;
  weightsManifest?: { paths: string[]; weights: { name: string; shape: number[]; dtype?: string }[] }[];
  [key: string]: unknown;
}

/** Reads the float32 weights of a stored TF.js layers model (refuses quantized weights). */
export async function readStoredWeights(stored: StoredModel): Promise<ModelWeights> {
  if (stored.meta.format !== 'tfjs-layers') {
    throw new FleetError(
      'fleet-update-invalid',
      `federated learning needs a TF.js layers model; ${stored.meta.name} v${stored.meta.version} is ${stored.meta.format}`,
      { name: stored.meta.name },
    );
  }
  const json = JSON.parse(
    await fs.readFile(path.join(stored.dir, stored.meta.entry), 'utf8'),
  ) as LayersModelJson;
  const specs: WeightSpec[] = [];
  const values: Float32Array[] = [];
  for (const group of json.weightsManifest ?? []) {
    const data = Buffer.concat(
      await Promise.all(
        group.paths.map((p) => fs.readFile(path.join(stored.dir, path.dirname(stored.meta.entry), p))),
      ),
    );
    let offset = 0;
    for (const w of group.weights) {
      if ((w.dtype ?? 'float32') !== 'float32' || 'quantization' in w) {
        throw new FleetError(
          'fleet-update-invalid',
          `federated learning needs float32 weights; ${w.name} of ${stored.meta.name} v${stored.meta.version} is ${w.dtype ?? 'quantized'}`,
          { name: stored.meta.name },
        );
      }
      const n = sizeOf(w.shape);
      const copy = new Float32Array(n);
      Buffer.from(copy.buffer).set(data.subarray(offset, offset + n * 4));
      offset += n * 4;
      specs.push({ name: w.name, shape: [...w.shape] });
      values.push(copy);
    }
  }
  return { specs, values };
}

/**
 * Writes `weights` as a TF.js layers model into `dir`: the topology of `templateJson` (the
 * model.json of a model with the same weights) and one weights.bin.
 */
export async function writeLayersModel(
  dir: string,
  templateJson: string,
  weights: ModelWeights,
): Promise<void> {
  const json = JSON.parse(templateJson) as LayersModelJson;
  json.weightsManifest = [
    {
      paths: ['weights.bin'],
      weights: weights.specs.map((s) => ({ name: s.name, shape: s.shape, dtype: 'float32' })),
    },
  ];
  const bin = Buffer.concat(weights.values.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)));
  await fs.writeFile(path.join(dir, 'model.json'), JSON.stringify(json));
  await fs.writeFile(path.join(dir, 'weights.bin'), bin);
}

/** Throws unless `b` has the tensors (count and shapes) of `a`. */
export function checkSameShapes(a: WeightSpec[], b: { shape: number[] }[], what: string): void {
  if (a.length !== b.length) {
    throw new FleetError(
      'fleet-update-invalid',
      `${what} holds ${b.length} tensors, the global model ${a.length}`,
    );
  }
  a.forEach((spec, i) => {
    const shape = b[i].shape;
    if (
      !Array.isArray(shape) ||
      shape.length !== spec.shape.length ||
      shape.some((d, j) => d !== spec.shape[j])
    ) {
      throw new FleetError(
        'fleet-update-invalid',
        `${what}: tensor ${i} (${spec.name}) has shape [${String(shape)}], the global model [${spec.shape.join(', ')}]`,
      );
    }
  });
}

/** The update `local - global`, tensor by tensor. */
export function weightDelta(local: ModelWeights, global: ModelWeights): Float32Array[] {
  checkSameShapes(global.specs, local.specs, 'the trained model');
  return global.values.map((g, i) => {
    const l = local.values[i];
    const d = new Float32Array(g.length);
    for (let j = 0; j < g.length; j++) d[j] = l[j] - g[j];
    return d;
  });
}

export function l2Norm(tensors: Float32Array[]): number {
  let sum = 0;
  for (const t of tensors) for (let i = 0; i < t.length; i++) sum += t[i] * t[i];
  return Math.sqrt(sum);
}

// ---- float16 (IEEE 754 binary16), round to nearest even ----

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

export function toHalf(value: number): number {
  f32[0] = value;
  const x = u32[0];
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0); // Inf / NaN
  let e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00; // overflow
  if (e <= 0) {
    if (e < -10) return sign; // underflow to zero
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let m = mant >>> shift;
    const rest = mant & ((1 << shift) - 1);
    if (rest > half || (rest === half && m & 1)) m++;
    return sign | m;
  }
  let m = mant >>> 13;
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && m & 1)) {
    m++;
    if (m === 0x400) {
      m = 0;
      e++;
      if (e >= 0x1f) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | m;
}

export function fromHalf(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

const BYTES: Record<UpdateEncoding, number> = { float32: 4, float16: 2, uint8: 1 };

/** Uniform [0, 1) from the system's secure random source, read in blocks. */
function cryptoRandom(): () => number {
  let block = new Uint32Array(0);
  let at = 0;
  return () => {
    if (at >= block.length) {
      const bytes = randomBytes(16384);
      block = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
      at = 0;
    }
    return block[at++] / 2 ** 32;
  };
}

/** Standard normal numbers from uniform ones (Box-Muller). */
function normal(random: () => number): () => number {
  let spare: number | undefined;
  return () => {
    if (spare !== undefined) {
      const s = spare;
      spare = undefined;
      return s;
    }
    const u = Math.max(random(), 1e-300);
    const v = random();
    const r = Math.sqrt(-2 * Math.log(u));
    spare = r * Math.sin(2 * Math.PI * v);
    return r * Math.cos(2 * Math.PI * v);
  };
}

/**
 * Clips (optional), adds noise (optional) and encodes an update. uint8 uses one affine range
 * per tensor with stochastic rounding (unbiased: a value lands on one of its two neighbouring
 * codes with the odds that keep its mean), so a decoded value is within one step of the sent one.
 */
export function encodeUpdate(
  meta: Omit<UpdateHeader, 'format' | 'encoding' | 'tensors' | 'norm' | 'clipNorm' | 'noiseStd'>,
  specs: WeightSpec[],
  delta: Float32Array[],
  options: EncodeOptions,
): { payload: Buffer; header: UpdateHeader } {
  const { encoding } = options;
  if (!UPDATE_ENCODINGS.includes(encoding)) {
    throw new FleetError(
      'setting-invalid',
      `update encoding "${String(encoding)}": use uint8, float16 or float32`,
    );
  }
  const random = options.random ?? cryptoRandom();
  const norm = l2Norm(delta);
  const clipNorm = options.clipNorm && options.clipNorm > 0 ? options.clipNorm : 0;
  const noise = options.noise && options.noise > 0 ? options.noise : 0;
  const noiseStd = noise * (clipNorm || 1);
  let values = delta;
  if (clipNorm > 0 || noiseStd > 0) {
    const scale = clipNorm > 0 && norm > clipNorm ? clipNorm / norm : 1;
    const gauss = normal(random);
    values = delta.map((t) => {
      const out = new Float32Array(t.length);
      for (let i = 0; i < t.length; i++) out[i] = t[i] * scale + (noiseStd > 0 ? noiseStd * gauss() : 0);
      return out;
    });
  }
  const tensors: UpdateTensorHeader[] = [];
  const bodies: Buffer[] = [];
  values.forEach((t, k) => {
    const spec = specs[k];
    if (encoding === 'float32') {
      bodies.push(Buffer.from(t.buffer, t.byteOffset, t.byteLength));
      tensors.push({ name: spec.name, shape: spec.shape });
    } else if (encoding === 'float16') {
      const out = new Uint16Array(t.length);
      for (let i = 0; i < t.length; i++) out[i] = toHalf(t[i]);
      bodies.push(Buffer.from(out.buffer));
      tensors.push({ name: spec.name, shape: spec.shape });
    } else {
      let min = Infinity;
      let max = -Infinity;
      for (let i = 0; i < t.length; i++) {
        if (t[i] < min) min = t[i];
        if (t[i] > max) max = t[i];
      }
      if (t.length === 0) min = max = 0;
      const step = max > min ? (max - min) / 255 : 0;
      const out = new Uint8Array(t.length);
      if (step > 0) {
        for (let i = 0; i < t.length; i++) {
          const exact = (t[i] - min) / step;
          const low = Math.floor(exact);
          out[i] = Math.min(255, low + (random() < exact - low ? 1 : 0));
        }
      }
      bodies.push(Buffer.from(out.buffer));
      tensors.push({ name: spec.name, shape: spec.shape, min, step });
    }
  });
  const header: UpdateHeader = {
    format: UPDATE_FORMAT,
    ...meta,
    encoding,
    tensors,
    norm,
    clipNorm,
    noiseStd,
  };
  const headerBytes = Buffer.from(JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(headerBytes.length);
  return { payload: Buffer.concat([length, headerBytes, ...bodies]), header };
}

const invalid = (message: string, params?: { device: string; round: number }): FleetError =>
  new FleetError('fleet-update-invalid', message, params);

/** Reads an update's header only (no checks beyond its framing). */
export function readUpdateHeader(payload: Buffer): { header: UpdateHeader; bodyOffset: number } {
  if (payload.length < 4) throw invalid('the update is shorter than its header length');
  const length = payload.readUInt32LE(0);
  if (length < 2 || 4 + length > payload.length) throw invalid('the update header length is out of range');
  let header: UpdateHeader;
  try {
    header = JSON.parse(payload.subarray(4, 4 + length).toString('utf8')) as UpdateHeader;
  } catch {
    throw invalid('the update header is not JSON');
  }
  if (!header || typeof header !== 'object' || header.format !== UPDATE_FORMAT) {
    throw invalid(`the update is not an ${UPDATE_FORMAT} message`);
  }
  return { header, bodyOffset: 4 + length };
}

/**
 * Decodes and checks an update against the global model's tensors: its framing, sample count,
 * encoding, every tensor shape, the body length, and that every value is finite. Throws a
 * FleetError 'fleet-update-invalid' naming what is wrong.
 */
export function decodeUpdate(payload: Buffer, specs: WeightSpec[]): DecodedUpdate {
  const { header, bodyOffset } = readUpdateHeader(payload);
  const who = `update from ${String(header.device)} for round ${String(header.round)}`;
  const params = { device: String(header.device), round: Number(header.round) };
  if (!Number.isSafeInteger(header.samples) || header.samples < 1) {
    throw invalid(
      `${who}: the sample count ${JSON.stringify(header.samples)} is not a whole number >= 1`,
      params,
    );
  }
  if (!UPDATE_ENCODINGS.includes(header.encoding)) {
    throw invalid(`${who}: unknown encoding ${JSON.stringify(header.encoding)}`, params);
  }
  if (!Array.isArray(header.tensors)) throw invalid(`${who}: no tensor list`, params);
  checkSameShapes(specs, header.tensors, who);
  const bytes = BYTES[header.encoding];
  const expected = specs.reduce((sum, s) => sum + sizeOf(s.shape) * bytes, 0);
  if (payload.length - bodyOffset !== expected) {
    throw invalid(
      `${who}: the body is ${payload.length - bodyOffset} bytes, the shapes need ${expected}`,
      params,
    );
  }
  let offset = bodyOffset;
  const delta = specs.map((spec, k) => {
    const n = sizeOf(spec.shape);
    const out = new Float32Array(n);
    const t = header.tensors[k];
    if (header.encoding === 'float32') {
      Buffer.from(out.buffer).set(payload.subarray(offset, offset + n * 4));
    } else if (header.encoding === 'float16') {
      for (let i = 0; i < n; i++) out[i] = fromHalf(payload.readUInt16LE(offset + 2 * i));
    } else {
      const { min, step } = t;
      if (
        typeof min !== 'number' ||
        typeof step !== 'number' ||
        !Number.isFinite(min) ||
        !Number.isFinite(step) ||
        step < 0
      ) {
        throw invalid(`${who}: tensor ${k} (${spec.name}) has no finite uint8 range`, params);
      }
      for (let i = 0; i < n; i++) out[i] = min + payload[offset + i] * step;
    }
    offset += n * bytes;
    for (let i = 0; i < n; i++) {
      if (!Number.isFinite(out[i])) {
        throw invalid(`${who}: tensor ${k} (${spec.name}) holds ${out[i]} at index ${i}, refused`, params);
      }
    }
    return out;
  });
  return { header, delta };
}

/**
 * The sample-weighted mean of updates added to the global weights, computed in float64 and
 * rounded once to float32: global + sum(n_k delta_k) / sum(n_k).
 */
export class WeightedSum {
  readonly sums: Float64Array[];
  samples = 0;
  constructor(readonly specs: WeightSpec[]) {
    this.sums = specs.map((s) => new Float64Array(sizeOf(s.shape)));
  }
  add(delta: Float32Array[], samples: number): void {
    this.sums.forEach((sum, k) => {
      const d = delta[k];
      for (let i = 0; i < sum.length; i++) sum[i] += samples * d[i];
    });
    this.samples += samples;
  }
  /** The sample-weighted mean update, in float64. */
  mean(): Float64Array[] {
    if (this.samples <= 0) throw new Error('no update to average');
    return this.sums.map((sum) => sum.map((v) => v / this.samples));
  }
  apply(global: ModelWeights): ModelWeights {
    if (this.samples <= 0) throw new Error('no update to average');
    const values = global.values.map((g, k) => {
      const sum = this.sums[k];
      const out = new Float32Array(g.length);
      for (let i = 0; i < g.length; i++) out[i] = g[i] + sum[i] / this.samples;
      return out;
    });
    return { specs: global.specs, values };
  }
}

/** The weights of trained model artifacts (weight specs and their concatenated float32 data). */
export function artifactWeights(
  weightSpecs: { name: string; shape: number[]; dtype?: string }[],
  weightData: ArrayBuffer,
): ModelWeights {
  const specs: WeightSpec[] = [];
  const values: Float32Array[] = [];
  let offset = 0;
  for (const w of weightSpecs) {
    if ((w.dtype ?? 'float32') !== 'float32') {
      throw new FleetError('fleet-update-invalid', `weight ${w.name} is ${w.dtype}, not float32`);
    }
    const n = sizeOf(w.shape);
    values.push(new Float32Array(weightData.slice(offset, offset + n * 4)));
    specs.push({ name: w.name, shape: [...w.shape] });
    offset += n * 4;
  }
  return { specs, values };
}
