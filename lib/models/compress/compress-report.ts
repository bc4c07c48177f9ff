/**
 * What compression cost and saved: file sizes, parameters, sparsity, how far the outputs moved
 * on a probe or calibration set, accuracy on labelled data, and latency.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { flattenNumeric, InputError } from '../../preprocess/numeric-input';
import { sizeOf } from '../../preprocess/shape';
import { type ModelRunner, type RuntimeName } from '../runtime/runner';

export interface CompressionReport {
  source: { name: string; version: number; format: string };
  /** Set once the compressed model is saved. */
  result?: { name: string; version: number; format: string };
  method: {
    quantize?: string;
    prune?: { target: number; scope: string };
  };
  /** Bytes on disk of the weight files (shards; the .onnx file for ONNX models). */
  sizeBytes: { before: number; after: number; ratio: number };
  parameters: { total: number; prunable: number };
  /** Fraction of zeros among kernels / all float weights; null where not measured (ONNX sources). */
  sparsity: {
    kernels: number | null;
    overall: number | null;
    target?: number;
    before: { kernels: number | null; overall: number | null };
  };
  /** Largest |before - after| over every output value of the probe set. */
  maxAbsDiff: number;
  meanAbsDiff: number;
  probe: { samples: number; source: 'calibration' | 'random' };
  /** Classification accuracy (labelled calibration data with class outputs). */
  accuracy?: { before: number; after: number };
  /** Fraction of probe samples whose top class is the same before and after (class outputs). */
  topClassAgreement?: number;
  /** Regression error (labelled calibration data with regression outputs). */
  meanAbsError?: { before: number; after: number };
  /** Median batch-1 latency. */
  latencyMs: {
    before: number;
    after: number;
    runs: number;
    runtime: { before: RuntimeName; after: RuntimeName };
  };
  created: string;
}

/** Samples laid out one after another, with optional labels (one row per sample). */
export interface ProbeSet {
  x: Float32Array;
  count: number;
  source: 'calibration' | 'random';
  y?: number[][];
}

export function median(values: readonly number[]): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

/** Sum of the sizes on disk of the weight shards listed in a TF.js model.json. */
export async function weightFilesBytes(modelJsonPath: string): Promise<number> {
  const modelJson = JSON.parse(await fs.readFile(modelJsonPath, 'utf8')) as {
    weightsManifest?: { paths: string[] }[];
  };
  const dir = path.dirname(modelJsonPath);
  let total = 0;
  for (const group of modelJson.weightsManifest ?? []) {
    for (const shard of group.paths) total += (await fs.stat(path.resolve(dir, shard))).size;
  }
  return total;
}

/**
 * Reads calibration data `{x, y?}`: x is an array of samples, each any numeric shape that
 * flattens to the model's input size (or one flat array of whole samples); y holds one label
 * per sample: a class index, a one-hot / target array, or a number.
 */
export function parseCalibration(calibration: unknown, inputSize: number): ProbeSet {
  if (calibration === null || typeof calibration !== 'object' || !('x' in calibration)) {
    throw new InputError('calibration must be an object {x, y?} with x an array of samples');
  }
  const { x, y } = calibration as { x: unknown; y?: unknown };
  if (!Array.isArray(x) && !ArrayBuffer.isView(x))
    throw new InputError('calibration.x must be an array of samples');
  let flat: Float32Array;
  const items = x as ArrayLike<unknown>;
  const allNumbers = Array.from(items).every((v) => typeof v === 'number');
  if (allNumbers && inputSize > 1) {
    flat = flattenNumeric(x);
  } else {
    const parts = Array.from(items, (sample, i) => {
      const values = flattenNumeric(sample);
      if (values.length !== inputSize) {
        throw new InputError(
          `calibration sample ${i} has ${values.length} values, the model takes ${inputSize}`,
        );
      }
      return values;
    });
    flat = new Float32Array(parts.length * inputSize);
    parts.forEach((p, i) => flat.set(p, i * inputSize));
  }
  if (flat.length === 0 || flat.length % inputSize !== 0) {
    throw new InputError(
      `calibration.x has ${flat.length} values, not a whole number of ${inputSize}-value samples`,
    );
  }
  for (let i = 0; i < flat.length; i++) {
    if (!Number.isFinite(flat[i]))
      throw new InputError('calibration.x contains a value that is not a finite number');
  }
  const count = flat.length / inputSize;
  const probe: ProbeSet = { x: flat, count, source: 'calibration' };
  if (y !== undefined && y !== null) {
    if (!Array.isArray(y) || y.length !== count) {
      throw new InputError(
        `calibration.y must hold one label per sample (${count}), got ${Array.isArray(y) ? y.length : typeof y}`,
      );
    }
    probe.y = y.map((label, i) => {
      const values = Array.from(flattenNumeric(label));
      if (values.length === 0 || !values.every(Number.isFinite))
        throw new InputError(`calibration.y[${i}] is not numeric`);
      return values;
    });
  }
  return probe;
}

/** Deterministic uniform [-1, 1) inputs (mulberry32), so repeated reports compare alike. */
export function randomProbe(inputShape: readonly number[], count: number, seed = 1): ProbeSet {
  const size = sizeOf(inputShape);
  const x = new Float32Array(size * count);
  let state = seed >>> 0;
  for (let i = 0; i < x.length; i++) {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    x[i] = (((t ^ (t >>> 14)) >>> 0) / 4294967296) * 2 - 1;
  }
  return { x, count, source: 'random' };
}

/** Runs the whole probe set through a runner in batches; returns outputs laid out per sample. */
async function predictAll(runner: ModelRunner, probe: ProbeSet, batchSize = 128): Promise<Float32Array> {
  const inSize = sizeOf(runner.inputShape);
  const outSize = sizeOf(runner.outputShape);
  const out = new Float32Array(probe.count * outSize);
  for (let start = 0; start < probe.count; start += batchSize) {
    const n = Math.min(batchSize, probe.count - start);
    const y = await runner.predict(probe.x.subarray(start * inSize, (start + n) * inSize), n);
    if (y.length !== n * outSize)
      throw new Error(`model returned ${y.length} values for ${n} samples of ${outSize}`);
    out.set(y, start * outSize);
  }
  return out;
}

function outputDifference(a: Float32Array, b: Float32Array): { maxAbsDiff: number; meanAbsDiff: number } {
  if (a.length !== b.length) throw new Error(`outputs differ in size: ${a.length} vs ${b.length}`);
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (d > max || Number.isNaN(d)) max = d;
    sum += d;
  }
  return { maxAbsDiff: max, meanAbsDiff: a.length ? sum / a.length : 0 };
}

function argmax(values: ArrayLike<number>, start: number, length: number): number {
  let best = 0;
  for (let i = 1; i < length; i++) if (values[start + i] > values[start + best]) best = i;
  return best;
}

/** Fraction of samples whose largest output is the same in `a` and `b`. */
export function topClassAgreement(a: Float32Array, b: Float32Array, classes: number): number {
  const count = a.length / classes;
  let same = 0;
  for (let i = 0; i < count; i++)
    if (argmax(a, i * classes, classes) === argmax(b, i * classes, classes)) same++;
  return count > 0 ? same / count : 1;
}

/**
 * Scores outputs against labels: accuracy for classification (several outputs with class
 * index or one-hot labels, or one sigmoid output with 0/1 labels), mean absolute error otherwise.
 */
export function scoreOutputs(
  outputs: Float32Array,
  outputSize: number,
  labels: number[][],
): { kind: 'accuracy' | 'meanAbsError'; value: number } {
  const count = labels.length;
  const isIndex =
    outputSize > 1 &&
    labels.every((l) => l.length === 1 && Number.isInteger(l[0]) && l[0] >= 0 && l[0] < outputSize);
  const isOneHot =
    outputSize > 1 &&
    labels.every((l) => l.length === outputSize && l.every((v) => v >= 0 && v <= 1)) &&
    labels.every((l) => Math.abs(l.reduce((a, b) => a + b, 0) - 1) < 1e-6);
  const isBinary = outputSize === 1 && labels.every((l) => l.length === 1 && (l[0] === 0 || l[0] === 1));
  if (isIndex || isOneHot || isBinary) {
    let correct = 0;
    for (let i = 0; i < count; i++) {
      const predicted = isBinary ? (outputs[i] > 0.5 ? 1 : 0) : argmax(outputs, i * outputSize, outputSize);
      const truth = isBinary || isIndex ? labels[i][0] : argmax(labels[i], 0, outputSize);
      if (predicted === truth) correct++;
    }
    return { kind: 'accuracy', value: correct / count };
  }
  if (!labels.every((l) => l.length === outputSize)) {
    throw new InputError(`calibration.y labels must be class indices or arrays of ${outputSize} values`);
  }
  let sum = 0;
  for (let i = 0; i < count; i++) {
    for (let j = 0; j < outputSize; j++) sum += Math.abs(outputs[i * outputSize + j] - labels[i][j]);
  }
  return { kind: 'meanAbsError', value: sum / (count * outputSize) };
}

/** Median wall time of `runs` batch-1 predictions (after one warm-up run). */
async function medianLatencyMs(runner: ModelRunner, sample: Float32Array, runs: number): Promise<number> {
  await runner.predict(sample, 1);
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await runner.predict(sample, 1);
    times.push(performance.now() - start);
  }
  return median(times);
}

export interface Evaluation {
  maxAbsDiff: number;
  meanAbsDiff: number;
  probe: CompressionReport['probe'];
  accuracy?: { before: number; after: number };
  meanAbsError?: { before: number; after: number };
  topClassAgreement?: number;
  latencyMs: CompressionReport['latencyMs'];
}

/** Compares two runners of the same model on a probe set. */
export async function evaluateCompression(
  before: ModelRunner,
  after: ModelRunner,
  probe: ProbeSet,
  latencyRuns = 5,
): Promise<Evaluation> {
  if (
    sizeOf(before.inputShape) !== sizeOf(after.inputShape) ||
    sizeOf(before.outputShape) !== sizeOf(after.outputShape)
  ) {
    throw new Error(
      `compressed model shapes [${after.inputShape}] -> [${after.outputShape}] differ from [${before.inputShape}] -> [${before.outputShape}]`,
    );
  }
  const a = await predictAll(before, probe);
  const b = await predictAll(after, probe);
  const evaluation: Evaluation = {
    ...outputDifference(a, b),
    probe: { samples: probe.count, source: probe.source },
    latencyMs: {
      before: NaN,
      after: NaN,
      runs: latencyRuns,
      runtime: { before: before.runtime, after: after.runtime },
    },
  };
  const classes = sizeOf(before.outputShape);
  if (classes > 1) evaluation.topClassAgreement = topClassAgreement(a, b, classes);
  if (probe.y) {
    const outSize = sizeOf(before.outputShape);
    const scoreBefore = scoreOutputs(a, outSize, probe.y);
    const scoreAfter = scoreOutputs(b, outSize, probe.y);
    evaluation[scoreBefore.kind] = { before: scoreBefore.value, after: scoreAfter.value };
  }
  const sample = probe.x.subarray(0, sizeOf(before.inputShape));
  evaluation.latencyMs.before = await medianLatencyMs(before, sample, latencyRuns);
  evaluation.latencyMs.after = await medianLatencyMs(after, sample, latencyRuns);
  return evaluation;
}
