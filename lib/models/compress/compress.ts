/**
 * Compresses a stored model into a new version: magnitude pruning and/or quantization
 * (uint8 / uint16 / float16 in the TF.js converter's format, or int8 for ONNX Runtime),
 * evaluated against the original and saved atomically with a report in meta.json.
 *
 * The heavy part (decoding, pruning, quantizing, evaluating) runs in a worker thread by
 * default so a Node-RED runtime keeps handling messages meanwhile.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { WorkerClient } from '../../util/worker-rpc';
import type { io } from '@tensorflow/tfjs-core';
import type * as tfl from '@tensorflow/tfjs-layers';
import { exportLayersModelToOnnx } from '../convert/onnx-export';
import { quantizeOnnxInt8 } from './onnx-quantize';
import {
  checkSparsity,
  measureSparsity,
  pruneWeights,
  PRUNE_SCOPES,
  type PruneScope,
  type PruneStats,
} from './prune';
import {
  decodeWeightData,
  encodeWeights,
  isWeightQuantization,
  quantizeArtifacts,
  type ManifestEntry,
  type QuantizationPlan,
  type WeightQuantization,
  type AffineScheme,
  type SchemeChoice,
} from './quantize';
import {
  evaluateCompression,
  parseCalibration,
  randomProbe,
  weightFilesBytes,
  type CompressionReport,
  type Evaluation,
} from './compress-report';
import { readModelFiles } from '../store/model-files';
import { sizeOf } from '../../preprocess/shape';
import { type ModelRunner } from '../runtime/runner';
import { ModelStore, type ModelFormat, type ModelInfo, type StoredModel } from '../store/store';
import { createRunner } from '../runtime/select';
import { fileSaveHandler, tf, type TfBackendName } from '../runtime/tfjs';
import { TfjsRunner } from '../runtime/tfjs-runner';

export type CompressQuantization = WeightQuantization | 'int8';
export const COMPRESS_QUANTIZATIONS: readonly CompressQuantization[] = ['uint8', 'uint16', 'float16', 'int8'];

export interface CompressOptions {
  /** Target weight format; omitted or 'none' keeps the source's own weight format. */
  quantize?: CompressQuantization | 'none';
  /** Target sparsity of the kernels, 0 <= prune < 1; 0 or omitted: no pruning. */
  prune?: number;
  pruneScope?: PruneScope;
  /** `{x, y?}`: samples (and labels) to compare outputs and accuracy on. */
  calibration?: unknown;
  /** Random probe samples when no calibration data is given (default 32). */
  probeSamples?: number;
  /** Batch-1 predictions timed per model for the latency median (default 5). */
  latencyRuns?: number;
  /**
   * uint8/uint16 ranges: 'best' (default) takes per tensor whichever of the converter's, a plain
   * and a per-channel range decodes closest to the weights; 'converter' keeps the official
   * converter's format for every tensor.
   */
  scheme?: SchemeChoice;
}

export interface CheckedCompressOptions {
  quantize?: CompressQuantization;
  prune: number;
  pruneScope: PruneScope;
  calibration?: unknown;
  probeSamples: number;
  latencyRuns: number;
  scheme: SchemeChoice;
}

function checkScheme(scheme: unknown): SchemeChoice {
  if (scheme === undefined || scheme === null || scheme === '') return 'best';
  if (scheme === 'best' || scheme === 'converter') return scheme;
  throw new Error(`scheme must be best or converter, got "${String(scheme)}"`);
}

/** Validates options; throws a clear error for an unknown dtype, a bad sparsity or nothing to do. */
function checkCompressOptions(options: CompressOptions): CheckedCompressOptions {
  const quantize =
    options.quantize === 'none' || options.quantize === undefined ? undefined : options.quantize;
  if (quantize !== undefined && !(COMPRESS_QUANTIZATIONS as readonly unknown[]).includes(quantize)) {
    throw new Error(
      `unknown quantization "${String(quantize)}": use one of ${COMPRESS_QUANTIZATIONS.join(', ')} or none`,
    );
  }
  const prune = options.prune === undefined || options.prune === null ? 0 : checkSparsity(options.prune);
  const pruneScope = options.pruneScope ?? 'global';
  if (!(PRUNE_SCOPES as readonly string[]).includes(pruneScope)) {
    throw new Error(`prune scope must be one of ${PRUNE_SCOPES.join(', ')}, got "${String(pruneScope)}"`);
  }
  if (quantize === undefined && prune === 0) {
    throw new Error('nothing to do: give quantize (uint8, uint16, float16, int8) and/or prune (0..1)');
  }
  const whole = (value: unknown, fallback: number, max: number): number => {
    const n = Number(value ?? fallback);
    return Number.isInteger(n) && n >= 1 && n <= max ? n : fallback;
  };
  return {
    quantize,
    prune,
    pruneScope,
    calibration: options.calibration,
    probeSamples: whole(options.probeSamples, 32, 10000),
    latencyRuns: whole(options.latencyRuns, 5, 1000),
    scheme: checkScheme(options.scheme),
  };
}

/** One compression, described in plain data so it can be posted to a worker thread. */
export interface CompressJob {
  format: ModelFormat;
  /** Absolute path of model.json / model.onnx. */
  entryPath: string;
  options: CheckedCompressOptions;
}

interface SparsitySummary {
  kernels: number;
  overall: number;
}

export interface CompressOutcome {
  format: 'tfjs-layers' | 'onnx';
  /** Result of a TF.js layers compression: topology plus converter-format weights. */
  artifacts?: io.ModelArtifacts;
  /** Result of an int8 compression. */
  onnx?: Uint8Array;
  parameters: { total: number; prunable: number };
  /** Zeros among kernels / all float weights; null where not measurable (ONNX sources). */
  sparsityBefore: SparsitySummary | null;
  sparsityAfter: SparsitySummary | null;
  pruning?: PruneStats;
  /** Weight format of each float32 weight in the result. */
  weightFormat: string;
  /** uint8/uint16 weights by the range scheme each was quantized with. */
  schemes?: Partial<Record<AffineScheme, string[]>>;
  evaluation: Evaluation;
}

function summary(stats: { sparsity: number; overallSparsity: number }): SparsitySummary {
  return { kernels: stats.sparsity, overall: stats.overallSparsity };
}

/** Runs one compression in this thread (see runCompressionJobInWorker for the usual route). */
export async function runCompressionJob(job: CompressJob): Promise<CompressOutcome> {
  const { options } = job;
  if (job.format === 'onnx') return compressOnnx(job);
  if (job.format !== 'tfjs-layers') throw new Error(`models of format ${job.format} cannot be compressed`);
  // Read as every model is loaded: Keras 3 / Keras 2 topologies normalised for TF.js, weights
  // dequantized (`quantized` remembers each weight's stored format).
  const files = await readModelFiles(job.entryPath, {
    root: path.dirname(job.entryPath),
    format: 'tfjs-layers',
  });
  if (files.format !== 'tfjs-layers')
    throw new Error(`models of format ${files.format} cannot be compressed`);
  const source = files.artifacts;
  const weights = decodeWeightData((source.weightSpecs ?? []) as ManifestEntry[], source.weightData);
  const before = measureSparsity(weights);

  let pruned = weights;
  let pruning: PruneStats | undefined;
  if (options.prune > 0) {
    const result = pruneWeights(weights, { sparsity: options.prune, scope: options.pruneScope });
    pruned = result.weights;
    pruning = result.stats;
  }

  // Without a new weight format, each weight keeps the format it was stored in.
  const storedFormat = (name: string): WeightQuantization | undefined => {
    const stored = files.quantized[name];
    return isWeightQuantization(stored) ? stored : undefined;
  };
  const plan: QuantizationPlan = isWeightQuantization(options.quantize)
    ? options.quantize
    : options.quantize === 'int8'
      ? undefined
      : (w) => storedFormat(w.name);
  // Weights that keep their stored format keep the converter's ranges too.
  const encoded = encodeWeights(
    pruned,
    plan,
    isWeightQuantization(options.quantize) ? options.scheme : 'converter',
  );
  const compressed: io.ModelArtifacts = {
    ...source,
    weightSpecs: encoded.weightSpecs as io.WeightsManifestEntry[],
    weightData: encoded.weightData,
  };
  // Sparsity as a loader sees it: measured on the decoded result, not on the intent.
  const after = measureSparsity(decodeWeightData(encoded.weightSpecs, encoded.weightData));

  const runners: ModelRunner[] = [];
  try {
    const original = await layersRunner(source);
    runners.push(original);
    let onnx: Uint8Array | undefined;
    let result: ModelRunner;
    if (options.quantize === 'int8') {
      const prunedModel = await layersRunner(compressed);
      runners.push(prunedModel);
      onnx = quantizeOnnxInt8(exportLayersModelToOnnx(prunedModel.layersModel as tfl.LayersModel)).model;
      result = await onnxRunner(onnx);
    } else {
      result = await layersRunner(compressed);
    }
    runners.push(result);
    const evaluation = await evaluateCompression(
      original,
      result,
      probeFor(options, original),
      options.latencyRuns,
    );
    const outcome: CompressOutcome = {
      format: onnx ? 'onnx' : 'tfjs-layers',
      parameters: { total: after.totalParameters, prunable: after.prunableParameters },
      sparsityBefore: summary(before),
      sparsityAfter: summary(after),
      pruning,
      weightFormat: options.quantize ?? describeFormats(encoded.weightSpecs),
      evaluation,
    };
    if (encoded.schemes && Object.keys(encoded.schemes).length > 0) outcome.schemes = encoded.schemes;
    if (onnx) outcome.onnx = onnx;
    else outcome.artifacts = compressed;
    return outcome;
  } finally {
    for (const runner of runners) await runner.dispose();
  }
}

/**
 * A layers model on TF.js, on the backend already active (TF.js' own weight decoder reads the
 * converter-format quantized weights, as every TF.js user will load them).
 */
function layersRunner(artifacts: io.ModelArtifacts): Promise<TfjsRunner> {
  // Per-channel ranges are this package's extension: decoded here as the model store's reader does.
  const perChannel = (artifacts.weightSpecs as ManifestEntry[] | undefined)?.some((spec) =>
    Array.isArray(spec.quantization?.min),
  );
  const plain = perChannel ? quantizeArtifacts(artifacts, undefined) : artifacts;
  return TfjsRunner.fromArtifacts('tfjs-layers', plain, { backends: [tf.getBackend() as TfBackendName] });
}

/** An ONNX model on ONNX Runtime (node where installed, else web). */
async function onnxRunner(onnx: Uint8Array): Promise<ModelRunner> {
  const files = { format: 'onnx' as const, onnx, entryPath: 'model.onnx', bytes: onnx.byteLength, notes: [] };
  return (await createRunner(files, { runtime: 'onnxruntime' })).runner;
}

function describeFormats(specs: readonly ManifestEntry[]): string {
  const formats = new Set(
    specs.filter((s) => s.dtype === 'float32').map((s) => s.quantization?.dtype ?? 'float32'),
  );
  return [...formats].sort().join('+') || 'float32';
}

function probeFor(options: CheckedCompressOptions, runner: ModelRunner) {
  return options.calibration !== undefined && options.calibration !== null
    ? parseCalibration(options.calibration, sizeOf(runner.inputShape))
    : randomProbe(runner.inputShape, options.probeSamples);
}

async function compressOnnx(job: CompressJob): Promise<CompressOutcome> {
  const { options } = job;
  if (options.prune > 0)
    throw new Error('pruning is available for TF.js layers models only, this model is ONNX');
  if (options.quantize !== 'int8') {
    throw new Error(`ONNX models can be quantized to int8 only, not ${options.quantize}`);
  }
  const bytes = new Uint8Array(await fs.readFile(job.entryPath));
  const quantized = quantizeOnnxInt8(bytes).model;
  const runners: ModelRunner[] = [];
  try {
    const original = await onnxRunner(bytes);
    runners.push(original);
    const result = await onnxRunner(quantized);
    runners.push(result);
    const evaluation = await evaluateCompression(
      original,
      result,
      probeFor(options, original),
      options.latencyRuns,
    );
    return {
      format: 'onnx',
      onnx: quantized,
      parameters: onnxParameterCount(quantized),
      sparsityBefore: null,
      sparsityAfter: null,
      weightFormat: 'int8',
      evaluation,
    };
  } finally {
    for (const runner of runners) await runner.dispose();
  }
}

function onnxParameterCount(bytes: Uint8Array): { total: number; prunable: number } {
  const { onnx } = require('../onnx-proto') as typeof import('../onnx-proto');
  const model = onnx.ModelProto.decode(bytes);
  let total = 0;
  for (const init of model.graph?.initializer ?? []) {
    total += (init.dims ?? []).reduce<number>((n, d) => n * Number(d), 1);
  }
  return { total, prunable: 0 };
}

/** A compression running in a worker thread; `cancel` stops it (the result then rejects). */
export interface CompressionTask {
  result: Promise<CompressOutcome>;
  cancel(): Promise<void>;
}

/** Runs `job` in a worker thread (dist/lib/models/compress/compress-worker.js). */
function runCompressionJobInWorker(job: CompressJob): CompressionTask {
  const worker = new WorkerClient(path.join(__dirname, 'compress-worker.js'), {
    label: 'compression worker',
  });
  const result = worker.request<CompressOutcome>('compress', job);
  void result.then(
    () => worker.terminate(),
    () => worker.terminate(),
  );
  return { result, cancel: () => worker.terminate() };
}

export interface CompressStoredRequest extends CompressOptions {
  /** Model name in the store. */
  name: string;
  /** Source version; the newest by default. */
  version?: number;
  /** Name to save the result under; the source name by default (a new version of it). */
  saveAs?: string;
}

export interface CompressStoredResult {
  stored: StoredModel;
  report: CompressionReport;
}

export interface CompressRunOptions {
  /** Run the heavy work in a worker thread (default true). */
  worker?: boolean;
  /** Aborting stops the worker; nothing is saved. */
  signal?: AbortSignal;
}

const STORE_KEYS = new Set(['name', 'version', 'files', 'created']);

/**
 * Compresses `request.name` (newest or given version) from the store and saves the result as a
 * new version (atomically: a failure leaves the versions as they were). The report is stored
 * in meta.json as `compression` and returned with the saved version.
 */
export async function compressStoredModel(
  store: ModelStore,
  request: CompressStoredRequest,
  run: CompressRunOptions = {},
): Promise<CompressStoredResult> {
  const options = checkCompressOptions(request);
  if (typeof request.name !== 'string') throw new Error('give the name of a model in the store');
  ModelStore.checkName(request.name);
  const saveAs = request.saveAs ?? request.name;
  ModelStore.checkName(saveAs);
  const source = await store.get(request.name, request.version);
  if (!source) {
    const which = request.version === undefined ? '' : ` version ${request.version}`;
    throw new Error(`model "${request.name}"${which} is not in the model store`);
  }
  const entryPath = path.join(source.dir, source.meta.entry);
  const sizeBefore =
    source.meta.format === 'tfjs-layers'
      ? await weightFilesBytes(entryPath)
      : (await fs.stat(entryPath)).size;

  // Without calibration data, a sample saved with the model is the representative probe.
  if (options.calibration === undefined && Array.isArray(source.meta.sample)) {
    options.calibration = { x: source.meta.sample };
  }
  const job: CompressJob = { format: source.meta.format, entryPath, options };
  const outcome = await runJob(job, run);

  const report: CompressionReport = {
    source: { name: source.meta.name, version: source.meta.version, format: source.meta.format },
    method: {},
    sizeBytes: { before: sizeBefore, after: 0, ratio: 0 },
    parameters: outcome.parameters,
    sparsity: {
      kernels: outcome.sparsityAfter?.kernels ?? null,
      overall: outcome.sparsityAfter?.overall ?? null,
      before: {
        kernels: outcome.sparsityBefore?.kernels ?? null,
        overall: outcome.sparsityBefore?.overall ?? null,
      },
    },
    maxAbsDiff: outcome.evaluation.maxAbsDiff,
    meanAbsDiff: outcome.evaluation.meanAbsDiff,
    probe: outcome.evaluation.probe,
    latencyMs: outcome.evaluation.latencyMs,
    created: new Date().toISOString(),
  };
  if (options.quantize) report.method.quantize = options.quantize;
  if (outcome.pruning) {
    report.method.prune = { target: outcome.pruning.target, scope: outcome.pruning.scope };
    report.sparsity.target = outcome.pruning.target;
  }
  if (outcome.evaluation.accuracy) report.accuracy = outcome.evaluation.accuracy;
  if (outcome.evaluation.topClassAgreement !== undefined)
    report.topClassAgreement = outcome.evaluation.topClassAgreement;
  if (outcome.evaluation.meanAbsError) report.meanAbsError = outcome.evaluation.meanAbsError;

  const inherited = Object.fromEntries(Object.entries(source.meta).filter(([key]) => !STORE_KEYS.has(key)));
  const meta: ModelInfo = {
    ...inherited,
    format: outcome.format,
    entry: outcome.format === 'onnx' ? 'model.onnx' : 'model.json',
    quantization: quantizationMeta(outcome),
    pruning: outcome.pruning
      ? {
          method: 'magnitude',
          target: outcome.pruning.target,
          scope: outcome.pruning.scope,
          sparsity: outcome.pruning.sparsity,
          overallSparsity: outcome.pruning.overallSparsity,
          layers: outcome.pruning.layers,
        }
      : inherited.pruning,
    derivedFrom: { name: source.meta.name, version: source.meta.version },
    compression: report,
  };
  const stored = await store.save(saveAs, meta, async (dir) => {
    let after: number;
    if (outcome.format === 'onnx') {
      const file = path.join(dir, 'model.onnx');
      await fs.writeFile(file, outcome.onnx as Uint8Array);
      after = (await fs.stat(file)).size;
    } else {
      const { weightSpecs, weightData, ...topology } = outcome.artifacts as io.ModelArtifacts;
      const handler = fileSaveHandler(dir, {
        weightSpecs: weightSpecs ?? [],
        weightData: weightData ?? new ArrayBuffer(0),
      });
      await (handler.save as NonNullable<typeof handler.save>)(topology);
      after = await weightFilesBytes(path.join(dir, 'model.json'));
    }
    // Sizes measured on the written files; meta.json is written after this callback returns.
    report.sizeBytes.after = after;
    report.sizeBytes.ratio = after > 0 ? sizeBefore / after : 0;
  });
  return {
    stored,
    report: {
      ...report,
      result: { name: stored.meta.name, version: stored.meta.version, format: outcome.format },
    },
  };
}

function quantizationMeta(outcome: CompressOutcome): Record<string, unknown> | undefined {
  if (outcome.format === 'onnx') return { dtype: 'int8', runtime: 'onnxruntime' };
  if (outcome.weightFormat === 'float32') return undefined;
  if (outcome.weightFormat === 'float16' || !outcome.schemes) {
    const scheme =
      outcome.weightFormat === 'float16' ? 'float16' : 'affine per tensor, zero exactly representable';
    return { dtype: outcome.weightFormat, format: 'tfjs-converter', scheme };
  }
  const counts = Object.fromEntries(Object.entries(outcome.schemes).map(([k, names]) => [k, names.length]));
  // Per-channel ranges are this package's extension of the converter's format.
  const format = outcome.schemes['per-channel'] ? 'tfjs-converter+per-channel' : 'tfjs-converter';
  return { dtype: outcome.weightFormat, format, scheme: 'best measured per tensor', schemes: counts };
}

async function runJob(job: CompressJob, run: CompressRunOptions): Promise<CompressOutcome> {
  if (run.signal?.aborted) throw new Error('compression cancelled');
  if (run.worker === false) return runCompressionJob(job);
  const task = runCompressionJobInWorker(job);
  const onAbort = (): void => void task.cancel();
  run.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    return await task.result;
  } catch (err) {
    if (run.signal?.aborted) throw new Error('compression cancelled');
    throw err;
  } finally {
    run.signal?.removeEventListener('abort', onAbort);
  }
}
