import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import {
  readJsonFile,
  removeDirAtomic,
  removeStaleTemps,
  sha256,
  writeDirAtomic,
  writeFileAtomic,
} from '../../util/atomic';

export type ModelFormat = 'tfjs-layers' | 'tfjs-graph' | 'onnx';

export interface StoredFile {
  path: string;
  bytes: number;
  sha256: string;
}

/** What the caller describes when saving a version. */
export interface ModelInfo {
  format: ModelFormat;
  /** The file a runtime opens: model.json for TF.js, model.onnx for ONNX. */
  entry: string;
  inputShape?: (number | null)[];
  outputShape?: (number | null)[];
  labels?: string[];
  normalisation?: unknown;
  quantization?: unknown;
  metrics?: Record<string, number>;
  history?: Record<string, number[]>;
  source?: string;
  [key: string]: unknown;
}

/** meta.json beside the model files of one version. */
export interface ModelMeta extends ModelInfo {
  name: string;
  version: number;
  files: StoredFile[];
  created: string;
}

export interface StoredModel {
  dir: string;
  meta: ModelMeta;
  /** Older versions a save removed (keep setting). */
  pruned?: number[];
  /** Why pruning after a save failed; the saved version is whole. */
  pruneError?: string;
}

const PINNED_FILE = 'pinned.json';

const VALID_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** Versions a save keeps of one model by default: the newest 5, plus those in use or pinned. */
export const DEFAULT_KEEP_VERSIONS = 5;

export interface ModelStoreOptions {
  /**
   * After each save, keep this many newest versions of the model and remove older ones, except
   * versions in use (see holdVersion) and pinned ones. 0 keeps every version.
   */
  keep?: number;
}

/** Versions loaded somewhere in this process, by `<root>\0<name>\0<version>`, with a count. */
const held = new Map<string, number>();
const heldKey = (root: string, name: string, version: number): string =>
  `${path.resolve(root)}\0${name}\0${version}`;

/**
 * Marks a store version as in use (a model handle serving it); pruning never removes it until
 * the returned release function is called.
 */
export function holdVersion(root: string, name: string, version: number): () => void {
  const key = heldKey(root, name, version);
  held.set(key, (held.get(key) ?? 0) + 1);
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (held.get(key) ?? 1) - 1;
    if (left > 0) held.set(key, left);
    else held.delete(key);
  };
}

/** Saves of one model (`<root>\0<name>`) in this process run one after another. */
const saveLocks = new Map<string, Promise<unknown>>();

/** Fires 'saved' (StoredModel) whenever any store in this process completes a new version. */
export const modelStoreEvents = new EventEmitter();
modelStoreEvents.setMaxListeners(0);

/**
 * Versioned models on disk: `<root>/<name>/<version>/` with the model files and meta.json.
 * A version directory appears only once complete (built in a temp dir, fsynced, renamed), so
 * the highest numbered directory is always a whole model.
 */
export class ModelStore {
  /** Model directories already swept for stale temp entries by this store. */
  private readonly swept = new Set<string>();

  /** Versions kept per model after a save (0: all). */
  readonly keep: number;

  constructor(
    readonly root: string,
    options: ModelStoreOptions = {},
  ) {
    const keep = options.keep ?? DEFAULT_KEEP_VERSIONS;
    if (!Number.isInteger(keep) || keep < 0) {
      throw new Error(`versions to keep must be a whole number 0 or more, not ${String(keep)}`);
    }
    this.keep = keep;
  }

  static forUserDir(userDir: string, options: ModelStoreOptions = {}): ModelStore {
    return new ModelStore(path.join(userDir, 'edge-ai', 'models'), options);
  }

  static checkName(name: string): void {
    if (!VALID_NAME.test(name)) {
      throw new Error(`invalid model name "${name}": use letters, digits, ".", "_" or "-" (max 100)`);
    }
  }

  async names(): Promise<string[]> {
    const entries = await fs.readdir(this.root, { withFileTypes: true }).catch(() => []);
    return entries
      .filter((e) => e.isDirectory() && VALID_NAME.test(e.name))
      .map((e) => e.name)
      .sort();
  }

  async versions(name: string): Promise<number[]> {
    ModelStore.checkName(name);
    await this.sweep(name);
    const entries = await fs.readdir(path.join(this.root, name), { withFileTypes: true }).catch(() => []);
    return entries
      .filter((e) => e.isDirectory() && /^\d+$/.test(e.name))
      .map((e) => Number(e.name))
      .sort((a, b) => a - b);
  }

  /**
   * The first time this store looks at a model, removes the temp version directories a crash
   * during a save left there (they are never read, but each holds a whole model).
   */
  private async sweep(name: string): Promise<void> {
    const dir = path.join(this.root, name);
    if (this.swept.has(dir)) return;
    this.swept.add(dir);
    await removeStaleTemps(dir);
  }

  async get(name: string, version?: number): Promise<StoredModel | undefined> {
    const versions = await this.versions(name);
    const chosen = version ?? versions[versions.length - 1];
    if (chosen === undefined || !versions.includes(chosen)) return undefined;
    const dir = path.join(this.root, name, String(chosen));
    return { dir, meta: await readJsonFile<ModelMeta>(path.join(dir, 'meta.json')) };
  }

  /**
   * Saves a new version. `fill` writes the model files into the directory it is given;
   * sizes and sha256 of every file are recorded in meta.json.
   */
  async save(name: string, meta: ModelInfo, fill: (dir: string) => Promise<void>): Promise<StoredModel> {
    ModelStore.checkName(name);
    // One save of a model at a time in this process, so concurrent saves get distinct versions.
    const key = `${path.resolve(this.root)}\0${name}`;
    const before = saveLocks.get(key) ?? Promise.resolve();
    const run = before.then(
      () => this.saveNow(name, meta, fill),
      () => this.saveNow(name, meta, fill),
    );
    const tail = run.catch(() => undefined);
    saveLocks.set(key, tail);
    void tail.then(() => {
      if (saveLocks.get(key) === tail) saveLocks.delete(key);
    });
    return run;
  }

  private async saveNow(
    name: string,
    meta: ModelInfo,
    fill: (dir: string) => Promise<void>,
  ): Promise<StoredModel> {
    const versions = await this.versions(name);
    const version = (versions[versions.length - 1] ?? 0) + 1;
    const dir = path.join(this.root, name, String(version));
    let full: ModelMeta | undefined;
    await writeDirAtomic(dir, async (tmp) => {
      await fill(tmp);
      const files: StoredFile[] = [];
      for (const entry of await fs.readdir(tmp, { recursive: true, withFileTypes: true })) {
        if (!entry.isFile()) continue;
        const abs = path.join(entry.parentPath ?? tmp, entry.name);
        const data = await fs.readFile(abs);
        files.push({
          path: path.relative(tmp, abs).split(path.sep).join('/'),
          bytes: data.length,
          sha256: sha256(data),
        });
      }
      files.sort((a, b) => a.path.localeCompare(b.path));
      full = { ...meta, name, version, files, created: new Date().toISOString() };
      await fs.writeFile(path.join(tmp, 'meta.json'), JSON.stringify(full, null, 2));
    });
    const stored: StoredModel = { dir, meta: full as ModelMeta };
    if (this.keep > 0) {
      try {
        const removed = await this.prune(name, this.keep);
        if (removed.length > 0) stored.pruned = removed;
      } catch (err) {
        // The new version is whole and saved; a version that could not be removed stays.
        stored.pruneError = (err as Error).message;
      }
    }
    modelStoreEvents.emit('saved', { root: this.root, ...stored });
    return stored;
  }

  /** Checks every file of a version against the sizes and hashes in its meta.json. */
  async verify(stored: StoredModel): Promise<void> {
    for (const file of stored.meta.files) {
      const data = await fs.readFile(path.join(stored.dir, file.path));
      if (data.length !== file.bytes || sha256(data) !== file.sha256) {
        throw new Error(`model ${stored.meta.name} v${stored.meta.version}: file ${file.path} is damaged`);
      }
    }
  }

  /**
   * Removes the versions older than the newest `keep`, except those in use in this process
   * (holdVersion) and pinned ones. Returns the versions removed.
   */
  async prune(name: string, keep: number = this.keep): Promise<number[]> {
    const versions = await this.versions(name);
    if (keep <= 0) return [];
    const pinned = new Set(await this.pinned(name));
    const removed: number[] = [];
    for (const v of versions.slice(0, Math.max(0, versions.length - keep))) {
      if (pinned.has(v) || held.has(heldKey(this.root, name, v))) continue;
      await removeDirAtomic(path.join(this.root, name, String(v)));
      removed.push(v);
    }
    return removed;
  }

  /** Versions of `name` that pruning never removes (`<root>/<name>/pinned.json`). */
  async pinned(name: string): Promise<number[]> {
    ModelStore.checkName(name);
    try {
      const list = await readJsonFile<unknown>(path.join(this.root, name, PINNED_FILE));
      return Array.isArray(list) ? list.filter((v): v is number => Number.isInteger(v)) : [];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  /** Pins (or with `pinned` false unpins) a version so pruning keeps it. */
  async pin(name: string, version: number, pinned = true): Promise<void> {
    if (!(await this.versions(name)).includes(version)) {
      throw new Error(`model ${name} has no version ${version}`);
    }
    const list = new Set(await this.pinned(name));
    if (pinned) list.add(version);
    else list.delete(version);
    await writeFileAtomic(
      path.join(this.root, name, PINNED_FILE),
      JSON.stringify([...list].sort((a, b) => a - b)),
    );
  }
}
