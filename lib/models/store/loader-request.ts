/**
 * What a message to the model loader asks for: load/swap a model into a shared model, or
 * compress a stored model into a new version. Pure parsing, shared by the node and scripts.
 */
import { InputError } from '../../preprocess/numeric-input';
import {
  COMPRESS_QUANTIZATIONS,
  type CompressQuantization,
  type CompressStoredRequest,
} from '../compress/compress';
import { PRUNE_SCOPES, type PruneScope } from '../compress/prune';

export type LoaderMode = 'auto' | 'load' | 'compress';
export const LOADER_MODES: readonly LoaderMode[] = ['auto', 'load', 'compress'];

/** A model to load: a path, an http(s) URL or `store:<name>[@<version>]`. */
export interface LoadRequest {
  source: string;
  /** Store name under which a downloaded model is kept. */
  name?: string;
  /** Expected sha256 (hex) of the downloaded model file. */
  sha256?: string;
}

export interface CompressMessageRequest extends CompressStoredRequest {
  /** Load the new version into the target model once saved. */
  swap: boolean;
}

export type LoaderRequest =
  { kind: 'load'; request: LoadRequest } | { kind: 'compress'; request: CompressMessageRequest };

/** Dialog settings that fill in what a compress message leaves out. */
export interface CompressDefaults {
  quantize: CompressQuantization | 'none';
  prune: number;
  pruneScope: PruneScope;
  saveAs?: string;
  swap: boolean;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function optionalString(record: Record<string, unknown>, key: string): string | undefined {
  const value = record[key];
  if (value === undefined || value === null || value === '') return undefined;
  if (typeof value !== 'string') throw new InputError(`payload.${key} must be a string`);
  return value;
}

function parseLoad(payload: unknown): LoadRequest {
  if (typeof payload === 'string') {
    if (!payload.trim())
      throw new InputError('empty model source: give a path, an http(s) URL or store:<name>');
    return { source: payload.trim() };
  }
  if (isRecord(payload) && typeof payload.source === 'string' && payload.source.trim()) {
    const request: LoadRequest = { source: payload.source.trim() };
    const name = optionalString(payload, 'name');
    const sha256 = optionalString(payload, 'sha256');
    if (name) request.name = name;
    if (sha256) {
      if (!/^[0-9a-fA-F]{64}$/.test(sha256)) throw new InputError('payload.sha256 must be 64 hex digits');
      request.sha256 = sha256.toLowerCase();
    }
    return request;
  }
  throw new InputError('to load a model send a path/URL string or {source, name?, sha256?}');
}

function parseCompress(payload: unknown, defaults: CompressDefaults): CompressMessageRequest {
  const record: Record<string, unknown> =
    typeof payload === 'string' ? { model: payload } : isRecord(payload) ? payload : {};
  const model = record.model;
  if (typeof model !== 'string' || !model) {
    throw new InputError(
      'to compress send {model: "<name in the model store>", quantize?, prune?, calibration?}',
    );
  }
  const quantize = record.quantize ?? defaults.quantize;
  if (quantize !== 'none' && !(COMPRESS_QUANTIZATIONS as readonly unknown[]).includes(quantize)) {
    throw new InputError(
      `unknown quantization ${JSON.stringify(quantize)}: use ${COMPRESS_QUANTIZATIONS.join(', ')} or none`,
    );
  }
  const pruneScope = record.pruneScope ?? defaults.pruneScope;
  if (!(PRUNE_SCOPES as readonly unknown[]).includes(pruneScope)) {
    throw new InputError(`pruneScope must be ${PRUNE_SCOPES.join(' or ')}`);
  }
  let version: number | undefined;
  if (record.version !== undefined && record.version !== null) {
    version = Number(record.version);
    if (!Number.isInteger(version) || version < 1)
      throw new InputError('payload.version must be a whole number from 1');
  }
  const request: CompressMessageRequest = {
    name: model,
    quantize: quantize as CompressQuantization | 'none',
    prune: record.prune === undefined || record.prune === false ? defaults.prune : (record.prune as number),
    pruneScope: pruneScope as PruneScope,
    swap: record.swap === undefined ? defaults.swap : record.swap === true,
  };
  if (version !== undefined) request.version = version;
  const saveAs = optionalString(record, 'saveAs') ?? defaults.saveAs;
  if (saveAs) request.saveAs = saveAs;
  if (record.calibration !== undefined) request.calibration = record.calibration;
  if (record.scheme !== undefined) request.scheme = record.scheme as CompressMessageRequest['scheme'];
  return request;
}

/**
 * In 'auto' mode: a string or `{source}` loads, `{model}` compresses. In 'compress' mode a
 * string is the name of the stored model to compress with the dialog's settings.
 */
export function parseLoaderMessage(
  payload: unknown,
  mode: LoaderMode,
  defaults: CompressDefaults,
): LoaderRequest {
  if (mode === 'load') return { kind: 'load', request: parseLoad(payload) };
  if (mode === 'compress') return { kind: 'compress', request: parseCompress(payload, defaults) };
  if (isRecord(payload) && 'model' in payload)
    return { kind: 'compress', request: parseCompress(payload, defaults) };
  if (typeof payload === 'string' || (isRecord(payload) && 'source' in payload)) {
    return { kind: 'load', request: parseLoad(payload) };
  }
  throw new InputError(
    'send a model source (path, URL, {source}) to load it, or {model, quantize, prune} to compress a stored model',
  );
}

/** The load request for a version in the model store. */
export function storeSource(name: string, version: number): LoadRequest {
  return { source: `store:${name}@${version}` };
}
