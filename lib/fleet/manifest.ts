import type { KeyObject } from 'node:crypto';
import { EdgeAiError, FleetError } from '../errors';
import { sha256 } from '../util/atomic';
import { safeRelative } from '../models/store/source';
import type { ModelFormat, StoredFile } from '../models/store/store';
import { keyIdOf, signBytes, verifyBytes } from './keys';

/**
 * The manifest of one model version rolled out to a fleet. It travels retained on the model's
 * manifest topic as `{"manifest": "<the manifest JSON text>", "signature": "<base64 Ed25519>"}`:
 * the signature covers the exact bytes of the manifest text, so nothing has to be re-serialised
 * the same way on both sides. Every file's sha256 and size are in it; the files travel as
 * fixed-size chunks of their concatenation (in manifest order).
 */

export interface FleetManifest {
  fleet: string;
  name: string;
  /** The model's version in the publisher's store. */
  version: number;
  format: ModelFormat;
  entry: string;
  files: StoredFile[];
  totalBytes: number;
  chunkSize: number;
  chunks: number;
  /** What the store's meta.json says besides files (labels, shapes, normalisation, metrics...). */
  info: Record<string, unknown>;
  published: string;
  /** Fingerprint of the public key that verifies the signature. */
  keyId: string;
}

export interface SignedEnvelope {
  manifest: string;
  signature?: string;
}

const FORMATS: ModelFormat[] = ['tfjs-layers', 'tfjs-graph', 'onnx'];
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

function safePath(p: unknown): p is string {
  return typeof p === 'string' && p.length <= 300 && safeRelative(p);
}

const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

export function encodeManifest(manifest: FleetManifest, privateKey: KeyObject): Buffer {
  const text = JSON.stringify(manifest);
  const envelope: SignedEnvelope = { manifest: text, signature: signBytes(Buffer.from(text), privateKey) };
  return Buffer.from(JSON.stringify(envelope));
}

export interface DecodeOptions {
  /** The model name this device follows. */
  name: string;
  fleet: string;
  publicKey: KeyObject;
  /** Largest model accepted, in bytes (the sum of its files). */
  maxBytes: number;
}

/** Digest naming one manifest text (the same manifest delivered twice has the same digest). */
export function manifestDigest(payload: Buffer): string {
  return sha256(payload);
}

/**
 * Reads and checks a manifest envelope: signature first (an unsigned or wrongly signed manifest
 * is refused before anything in it is believed), then its fields and the size limit.
 */
export function decodeManifest(payload: Buffer, options: DecodeOptions): FleetManifest {
  const { name } = options;
  const invalid = (why: string): FleetError =>
    new FleetError('fleet-manifest-invalid', `fleet model ${name}: manifest ${why}`, { name });
  let envelope: Partial<SignedEnvelope>;
  try {
    envelope = JSON.parse(payload.toString('utf8')) as Partial<SignedEnvelope>;
  } catch {
    throw invalid('is not JSON');
  }
  if (!envelope || typeof envelope.manifest !== 'string') throw invalid('holds no manifest text');
  if (typeof envelope.signature !== 'string' || !envelope.signature) {
    throw new FleetError('fleet-unsigned', `fleet model ${name}: the manifest is not signed, refused`, {
      name,
    });
  }
  let m: Partial<FleetManifest>;
  try {
    m = JSON.parse(envelope.manifest) as Partial<FleetManifest>;
  } catch {
    throw invalid('text is not JSON');
  }
  const version = Number.isSafeInteger(m.version) ? (m.version as number) : 0;
  if (!verifyBytes(Buffer.from(envelope.manifest), envelope.signature, options.publicKey)) {
    const ours = keyIdOf(options.publicKey);
    const other =
      typeof m.keyId === 'string' && m.keyId !== ours
        ? ` (signed with key ${m.keyId}, this fleet's is ${ours})`
        : '';
    throw new FleetError(
      'fleet-bad-signature',
      `fleet model ${name} v${version}: the manifest signature does not verify with the fleet's public key${other}, refused`,
      { name, version },
    );
  }
  if (m.name !== name) throw invalid(`names model "${String(m.name)}"`);
  if (m.fleet !== options.fleet) throw invalid(`belongs to fleet "${String(m.fleet)}"`);
  if (!NAME.test(name) || version < 1) throw invalid('has no valid version');
  if (!FORMATS.includes(m.format as ModelFormat))
    throw invalid(`has an unknown format "${String(m.format)}"`);
  if (!Array.isArray(m.files) || m.files.length === 0) throw invalid('lists no files');
  let total = 0;
  const seen = new Set<string>();
  for (const f of m.files) {
    if (!safePath(f?.path) || seen.has(f.path) || f.path === 'meta.json')
      throw invalid(`has a bad file path "${String(f?.path)}"`);
    if (!isCount(f.bytes) || typeof f.sha256 !== 'string' || !/^[0-9a-f]{64}$/.test(f.sha256)) {
      throw invalid(`has a bad size or sha256 for ${f.path}`);
    }
    seen.add(f.path);
    total += f.bytes;
  }
  if (typeof m.entry !== 'string' || !seen.has(m.entry))
    throw invalid('names an entry file it does not list');
  if (total !== m.totalBytes) throw invalid('sizes do not add up');
  if (total > options.maxBytes) {
    throw new FleetError(
      'model-too-large',
      `fleet model ${name} v${version} is ${total} bytes, over the size limit of ${options.maxBytes} bytes, refused`,
      { name, version, limit: options.maxBytes },
    );
  }
  if (!Number.isSafeInteger(m.chunkSize) || (m.chunkSize as number) < 1)
    throw invalid('has a bad chunk size');
  if (m.chunks !== Math.ceil(total / (m.chunkSize as number))) throw invalid('has a wrong chunk count');
  if (m.info !== undefined && (typeof m.info !== 'object' || m.info === null || Array.isArray(m.info))) {
    throw invalid('has bad model info');
  }
  return { ...(m as FleetManifest), info: (m.info ?? {}) as Record<string, unknown> };
}

/** The expected byte length of chunk `index`. */
export function chunkLength(manifest: FleetManifest, index: number): number {
  return Math.min(manifest.chunkSize, manifest.totalBytes - index * manifest.chunkSize);
}

/** Splits the assembled bytes into files and checks every size and hash against the manifest. */
export function splitFiles(manifest: FleetManifest, bundle: Buffer): Map<string, Buffer> {
  const { name, version } = manifest;
  if (bundle.length !== manifest.totalBytes) {
    throw new FleetError(
      'fleet-truncated',
      `fleet model ${name} v${version}: ${bundle.length} of ${manifest.totalBytes} bytes arrived, refused`,
      { name, version },
    );
  }
  const files = new Map<string, Buffer>();
  let offset = 0;
  for (const f of manifest.files) {
    const data = bundle.subarray(offset, offset + f.bytes);
    offset += f.bytes;
    if (sha256(data) !== f.sha256) {
      throw new FleetError(
        'fleet-tampered',
        `fleet model ${name} v${version}: file ${f.path} does not match its signed sha256, refused`,
        { name, version, file: f.path },
      );
    }
    files.set(f.path, Buffer.from(data));
  }
  return files;
}

export function isRefusal(err: unknown): err is EdgeAiError {
  return err instanceof EdgeAiError;
}
