import { promises as fs } from 'node:fs';
import path from 'node:path';
import type * as tf from '@tensorflow/tfjs-core';
import { ModelLoadError } from '../../errors';
import { normaliseLayersTopology, normaliseWeightName, type LayersLayout } from '../convert/keras-compat';
import { convertTfliteToOnnx, isTfliteBuffer, type TfliteConversion } from '../convert/tflite';
import { ModelStore, type ModelFormat, type ModelMeta } from './store';
import { decodeWeightsManifest, type ManifestGroup } from './weights';

/**
 * Reading a model from disk: format detection, paths confined to an allowed root, a size
 * limit, byte-exact weight checks and the Keras/TF.js normalisation. The result is ready for a
 * runtime: TF.js artifacts with plain (dequantized) weights, or ONNX bytes.
 */

export const DEFAULT_MAX_MODEL_BYTES = 200 * 1024 * 1024;

export interface ReadModelOptions {
  /** Every file read must lie inside this directory (symlinks resolved). */
  root: string;
  /** Limit on the bytes of all the model's files together. */
  maxBytes?: number;
  /** Expected format; 'auto' (default) detects it. */
  format?: ModelFormat | 'auto';
}

interface CommonFiles {
  /** The file a runtime opens: model.json or the .onnx file. */
  entryPath: string;
  /** Bytes read from disk. */
  bytes: number;
  /** meta.json when the model is a model-store version. */
  meta?: ModelMeta;
  notes: string[];
}

export interface TfjsModelFiles extends CommonFiles {
  format: 'tfjs-layers' | 'tfjs-graph';
  artifacts: tf.io.ModelArtifacts;
  layout?: LayersLayout;
  /** Weights that were stored quantized (name -> stored type). */
  quantized: Record<string, string>;
}

export interface OnnxModelFiles extends CommonFiles {
  format: 'onnx';
  onnx: Uint8Array;
  /** Set when the file was a TFLite model, converted to this ONNX graph on load. */
  tflite?: Omit<TfliteConversion, 'onnx'>;
}

export type ModelFiles = TfjsModelFiles | OnnxModelFiles;

function isNotFound(err: unknown): boolean {
  return (
    (err as NodeJS.ErrnoException)?.code === 'ENOENT' || (err as NodeJS.ErrnoException)?.code === 'ENOTDIR'
  );
}

/**
 * Resolves `target` (absolute, or relative to `root`) and checks that the real path lies inside
 * the real `root`, so neither `..` nor a symlink can reach other files.
 */
export async function confinedPath(root: string, target: string, what = 'model file'): Promise<string> {
  let realRoot: string;
  try {
    realRoot = await fs.realpath(root);
  } catch {
    throw new ModelLoadError(`the model directory ${root} does not exist`, 'model-not-found', {
      location: root,
    });
  }
  const wanted = path.resolve(realRoot, target);
  const inside = (p: string): boolean => {
    const rel = path.relative(realRoot, p);
    return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
  };
  if (!inside(wanted)) throw new ModelLoadError(`${what} ${target} is outside the allowed directory ${root}`);
  let real: string;
  try {
    real = await fs.realpath(wanted);
  } catch (err) {
    if (isNotFound(err))
      throw new ModelLoadError(`${what} not found: ${target}`, 'model-not-found', { location: target });
    throw err;
  }
  if (!inside(real))
    throw new ModelLoadError(`${what} ${target} links outside the allowed directory ${root}`);
  return real;
}

class SizeBudget {
  used = 0;
  constructor(readonly limit: number) {}

  async read(file: string, label: string): Promise<Buffer> {
    const stat = await fs.stat(file);
    if (!stat.isFile()) throw new ModelLoadError(`${label} is not a file`);
    if (this.used + stat.size > this.limit) {
      throw new ModelLoadError(
        `model files exceed the size limit of ${this.limit} bytes (${label} brings the total to ${this.used + stat.size})`,
      );
    }
    const data = await fs.readFile(file);
    this.used += data.length;
    return data;
  }
}

function parseJson(text: string, label: string): unknown {
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelLoadError(`${label} is not valid JSON (truncated or corrupt?): ${(err as Error).message}`);
  }
}

/** Finds the model file inside a directory: a store version's entry, model.json or one .onnx. */
async function entryOfDirectory(dir: string): Promise<{ entry: string; meta?: ModelMeta }> {
  const names = await fs.readdir(dir);
  if (names.includes('meta.json')) {
    const meta = parseJson(await fs.readFile(path.join(dir, 'meta.json'), 'utf8'), 'meta.json') as ModelMeta;
    if (typeof meta?.entry === 'string') return { entry: path.join(dir, meta.entry), meta };
  }
  if (names.includes('model.json')) return { entry: path.join(dir, 'model.json') };
  const onnx = names.filter((n) => n.toLowerCase().endsWith('.onnx'));
  if (onnx.length === 1) return { entry: path.join(dir, onnx[0]) };
  const tflite = names.filter((n) => n.toLowerCase().endsWith('.tflite'));
  if (onnx.length === 0 && tflite.length === 1) return { entry: path.join(dir, tflite[0]) };
  const several = onnx.length > 1 ? onnx : tflite;
  throw new ModelLoadError(
    several.length > 1
      ? `${dir} holds several model files (${several.join(', ')}): name the one to load`
      : `no model.json, .onnx or .tflite model in ${dir}`,
  );
}

/** 'tflite' for a TFLite flatbuffer (TFL3 identifier or .tflite name); it runs converted to ONNX. */
export function detectFormat(data: Uint8Array, fileName: string): ModelFormat | 'json' | 'tflite' {
  if (isTfliteBuffer(data) || fileName.toLowerCase().endsWith('.tflite')) return 'tflite';
  let i = 0;
  while (i < data.length && (data[i] === 0x20 || data[i] === 0x0a || data[i] === 0x0d || data[i] === 0x09))
    i++;
  if (data[i] === 0x7b /* { */) return 'json';
  if (fileName.toLowerCase().endsWith('.json')) return 'json';
  return 'onnx';
}

interface ModelJson {
  format?: string;
  generatedBy?: string;
  convertedBy?: string;
  modelTopology?: Record<string, unknown>;
  weightsManifest?: ManifestGroup[];
  signature?: unknown;
  userDefinedMetadata?: Record<string, unknown>;
  modelInitializer?: unknown;
}

function jsonFormat(json: ModelJson): 'tfjs-layers' | 'tfjs-graph' {
  if (json.format === 'graph-model') return 'tfjs-graph';
  if (json.format === 'layers-model') return 'tfjs-layers';
  const topology = json.modelTopology;
  if (topology && Array.isArray((topology as { node?: unknown }).node)) return 'tfjs-graph';
  if (topology && ('class_name' in topology || 'model_config' in topology)) return 'tfjs-layers';
  throw new ModelLoadError('model.json is neither a TF.js layers model nor a graph model (no modelTopology)');
}

/** Reads the model at `location` (a file or a directory) inside `options.root`. */
export async function readModelFiles(location: string, options: ReadModelOptions): Promise<ModelFiles> {
  const budget = new SizeBudget(options.maxBytes ?? DEFAULT_MAX_MODEL_BYTES);
  let target = await confinedPath(options.root, location);
  let meta: ModelMeta | undefined;
  if ((await fs.stat(target)).isDirectory()) {
    const versionDir = target;
    const found = await entryOfDirectory(versionDir);
    meta = found.meta;
    target = await confinedPath(options.root, found.entry);
    if (meta && Array.isArray(meta.files)) {
      // A model-store version: its files must match the sizes and hashes recorded at save time.
      await new ModelStore(path.dirname(path.dirname(versionDir)))
        .verify({ dir: versionDir, meta })
        .catch((err) => {
          throw new ModelLoadError((err as Error).message);
        });
    }
  }
  const label = path.basename(target);
  const data = await budget.read(target, label);
  const kind = detectFormat(data, target);
  const wanted = options.format ?? 'auto';
  if (kind === 'tflite') {
    if (wanted !== 'auto' && wanted !== 'onnx') {
      throw new ModelLoadError(`${label} is not ${wanted} (it is a TFLite model, which runs as ONNX)`);
    }
    let converted: TfliteConversion;
    try {
      // Integer inputs and outputs stay integers in the graph; the runner applies their scale.
      converted = convertTfliteToOnnx(new Uint8Array(data), { io: 'quantized' });
    } catch (err) {
      if (err instanceof ModelLoadError) {
        err.message = `${label}: ${err.message}`;
        throw err;
      }
      throw new ModelLoadError(
        `${label}: the TFLite model could not be converted: ${(err as Error).message}`,
      );
    }
    const { onnx, ...tflite } = converted;
    const ops = Object.entries(tflite.opCounts)
      .map(([op, n]) => (n > 1 ? `${op} x${n}` : op))
      .join(', ');
    return {
      format: 'onnx',
      entryPath: target,
      bytes: budget.used,
      meta,
      notes: [`TFLite model (${tflite.quantization}) converted to ONNX: ${ops}`],
      onnx,
      tflite,
    };
  }
  if (kind === 'onnx') {
    if (wanted !== 'auto' && wanted !== 'onnx') {
      throw new ModelLoadError(`${label} is not ${wanted} JSON (it looks like an ONNX model)`);
    }
    if (data.length < 16)
      throw new ModelLoadError(
        `not a valid ONNX file: ${label} is too short (truncated?)`,
        'model-invalid-onnx',
      );
    return {
      format: 'onnx',
      entryPath: target,
      bytes: budget.used,
      meta,
      notes: [],
      onnx: new Uint8Array(data),
    };
  }
  const json = parseJson(data.toString('utf8'), label) as ModelJson;
  if (!json || typeof json !== 'object') throw new ModelLoadError(`${label} does not hold a JSON object`);
  const format = jsonFormat(json);
  if (wanted !== 'auto' && wanted !== format) {
    throw new ModelLoadError(`${label} is a ${format} model, but the format is set to ${wanted}`);
  }
  const dir = path.dirname(target);
  const readShard = async (shard: string): Promise<Uint8Array> => {
    if (typeof shard !== 'string' || /^[a-z][a-z0-9+.-]*:/i.test(shard)) {
      throw new ModelLoadError(
        `weight shard path ${JSON.stringify(shard)} in ${label} is not a relative file path`,
      );
    }
    const rel = path.relative(await fs.realpath(options.root), path.resolve(dir, shard));
    let file: string;
    try {
      file = await confinedPath(options.root, rel, 'weight shard');
    } catch (err) {
      if (err instanceof ModelLoadError && err.message.startsWith('weight shard not found')) {
        throw new ModelLoadError(`weight shard "${shard}" listed in ${label} is missing (looked in ${dir})`);
      }
      throw err;
    }
    return budget.read(file, `weight shard ${shard}`);
  };
  const decoded = await decodeWeightsManifest(json.weightsManifest ?? [], readShard);
  const notes: string[] = [];
  let topology = json.modelTopology as tf.io.ModelArtifacts['modelTopology'];
  let layout: LayersLayout | undefined;
  let specs = decoded.specs;
  let quantized = decoded.quantized;
  if (format === 'tfjs-layers') {
    quantized = {};
    const normalised = normaliseLayersTopology(json.modelTopology, json.generatedBy);
    topology = normalised.modelTopology as tf.io.ModelArtifacts['modelTopology'];
    layout = normalised.layout;
    notes.push(...normalised.notes);
    const seen = new Set<string>();
    specs = specs.map((spec) => {
      const name = normaliseWeightName(spec.name, normalised.layerNames);
      if (seen.has(name)) throw new ModelLoadError(`two weights map to the same name ${name}`);
      seen.add(name);
      if (name !== spec.name) notes.push(`weight ${spec.name} -> ${name}`);
      // Stored formats are reported under the names the artifacts use.
      if (spec.name in decoded.quantized) quantized[name] = decoded.quantized[spec.name];
      return { ...spec, name };
    });
  }
  if (Object.keys(quantized).length > 0) {
    const kinds = [...new Set(Object.values(quantized))].join('/');
    notes.push(`${Object.keys(quantized).length} weights stored as ${kinds}`);
  }
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: topology,
    format: json.format,
    generatedBy: json.generatedBy,
    convertedBy: json.convertedBy ?? undefined,
    weightSpecs: specs,
    weightData: decoded.data,
    userDefinedMetadata: json.userDefinedMetadata as tf.io.ModelArtifacts['userDefinedMetadata'],
  };
  if (format === 'tfjs-graph') {
    artifacts.signature = json.signature as tf.io.ModelArtifacts['signature'];
    if (json.modelInitializer) artifacts.modelInitializer = json.modelInitializer as object;
  }
  return {
    format,
    entryPath: target,
    bytes: budget.used,
    meta,
    notes,
    artifacts,
    layout,
    quantized,
  };
}
