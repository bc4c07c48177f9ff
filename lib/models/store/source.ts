import { promises as fs } from 'node:fs';
import path from 'node:path';
import { sha256 } from '../../util/atomic';
import { ModelLoadError, ModelNotInStoreYet } from '../../errors';
import { detectFormat } from './model-files';
import { ModelStore, type ModelInfo, type ModelMeta, type StoredModel } from './store';

/**
 * Where a model comes from: a local path (confined to an allowed root, the Node-RED user
 * directory unless configured otherwise), a version in the model store, or an http(s) URL that
 * is downloaded once into the model store (size limit, timeout, optional sha256 pin) and then
 * read from there.
 */

export interface ModelSourceSpec {
  path?: string;
  url?: string;
  /** Name of a model in the model store. */
  store?: string;
  /** Store version; the newest when omitted. */
  version?: number;
  /** Download again even if the store already holds this URL. */
  refresh?: boolean;
  /** Store name under which a downloaded model is kept (overrides the configured one). */
  name?: string;
  /** Expected sha256 (hex) of the downloaded model file (overrides the configured pin). */
  sha256?: string;
}

export type ModelSourceInput = string | ModelSourceSpec;

export interface ResolveOptions {
  /** Root for relative local paths and the confinement of local reads. */
  root: string;
  store: ModelStore;
  /** Store name under which a downloaded model is kept. */
  name?: string;
  maxBytes: number;
  timeoutMs: number;
  /** Expected sha256 (hex) of the downloaded model file (model.json or .onnx). */
  sha256?: string;
  /**
   * Origins (e.g. 'https://cdn.example.com', or '*' for any) a model.json may point its weight
   * shards at besides its own. By default shards stay on the model's origin.
   */
  shardOrigins?: string[];
}

export interface ResolvedSource {
  origin: 'path' | 'url' | 'store';
  /** File or directory to read. */
  location: string;
  /** Directory reads are confined to. */
  root: string;
  /** What the user gave, for messages. */
  label: string;
  /** Store name and version when the model is (now) in the store. */
  name?: string;
  version?: number;
  meta?: ModelMeta;
}

/** 'store:name' or 'store:name@3', an http(s) URL, or a path. */
export function parseSource(input: ModelSourceInput): ModelSourceSpec {
  if (typeof input !== 'string') return input;
  const text = input.trim();
  if (!text) throw new ModelLoadError('no model source given');
  const store = /^store:([^@]+)(?:@(\d+))?$/.exec(text);
  if (store) return { store: store[1], version: store[2] === undefined ? undefined : Number(store[2]) };
  if (/^https?:\/\//i.test(text)) return { url: text };
  if (/^[a-z][a-z0-9+.-]+:\/\//i.test(text))
    throw new ModelLoadError(`unsupported model URL ${text}: use http or https`);
  return { path: text };
}

export function describeSource(spec: ModelSourceSpec): string {
  if (spec.url) return spec.url;
  if (spec.store) return `store:${spec.store}${spec.version ? `@${spec.version}` : ''}`;
  return spec.path ?? '?';
}

/** A store name derived from a URL's file or directory name. */
export function nameFromUrl(url: string): string {
  const parts = new URL(url).pathname.split('/').filter(Boolean);
  let base = parts.pop() ?? 'model';
  if (/^model\.json$/i.test(base) && parts.length > 0) base = parts.pop() as string;
  base = base
    .replace(/\.(json|onnx)$/i, '')
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .replace(/^[^A-Za-z0-9]+/, '');
  return (base || 'model').slice(0, 100);
}

class Downloader {
  used = 0;
  constructor(
    readonly maxBytes: number,
    readonly timeoutMs: number,
  ) {}

  /** The body of `url` and the URL it finally came from (after redirects). */
  async get(url: string): Promise<{ data: Buffer; url: string }> {
    const parsed = new URL(url);
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') {
      throw new ModelLoadError(`refusing to download ${url}: only http and https are allowed`);
    }
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), this.timeoutMs);
    try {
      const response = await fetch(url, { signal: abort.signal, redirect: 'follow' });
      if (!response.ok)
        throw new ModelLoadError(`GET ${url} failed: HTTP ${response.status}`, 'model-download-failed', {
          url,
        });
      const declared = Number(response.headers.get('content-length'));
      if (Number.isFinite(declared) && this.used + declared > this.maxBytes) {
        abort.abort();
        throw new ModelLoadError(
          `${url} is ${declared} bytes, over the model size limit of ${this.maxBytes} bytes`,
        );
      }
      const chunks: Buffer[] = [];
      if (response.body) {
        const reader = response.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          this.used += value.byteLength;
          if (this.used > this.maxBytes) {
            abort.abort();
            throw new ModelLoadError(
              `${url} exceeds the model size limit of ${this.maxBytes} bytes`,
              'model-too-large',
              {
                limit: this.maxBytes,
              },
            );
          }
          chunks.push(Buffer.from(value));
        }
      }
      return { data: Buffer.concat(chunks), url: response.url || url };
    } catch (err) {
      if (err instanceof ModelLoadError) throw err;
      if (abort.signal.aborted) {
        throw new ModelLoadError(
          `downloading ${url} timed out after ${this.timeoutMs} ms`,
          'model-download-failed',
          { url },
        );
      }
      throw new ModelLoadError(
        `downloading ${url} failed: ${(err as Error).message}`,
        'model-download-failed',
        { url },
      );
    } finally {
      clearTimeout(timer);
    }
  }
}

interface ShardGroup {
  paths: string[];
}

/** A relative path with no empty, '.' or '..' part, no scheme and no backslash. */
export function safeRelative(p: string): boolean {
  if (!p || p.startsWith('/') || p.includes('\\') || /^[a-z][a-z0-9+.-]*:/i.test(p)) return false;
  return p.split('/').every((part) => part !== '' && part !== '.' && part !== '..');
}

/**
 * A model.json from elsewhere must not make this process fetch arbitrary URLs (another host,
 * loopback admin endpoints): its shards stay on its origin unless the user allowed more.
 */
function checkShardOrigin(shardUrl: string, modelUrl: string, allowed: readonly string[] = []): void {
  const origin = new URL(shardUrl).origin;
  const own = new URL(modelUrl).origin;
  if (origin === own || allowed.includes('*')) return;
  if (allowed.some((a) => safeOrigin(a) === origin)) return;
  throw new ModelLoadError(
    `the model at ${modelUrl} points a weight shard at ${origin}, another origin: not downloading it ` +
      `(allow that origin in the model's shard origins if it is trusted)`,
    'model-shard-origin',
    { url: shardUrl, origin },
  );
}

function safeOrigin(text: string): string | undefined {
  try {
    return new URL(text.trim()).origin;
  } catch {
    return undefined;
  }
}

/**
 * Downloads the model at `url` (model.json with its shards, resolved against the URL, or an
 * ONNX file) into the store, unless a version from the same URL (and pin) is there already.
 */
export async function downloadToStore(
  url: string,
  options: ResolveOptions & { refresh?: boolean },
): Promise<StoredModel> {
  const name = options.name ?? nameFromUrl(url);
  ModelStore.checkName(name);
  const pin = options.sha256?.trim().toLowerCase() || undefined;
  if (!options.refresh) {
    const versions = await options.store.versions(name);
    for (const version of versions.reverse()) {
      const stored = await options.store.get(name, version).catch(() => undefined);
      if (stored && stored.meta.source === url && (!pin || stored.meta.sourceSha256 === pin)) return stored;
    }
  }
  const downloader = new Downloader(options.maxBytes, options.timeoutMs);
  const { data: main, url: finalUrl } = await downloader.get(url);
  const digest = sha256(main);
  if (pin && digest !== pin) {
    throw new ModelLoadError(`sha256 of ${url} is ${digest}, but ${pin} was pinned: not loading it`);
  }
  const files = new Map<string, Buffer>();
  let info: ModelInfo;
  const kind = detectFormat(main, url);
  if (kind === 'onnx' || kind === 'tflite') {
    // A TFLite file keeps its bytes and name; it is converted to ONNX when loaded.
    const entry = kind === 'tflite' ? 'model.tflite' : 'model.onnx';
    files.set(entry, main);
    info = { format: 'onnx', entry };
  } else {
    let json: { format?: string; modelTopology?: { node?: unknown }; weightsManifest?: ShardGroup[] };
    try {
      json = JSON.parse(main.toString('utf8'));
    } catch (err) {
      throw new ModelLoadError(`${url} is not valid JSON: ${(err as Error).message}`);
    }
    const groups = Array.isArray(json.weightsManifest) ? json.weightsManifest : [];
    let rewritten = false;
    for (const [g, group] of groups.entries()) {
      if (!Array.isArray(group?.paths)) continue;
      group.paths = await Promise.all(
        group.paths.map(async (p, i) => {
          // Relative to where model.json came from after redirects, as a browser would.
          const shardUrl = new URL(String(p), finalUrl).toString();
          checkShardOrigin(shardUrl, finalUrl, options.shardOrigins);
          const local = safeRelative(String(p))
            ? String(p)
            : `group${g + 1}-shard${i + 1}of${group.paths.length}.bin`;
          if (local !== p) rewritten = true;
          files.set(local, (await downloader.get(shardUrl)).data);
          return local;
        }),
      );
    }
    files.set('model.json', rewritten ? Buffer.from(JSON.stringify(json)) : main);
    const graph = json.format === 'graph-model' || Array.isArray(json.modelTopology?.node);
    info = { format: graph ? 'tfjs-graph' : 'tfjs-layers', entry: 'model.json' };
  }
  return options.store.save(name, { ...info, source: url, sourceSha256: digest }, async (dir) => {
    for (const [file, data] of files) {
      const target = path.join(dir, file);
      await fs.mkdir(path.dirname(target), { recursive: true });
      await fs.writeFile(target, data);
    }
  });
}

export async function resolveSource(
  input: ModelSourceInput,
  options: ResolveOptions,
): Promise<ResolvedSource> {
  const spec = parseSource(input);
  const label = describeSource(spec);
  if (spec.url) {
    const stored = await downloadToStore(spec.url, { ...options, refresh: spec.refresh });
    return {
      origin: 'url',
      location: stored.dir,
      root: options.store.root,
      label,
      name: stored.meta.name,
      version: stored.meta.version,
      meta: stored.meta,
    };
  }
  if (spec.store) {
    ModelStore.checkName(spec.store);
    const stored = await options.store.get(spec.store, spec.version);
    if (!stored) {
      if (!spec.version) throw new ModelNotInStoreYet(spec.store);
      throw new ModelLoadError(
        `model ${spec.store} has no version ${spec.version} in the store`,
        'model-not-found',
        {
          location: `store:${spec.store}`,
        },
      );
    }
    return {
      origin: 'store',
      location: stored.dir,
      root: options.store.root,
      label,
      name: spec.store,
      version: stored.meta.version,
      meta: stored.meta,
    };
  }
  if (!spec.path) throw new ModelLoadError('no model source given');
  return { origin: 'path', location: spec.path, root: options.root, label };
}
