import { EventEmitter } from 'node:events';
import path from 'node:path';
import type * as tfl from '@tensorflow/tfjs-layers';
import { EdgeAiError, ModelLoadError, type ErrorCode } from '../../errors';
import type { Normalisation } from './inference';
import { checkNormalisation } from '../../preprocess/scaling';
import { DEFAULT_MAX_MODEL_BYTES, readModelFiles, type OnnxModelFiles } from '../store/model-files';
import { inputsOf, outputsOf, type ModelRunner, type RuntimeName, type TensorSpec } from '../runtime/runner';
import { zeroFeeds } from '../runtime/feeds';
import { streamSettingsFromMeta, type StreamSettings } from './streams';
import { VerifyingRunner, type VerificationDecision } from '../runtime/verify';
import { nativeOrtMissing } from '../runtime/ort-session';
import { createRunner, type RuntimePreference } from '../runtime/select';
import {
  describeSource,
  parseSource,
  resolveSource,
  type ModelSourceInput,
  type ModelSourceSpec,
  type ResolvedSource,
} from '../store/source';
import {
  holdVersion,
  ModelStore,
  modelStoreEvents,
  type ModelFormat,
  type StoredModel,
} from '../store/store';
import { sizeOf } from '../../preprocess/shape';

/**
 * One loaded model shared by every user of it, swappable while it serves: a load builds the
 * new runner completely (and warms it up) before it replaces the current one; requests already
 * running finish on the old runner, which is disposed when its last request releases it. A
 * failed load leaves the current model serving. Optionally follows the model store: a new
 * version of the named model saved by anyone in this process is loaded automatically.
 */

export interface ModelHandleOptions {
  /** Display name; also the store name of downloaded models and of the model followed. */
  name?: string;
  /** Node-RED user directory: default root of local paths and home of the model store. */
  userDir: string;
  /** Root local model paths must stay inside (default: userDir). */
  root?: string;
  store?: ModelStore;
  format?: ModelFormat | 'auto';
  runtime?: RuntimePreference;
  inputShape?: number[];
  /** Labels overriding those in meta.json. */
  labels?: string[];
  /** Predictions run on a new model before it takes over (fills caches, JIT). */
  warmup?: number;
  maxBytes?: number;
  /** Download timeout for URL sources. */
  timeoutMs?: number;
  /** sha256 pin of a downloaded model file. */
  sha256?: string;
  /** Other origins a downloaded model.json may fetch its shards from ('*' for any). */
  shardOrigins?: string[];
  tolerance?: number;
  threads?: number;
  /** Load new versions of the store model `followName ?? name` when they are saved. */
  followStore?: boolean;
  followName?: string;
  exporter?: (model: tfl.LayersModel) => Uint8Array;
  /** First messages an export that failed only a random probe is checked on (0: none). */
  verifyMessages?: number;
}

export interface LoadedModelInfo {
  name: string;
  /** Store version, when the model came from (or was downloaded into) the store. */
  version?: number;
  /**
   * Set when the model runs on onnxruntime-web because onnxruntime-node is missing or does
   * not load here: why (the native runtime is several times faster to load and run).
   */
  noNative?: string;
  source: string;
  format: ModelFormat;
  runtime: RuntimeName;
  inputShape: number[];
  outputShape: number[];
  /** Every named input and output of the model, in its order. */
  inputs: TensorSpec[];
  outputs: TensorSpec[];
  labels?: string[];
  normalisation?: Normalisation;
  /** State pairs and constant inputs the model's meta.json names. */
  streams?: Partial<StreamSettings>;
  /**
   * For a .tflite file, what its conversion to ONNX found: full-integer int8, float, hybrid...,
   * the operators it has, and each input's and output's type, shape and quantization.
   */
  tflite?: OnnxModelFiles['tflite'];
  /** A layers model running as its verified ONNX export. */
  exported: boolean;
  maxAbsDiff?: number;
  fallbackReason?: string;
  notes: string[];
  bytes: number;
  loadMs: number;
  loadedAt: string;
}

interface Loaded {
  runner: ModelRunner;
  info: LoadedModelInfo;
  leases: number;
  retired: boolean;
  /** Lets pruning remove the store version again. */
  release?: () => void;
}

export interface ModelLease {
  readonly runner: ModelRunner;
  readonly info: LoadedModelInfo;
  release(): void;
}

function isStoreName(name: string): boolean {
  try {
    ModelStore.checkName(name);
    return true;
  } catch {
    return false;
  }
}

export class ModelHandle extends EventEmitter {
  private current: Loaded | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private pending = 0;
  private closed = false;
  private firstLoad: Promise<void>;
  private resolveFirst!: () => void;
  private readonly store: ModelStore;
  private readonly follower?: (saved: StoredModel & { root: string }) => void;
  private readonly followName?: string;
  /** Newest version of the followed model loaded or being loaded. */
  private followedVersion = 0;
  /** Last load error while no model is loaded, for status and requests. */
  lastError: Error | undefined;

  constructor(readonly options: ModelHandleOptions) {
    super();
    this.store = options.store ?? ModelStore.forUserDir(options.userDir);
    this.firstLoad = new Promise((resolve) => (this.resolveFirst = resolve));
    const followName = options.followName ?? options.name;
    this.followName = followName;
    if (options.followStore && followName) {
      this.follower = (saved) => {
        if (path.resolve(saved.root) !== path.resolve(this.store.root) || saved.meta.name !== followName)
          return;
        // Deferred: a download saving into the store announces the version it is loading itself.
        setImmediate(() => {
          if (this.closed || saved.meta.version <= this.followedVersion) return;
          this.followedVersion = saved.meta.version;
          this.load({ store: followName, version: saved.meta.version }).catch(() => undefined);
        });
      };
      modelStoreEvents.on('saved', this.follower);
    }
  }

  /** The model serving now, if any. */
  get info(): LoadedModelInfo | undefined {
    return this.current?.info;
  }

  get loading(): boolean {
    return this.pending > 0;
  }

  /**
   * Loads `source` ('store:name[@v]', an http(s) URL, a path, or a spec) and swaps it in.
   * Loads run one after another; each resolves with the info of the model it loaded.
   */
  load(source: ModelSourceInput): Promise<LoadedModelInfo> {
    if (this.closed) return Promise.reject(new Error('the model handle is closed'));
    this.pending++;
    this.emit('loading', typeof source === 'string' ? source : describeSource(source));
    const result = this.chain.then(() => this.loadNow(source));
    this.chain = result.catch(() => undefined);
    return result.then(
      (info) => {
        this.pending--;
        this.lastError = undefined;
        this.resolveFirst();
        this.emit('loaded', info);
        return info;
      },
      (err: Error) => {
        this.pending--;
        if (!this.current) this.lastError = err;
        this.emit('load-failed', err);
        throw err;
      },
    );
  }

  /** Same as load: replaces the serving model by `source` once it is ready. */
  swap(source: ModelSourceInput): Promise<LoadedModelInfo> {
    return this.load(source);
  }

  private async loadNow(source: ModelSourceInput): Promise<LoadedModelInfo> {
    if (this.closed) throw new Error('the model handle is closed');
    const started = performance.now();
    const spec: ModelSourceSpec = parseSource(source);
    const options = this.options;
    const root = options.root || options.userDir;
    const resolved = await resolveSource(spec, {
      root,
      store: this.store,
      name: spec.name ?? (options.name && isStoreName(options.name) ? options.name : undefined),
      maxBytes: options.maxBytes ?? DEFAULT_MAX_MODEL_BYTES,
      timeoutMs: options.timeoutMs ?? 30000,
      sha256: spec.sha256 ?? options.sha256,
      shardOrigins: options.shardOrigins,
    });
    if (resolved.name === this.followName && resolved.version !== undefined) {
      this.followedVersion = Math.max(this.followedVersion, resolved.version);
    }
    // A store version being served is never pruned.
    const release =
      resolved.meta && resolved.name !== undefined && resolved.version !== undefined
        ? holdVersion(this.store.root, resolved.name, resolved.version)
        : undefined;
    try {
      return await this.loadFiles(resolved, started, release);
    } catch (err) {
      release?.();
      throw err;
    }
  }

  private async loadFiles(
    resolved: ResolvedSource,
    started: number,
    release: (() => void) | undefined,
  ): Promise<LoadedModelInfo> {
    const options = this.options;
    const files = await readModelFiles(resolved.location, {
      root: resolved.root,
      maxBytes: options.maxBytes ?? DEFAULT_MAX_MODEL_BYTES,
      format: options.format ?? 'auto',
    });
    const meta = resolved.meta ?? files.meta;
    // The shape saved in meta.json only fills unknown dimensions; a configured one must fit.
    const metaShape = meta?.inputShape?.slice(meta.inputShape[0] === null ? 1 : 0);
    let loadedInfo: LoadedModelInfo | undefined;
    const onVerified = (decision: VerificationDecision): void => {
      const info = loadedInfo;
      if (!info) return;
      info.runtime = decision.runtime;
      info.exported = decision.accepted;
      info.maxAbsDiff = decision.maxAbsDiff;
      info.fallbackReason = decision.accepted ? undefined : `ONNX export not used: ${decision.reason}`;
      info.notes.push(`ONNX export ${decision.accepted ? 'used' : 'not used'}: ${decision.reason}`);
      this.emit('verified', info, decision);
    };
    const selection = await createRunner(files, {
      runtime: options.runtime ?? 'auto',
      inputShape: options.inputShape && options.inputShape.length > 0 ? options.inputShape : undefined,
      fallbackInputShape:
        metaShape && metaShape.every((d) => typeof d === 'number' && d > 0)
          ? (metaShape as number[])
          : undefined,
      tolerance: options.tolerance,
      threads: options.threads,
      exporter: options.exporter,
      sample: meta?.sample,
      normalisation: meta?.normalisation,
      verifyMessages: options.verifyMessages,
      onVerified,
    });
    const runner = selection.runner;
    try {
      const warmup = Math.max(0, Math.floor(options.warmup ?? 1));
      const inputs = [...inputsOf(runner)];
      const outputs = [...outputsOf(runner)];
      try {
        for (let i = 0; i < warmup; i++) {
          if (runner instanceof VerifyingRunner) await runner.warmup(zeroFeeds(inputs, 1), 1);
          else if (runner.run) await runner.run(zeroFeeds(inputs, 1), 1);
          else await runner.predict(new Float32Array(sizeOf(runner.inputShape)), 1);
        }
      } catch (err) {
        // Only a model that refused the load probe of zeros gets here; real inputs will do.
        selection.notes.push(
          `no warm-up: the model refuses zeros (${(err as Error).message.split('\n')[0]})`,
        );
      }
      let normalisation: Normalisation | undefined;
      if (meta?.normalisation !== undefined) {
        try {
          normalisation = checkNormalisation(meta.normalisation);
        } catch (err) {
          files.notes.push(`normalisation in meta.json ignored: ${(err as Error).message}`);
        }
      }
      const labels =
        options.labels && options.labels.length > 0 ? options.labels : (meta?.labels as string[] | undefined);
      const info: LoadedModelInfo = {
        name: options.name || resolved.name || path.basename(files.entryPath).replace(/\.(json|onnx)$/i, ''),
        version: resolved.version ?? meta?.version,
        source: resolved.label,
        format: files.format,
        runtime: runner.runtime,
        inputShape: runner.inputShape,
        outputShape: runner.outputShape,
        inputs,
        outputs,
        labels,
        normalisation,
        exported: selection.exported,
        maxAbsDiff: selection.maxAbsDiff,
        fallbackReason: selection.fallbackReason,
        noNative: runner.runtime === 'onnxruntime-web' ? nativeOrtMissing() : undefined,
        streams: streamSettingsFromMeta(meta),
        ...(files.format === 'onnx' && files.tflite ? { tflite: files.tflite } : {}),
        notes: [...files.notes, ...selection.notes],
        bytes: files.bytes,
        loadMs: Math.round(performance.now() - started),
        loadedAt: new Date().toISOString(),
      };
      loadedInfo = info;
      if (this.closed) throw new Error('the model handle closed while loading');
      const previous = this.current;
      this.current = { runner, info, leases: 0, retired: false, release };
      if (previous) {
        previous.retired = true;
        if (previous.leases === 0) await this.disposeLoaded(previous);
      }
      return info;
    } catch (err) {
      await runner.dispose().catch(() => undefined);
      throw err;
    }
  }

  private async disposeLoaded(loaded: Loaded): Promise<void> {
    loaded.release?.();
    try {
      await loaded.runner.dispose();
    } catch (err) {
      this.emit('dispose-failed', err);
    }
  }

  /** Resolves once a first model is loaded (or rejects after `timeoutMs`). */
  async ready(timeoutMs = 60000): Promise<LoadedModelInfo> {
    if (this.current) return this.current.info;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.firstLoad,
      new Promise<void>((_, reject) => {
        timer = setTimeout(
          () =>
            reject(
              this.lastError ??
                new ModelLoadError(`no model loaded after ${timeoutMs} ms`, 'model-not-loaded'),
            ),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
    return (this.current as unknown as Loaded).info;
  }

  /**
   * Takes the serving model for one request; release() when done. The model stays valid until
   * released even if a swap happens meanwhile.
   */
  lease(): ModelLease {
    const loaded = this.current;
    if (!loaded || this.closed) {
      throw this.lastError
        ? new ModelLoadError(
            `no model loaded: ${this.lastError.message}`,
            codeOf(this.lastError, 'model-not-loaded'),
          )
        : new ModelLoadError(
            this.loading ? 'the model is still loading' : 'no model loaded',
            'model-not-loaded',
          );
    }
    loaded.leases++;
    let released = false;
    return {
      runner: loaded.runner,
      info: loaded.info,
      release: () => {
        if (released) return;
        released = true;
        loaded.leases--;
        if (loaded.retired && loaded.leases === 0) void this.disposeLoaded(loaded);
      },
    };
  }

  /** Runs one batch on the serving model. */
  async predict(
    input: Float32Array,
    batchSize: number,
  ): Promise<{ output: Float32Array; info: LoadedModelInfo }> {
    const lease = this.lease();
    try {
      return { output: await lease.runner.predict(input, batchSize), info: lease.info };
    } finally {
      lease.release();
    }
  }

  /** Stops following the store and disposes the model once its running requests finish. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.follower) modelStoreEvents.off('saved', this.follower);
    await this.chain;
    const loaded = this.current;
    this.current = undefined;
    if (loaded) {
      loaded.retired = true;
      if (loaded.leases === 0) await this.disposeLoaded(loaded);
    }
  }
}

/**
 * The model a handle serves, as a ModelRunner for code that takes one (e.g. the anomaly
 * detector's supplied model). Every predict call waits for the first load and leases the model
 * serving at that moment, so a swap takes effect from the next batch and a batch never loses
 * its model halfway. The shapes are those of the model serving now. dispose() does nothing: the
 * model belongs to the handle.
 */
export function handleRunner(handle: ModelHandle): ModelRunner {
  const serving = (): LoadedModelInfo => {
    const info = handle.info;
    if (info) return info;
    throw new ModelLoadError(
      handle.loading ? 'the model is still loading' : 'no model loaded',
      'model-not-loaded',
    );
  };
  return {
    get runtime() {
      return serving().runtime;
    },
    get inputShape() {
      return serving().inputShape;
    },
    get outputShape() {
      return serving().outputShape;
    },
    async predict(input: Float32Array, batchSize: number): Promise<Float32Array> {
      await handle.ready();
      return (await handle.predict(input, batchSize)).output;
    },
    async dispose(): Promise<void> {},
  };
}

/** Keeps the cause's code when an error is rethrown with more context. */
function codeOf(err: Error, fallback: ErrorCode): ErrorCode {
  return err instanceof EdgeAiError ? err.code : fallback;
}
