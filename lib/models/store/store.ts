import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EventEmitter } from 'node:events';
import { readJsonFile, removeStaleTemps, sha256, writeDirAtomic } from '../../util/atomic';

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
}

const VALID_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

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

  constructor(readonly root: string) {}

  static forUserDir(userDir: string): ModelStore {
    return new ModelStore(path.join(userDir, 'edge-ai', 'models'));
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
    const stored = { dir, meta: full as ModelMeta };
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

  /** Removes all but the newest `keep` versions. */
  async prune(name: string, keep: number): Promise<void> {
    const versions = await this.versions(name);
    for (const v of versions.slice(0, Math.max(0, versions.length - keep))) {
      await fs.rm(path.join(this.root, name, String(v)), { recursive: true, force: true });
    }
  }
}
