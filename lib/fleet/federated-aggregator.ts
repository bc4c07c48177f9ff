import { EventEmitter } from 'node:events';
import type { KeyObject } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { EdgeAiError, FleetError } from '../errors';
import { writeFileAtomic } from '../util/atomic';
import { StateFile } from '../util/state-file';
import { ModelStore, type ModelInfo, type StoredModel } from '../models/store/store';
import type { FleetConnection } from './connection';
import {
  FederatedTopics,
  WeightedSum,
  decodeUpdate,
  readStoredWeights,
  readUpdateHeader,
  writeLayersModel,
  type ModelWeights,
} from './federated';
import { clearChunks, publishModel } from './rollout';
import { fileSaveHandler, tf } from '../models/runtime/tfjs';
import {
  buildModel,
  modelShapes,
  taskOf,
  type ArchitectureName,
  type ArchitectureOptions,
} from '../train/architectures';

/**
 * The aggregator of federated rounds (FedAvg). Round r trains from global version r (a version
 * of `store`, rolled out signed with the roll-out machinery); it closes when `minReports`
 * updates for version r arrived (or every selected device reported), or when its deadline passed
 * with at least one; the sample-weighted mean of the updates, added to version r, is saved as
 * the next version, signed and published, and the next round starts from it.
 *
 * An update for another round (late) or a second one from a device (duplicate) is ignored; one
 * that is malformed, mis-shaped or holds NaN/Inf is refused, naming why. The round's state (and
 * every accepted update, as received) is on disk, written atomically, so a restarted aggregator
 * resumes the round where it was.
 *
 * The server step: plain FedAvg adds the mean update to the global weights. With a server
 * momentum beta (FedAvgM, Hsu et al. 2019) the aggregator keeps a velocity v <- beta v + mean and
 * adds learning rate x v instead; the velocity is kept on disk with the round's state
 * (`<stateFile without .json>-momentum.bin`, written atomically when a round closes).
 *
 * Events: 'round' (RoundInfo) a round started or resumed; 'accepted' (device, header);
 * 'ignored' (device, reason); 'refused' (FleetError, device); 'closed' (RoundSummary);
 * 'extended' (RoundInfo) the deadline passed with no update; 'cleared' (versions) the retained
 * chunks of older versions were removed from the broker; 'failed' (Error).
 */

/**
 * The client learning-rate decay per round an aggregator node uses unless set: none, as on the
 * validation digits of the federated MNIST benchmark 0.95 and 0.97 per round did not beat a
 * constant learning rate (bench/fleet-fedavg.ts, README).
 */
export const DEFAULT_LEARNING_RATE_DECAY = 1;

export interface AggregatorOptions {
  name: string;
  /** Where the global versions live (the aggregator's own store). */
  store: ModelStore;
  /** The round's state file; accepted updates are kept in `<stateFile without .json>-updates/`. */
  stateFile: string;
  privateKey: KeyObject;
  /** Close the round when this many updates arrived. */
  minReports: number;
  /** Close the round this long after it started, if at least one update arrived. */
  roundMs: number;
  /**
   * Fraction of the devices online asked to train each round (FedAvg's C); 1 asks every device.
   * The selected device ids travel in the signed manifest.
   */
  fraction?: number;
  chunkBytes?: number;
  /**
   * Server momentum beta in [0, 1) (FedAvgM, Hsu et al. 2019): the global step is the velocity
   * v <- beta v + mean update. 0 (default) is plain FedAvg.
   */
  serverMomentum?: number;
  /** Server learning rate: the global step is this x the (momentum of the) mean update; default 1. */
  serverLearningRate?: number;
  /**
   * Client learning-rate decay per round, in (0, 1]: the devices of the round after k closed
   * rounds train with their own learning rate x decay^k (announced in the signed manifest, so
   * devices need no clock). 1 (default here) keeps the devices' learning rate.
   */
  learningRateDecay?: number;
  /** Random numbers in [0, 1) for the selection (tests and benchmarks seed it). */
  random?: () => number;
}

export interface RoundInfo {
  name: string;
  round: number;
  startedAt: number;
  deadlineAt: number;
  /** Devices asked to train; undefined = every device. */
  selected?: string[];
  reports: number;
}

export interface RoundSummary {
  name: string;
  /** The version the round trained from. */
  round: number;
  /** The new global version. */
  version: number;
  reports: number;
  devices: string[];
  samples: number;
  closedBy: 'reports' | 'deadline' | 'command';
  ignored: number;
  refused: number;
  /** Sample-weighted mean of the metrics the devices reported (e.g. accuracy), if any. */
  metrics: Record<string, number>;
  ms: number;
  /** The factor on the devices' learning rate the new version announces (1: no decay). */
  learningRateScale: number;
}

interface Report {
  device: string;
  samples: number;
  file: string;
  at: number;
  metrics?: Record<string, number>;
}

interface RoundState {
  name: string;
  round: number;
  startedAt: number;
  deadlineAt: number;
  selected?: string[];
  reports: Report[];
  ignored: number;
  refused: number;
  /**
   * The versions this aggregator published whose retained chunks are still on the broker: the
   * current one, and an older one until it is cleared (also after a restart).
   */
  published?: { version: number; chunks: number }[];
}

/** meta.federated of a global version: the round that made it and the devices asked to train on it. */
export interface FederatedMeta {
  selected?: string[];
  previous?: number;
  reports?: number;
  samples?: number;
  /** The server step, when not plain FedAvg. */
  server?: { momentum: number; learningRate: number };
  /** Rounds closed from the first global version to this one (0 or absent: the first). */
  step?: number;
  /**
   * The factor on the devices' own learning rate for the round that trains from this version
   * (learning-rate decay over rounds); absent: 1.
   */
  learningRateScale?: number;
}

export class FederatedAggregator extends EventEmitter {
  readonly topics: FederatedTopics;
  private state: RoundState | undefined;
  private global: { stored: StoredModel; weights: ModelWeights } | undefined;
  private sum: WeightedSum | undefined;
  private readonly stateFile: StateFile;
  private readonly updatesDir: string;
  private readonly velocityFile: string;
  private readonly online = new Set<string>();
  private timer: NodeJS.Timeout | undefined;
  private queue: Promise<void> = Promise.resolve();
  private unsubscribers: (() => Promise<void>)[] = [];
  private closed = false;

  constructor(
    readonly connection: FleetConnection,
    readonly options: AggregatorOptions,
  ) {
    super();
    ModelStore.checkName(options.name);
    if (!(Number.isInteger(options.minReports) && options.minReports >= 1)) {
      throw new FleetError(
        'setting-invalid',
        `reports to close a round must be a whole number >= 1, not ${options.minReports}`,
      );
    }
    if (!(options.roundMs > 0))
      throw new FleetError('setting-invalid', `the round deadline must be above 0 ms`);
    const fraction = options.fraction ?? 1;
    if (!(fraction > 0 && fraction <= 1)) {
      throw new FleetError(
        'setting-invalid',
        `the fraction of devices per round must be in (0, 1], not ${fraction}`,
      );
    }
    const momentum = options.serverMomentum ?? 0;
    if (!(momentum >= 0 && momentum < 1)) {
      throw new FleetError('setting-invalid', `the server momentum must be in [0, 1), not ${momentum}`);
    }
    const rate = options.serverLearningRate ?? 1;
    if (!(rate > 0 && Number.isFinite(rate))) {
      throw new FleetError('setting-invalid', `the server learning rate must be above 0, not ${rate}`);
    }
    const decay = options.learningRateDecay ?? 1;
    if (!(decay > 0 && decay <= 1)) {
      throw new FleetError(
        'setting-invalid',
        `the learning-rate decay per round must be in (0, 1], not ${decay}`,
      );
    }
    this.topics = new FederatedTopics(connection.topics, options.name);
    this.stateFile = new StateFile(options.stateFile, () => this.state, {
      delayMs: 0,
      onError: (err) => this.emit('failed', err),
    });
    this.updatesDir = `${options.stateFile.replace(/\.json$/, '')}-updates`;
    this.velocityFile = `${options.stateFile.replace(/\.json$/, '')}-momentum.bin`;
  }

  /** The round in progress. */
  get info(): RoundInfo | undefined {
    const s = this.state;
    return (
      s && {
        name: s.name,
        round: s.round,
        startedAt: s.startedAt,
        deadlineAt: s.deadlineAt,
        selected: s.selected,
        reports: s.reports.length,
      }
    );
  }

  /** Devices seen online (their retained online topic says "true"). */
  get devicesOnline(): number {
    return this.online.size;
  }

  /**
   * Starts: resumes the saved round when the store's newest version is still its global
   * version, else starts a round from the newest version (publishing it). The store must hold a
   * version of the model (see saveInitialModel).
   */
  async start(): Promise<void> {
    const newest = await this.options.store.get(this.options.name);
    if (!newest) {
      throw new FleetError(
        'setting-invalid',
        `the aggregator's store holds no version of ${this.options.name} to start from`,
      );
    }
    this.unsubscribers.push(
      await this.connection.subscribe(`${this.connection.topics.base}/devices/+/online`, (topic, payload) => {
        const device = topic.split('/').slice(-2)[0];
        if (device === this.connection.deviceId) return;
        if (payload.toString() === 'true') this.online.add(device);
        else this.online.delete(device);
      }),
    );
    const saved = this.readState();
    if (saved && saved.name === this.options.name && saved.round === newest.meta.version) {
      await this.resume(saved, newest);
    } else {
      await this.begin(newest);
    }
    this.unsubscribers.push(
      await this.connection.subscribe(this.topics.updates(), (topic, payload) => {
        const device = topic.slice(topic.lastIndexOf('/') + 1);
        this.enqueue(() => this.onUpdate(device, payload));
      }),
    );
  }

  private readState(): RoundState | undefined {
    try {
      const s = this.stateFile.readSync() as RoundState | undefined;
      return s && typeof s.round === 'number' && Array.isArray(s.reports) ? s : undefined;
    } catch (err) {
      this.emit('failed', err);
      return undefined;
    }
  }

  private enqueue(work: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(work).catch((err: unknown) => {
      this.emit('failed', err);
    });
    return this.queue;
  }

  private async loadGlobal(stored: StoredModel): Promise<void> {
    await this.options.store.verify(stored);
    const weights = await readStoredWeights(stored);
    this.global = { stored, weights };
    this.sum = new WeightedSum(weights.specs);
  }

  private async resume(saved: RoundState, stored: StoredModel): Promise<void> {
    await this.loadGlobal(stored);
    this.state = saved;
    const kept: Report[] = [];
    for (const report of saved.reports) {
      try {
        const payload = await fs.readFile(path.join(this.updatesDir, report.file));
        const { delta } = decodeUpdate(payload, this.global!.weights.specs);
        this.sum!.add(delta, report.samples);
        kept.push(report);
      } catch (err) {
        this.emit('failed', err);
      }
    }
    saved.reports = kept;
    this.emit('round', this.info);
    await this.clearSuperseded();
    this.arm();
    if (this.enough()) await this.closeRound('reports');
  }

  /** Starts the round of global version `stored`: publishes it and arms the deadline. */
  private async begin(stored: StoredModel): Promise<void> {
    await this.loadGlobal(stored);
    const fed = (stored.meta as { federated?: FederatedMeta }).federated;
    const prior = this.state ?? this.readState();
    const published = prior?.name === this.options.name ? (prior.published ?? []) : [];
    const now = Date.now();
    this.state = {
      name: this.options.name,
      round: stored.meta.version,
      startedAt: now,
      deadlineAt: now + this.options.roundMs,
      selected: Array.isArray(fed?.selected) ? fed.selected : undefined,
      reports: [],
      ignored: 0,
      refused: 0,
      published,
    };
    await this.clearUpdates();
    this.stateFile.changed();
    await this.stateFile.flush();
    const { manifest } = await publishModel(this.connection, this.options.store, this.options.name, {
      privateKey: this.options.privateKey,
      version: stored.meta.version,
      chunkBytes: this.options.chunkBytes,
      clearSuperseded: false,
    });
    this.state.published = [
      ...published.filter((p) => p.version !== manifest.version),
      { version: manifest.version, chunks: manifest.chunks },
    ];
    this.stateFile.changed();
    await this.stateFile.flush();
    this.emit('round', this.info);
    await this.clearSuperseded();
    this.arm();
  }

  /**
   * Clears the retained chunks of the versions published before the current one (an empty
   * retained message each), so the broker keeps only the current global version.
   */
  private async clearSuperseded(): Promise<void> {
    const s = this.state!;
    const old = (s.published ?? []).filter((p) => p.version !== s.round);
    if (old.length === 0) return;
    try {
      for (const p of old) await clearChunks(this.connection, { name: this.options.name, ...p });
      s.published = (s.published ?? []).filter((p) => p.version === s.round);
      this.stateFile.changed();
      await this.stateFile.flush();
      this.emit(
        'cleared',
        old.map((p) => p.version),
      );
    } catch (err) {
      // Kept in the list: tried again when the next version is out.
      this.emit('failed', err);
    }
  }

  private async clearUpdates(): Promise<void> {
    await fs.rm(this.updatesDir, { recursive: true, force: true });
    await fs.mkdir(this.updatesDir, { recursive: true });
  }

  private arm(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.closed || !this.state) return;
    const round = this.state.round;
    this.timer = setTimeout(
      () => {
        void this.enqueue(async () => {
          const s = this.state;
          if (!s || s.round !== round || this.closed) return;
          if (s.reports.length > 0) {
            await this.closeRound('deadline');
            return;
          }
          s.deadlineAt = Date.now() + this.options.roundMs;
          this.stateFile.changed();
          await this.stateFile.flush();
          this.emit('extended', this.info);
          this.arm();
        });
      },
      Math.max(0, this.state.deadlineAt - Date.now()),
    );
  }

  private enough(): boolean {
    const s = this.state!;
    const wanted = Math.min(this.options.minReports, s.selected?.length ?? Infinity);
    return s.reports.length >= wanted;
  }

  private async onUpdate(device: string, payload: Buffer): Promise<void> {
    const s = this.state;
    if (!s || this.closed || payload.length === 0) return;
    let round: unknown;
    try {
      round = readUpdateHeader(payload).header.round;
    } catch (err) {
      s.refused++;
      this.emit('refused', err, device);
      return;
    }
    if (round !== s.round) {
      s.ignored++;
      this.emit('ignored', device, `late: for round ${String(round)}, the round is ${s.round}`);
      return;
    }
    if (s.reports.some((r) => r.device === device)) {
      s.ignored++;
      this.emit('ignored', device, `duplicate: ${device} already reported for round ${s.round}`);
      return;
    }
    if (s.selected && !s.selected.includes(device)) {
      s.ignored++;
      this.emit('ignored', device, `not selected for round ${s.round}`);
      return;
    }
    let decoded;
    try {
      decoded = decodeUpdate(payload, this.global!.weights.specs);
      if (decoded.header.device !== device) {
        throw new FleetError(
          'fleet-update-invalid',
          `update on ${device}'s topic says it is from ${String(decoded.header.device)}`,
          {
            device,
            round: s.round,
          },
        );
      }
    } catch (err) {
      s.refused++;
      this.emit(
        'refused',
        err instanceof EdgeAiError ? err : new FleetError('fleet-update-invalid', String(err)),
        device,
      );
      return;
    }
    const file = `r${s.round}-${device}.bin`;
    await writeFileAtomic(path.join(this.updatesDir, file), payload);
    this.sum!.add(decoded.delta, decoded.header.samples);
    const metrics =
      decoded.header.metrics && typeof decoded.header.metrics === 'object'
        ? decoded.header.metrics
        : undefined;
    s.reports.push({ device, samples: decoded.header.samples, file, at: Date.now(), metrics });
    this.stateFile.changed();
    await this.stateFile.flush();
    this.emit('accepted', device, decoded.header);
    if (this.enough()) await this.closeRound('reports');
  }

  /** Moves the deadline of the round in progress to `ms` from now. */
  deadlineIn(ms: number): void {
    if (!this.state || this.closed) return;
    this.state.deadlineAt = Date.now() + ms;
    this.stateFile.changed();
    this.arm();
  }

  /** Closes the round now (with at least one update); resolves with its summary, else undefined. */
  closeNow(): Promise<RoundSummary | undefined> {
    let summary: RoundSummary | undefined;
    return this.enqueue(async () => {
      if (this.state && this.state.reports.length > 0) summary = await this.closeRound('command');
    }).then(() => summary);
  }

  private selectNext(): string[] | undefined {
    const fraction = this.options.fraction ?? 1;
    if (fraction >= 1 || this.online.size === 0) return undefined;
    const random = this.options.random ?? Math.random;
    const pool = [...this.online].sort();
    const count = Math.max(1, Math.round(fraction * pool.length));
    for (let i = pool.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [pool[i], pool[j]] = [pool[j], pool[i]];
    }
    return pool.slice(0, count).sort();
  }

  private async closeRound(closedBy: RoundSummary['closedBy']): Promise<RoundSummary> {
    const s = this.state!;
    const { stored, weights } = this.global!;
    if (this.timer) clearTimeout(this.timer);
    const { averaged, velocity } = await this.serverStep(s.round, weights);
    const metrics: Record<string, number> = {};
    const weightOf: Record<string, number> = {};
    for (const r of s.reports) {
      for (const [k, v] of Object.entries(r.metrics ?? {})) {
        if (typeof v !== 'number' || !Number.isFinite(v)) continue;
        metrics[k] = (metrics[k] ?? 0) + v * r.samples;
        weightOf[k] = (weightOf[k] ?? 0) + r.samples;
      }
    }
    for (const k of Object.keys(metrics)) metrics[k] /= weightOf[k];
    const template = await fs.readFile(path.join(stored.dir, stored.meta.entry), 'utf8');
    const { name: _n, version: _v, files: _f, created: _c, ...info } = stored.meta;
    void _n;
    void _v;
    void _f;
    void _c;
    const selected = this.selectNext();
    const samples = this.sum!.samples;
    const previous = (stored.meta as { federated?: FederatedMeta }).federated;
    const step = (typeof previous?.step === 'number' && previous.step >= 0 ? previous.step : 0) + 1;
    const decay = this.options.learningRateDecay ?? 1;
    const learningRateScale = decay === 1 ? undefined : Math.pow(decay, step);
    const next = await this.options.store.save(
      this.options.name,
      {
        ...(info as ModelInfo),
        format: 'tfjs-layers',
        entry: 'model.json',
        source: 'federated',
        metrics: Object.keys(metrics).length > 0 ? metrics : undefined,
        federated: {
          previous: s.round,
          reports: s.reports.length,
          samples,
          selected,
          server: this.server,
          step,
          learningRateScale,
        } satisfies FederatedMeta,
      } as ModelInfo,
      (dir) => writeLayersModel(dir, template, averaged),
    );
    if (velocity) await this.writeVelocity(next.meta.version, velocity);
    const summary: RoundSummary = {
      name: s.name,
      round: s.round,
      version: next.meta.version,
      reports: s.reports.length,
      devices: s.reports.map((r) => r.device),
      samples,
      closedBy,
      ignored: s.ignored,
      refused: s.refused,
      metrics,
      ms: Date.now() - s.startedAt,
      learningRateScale: learningRateScale ?? 1,
    };
    await this.connection
      .publish(this.topics.round(), JSON.stringify({ ...summary, at: new Date().toISOString() }), {
        retain: true,
      })
      .catch((err: unknown) => this.emit('failed', err));
    this.emit('closed', summary);
    await this.begin(next);
    return summary;
  }

  /** The server step's settings, undefined for plain FedAvg. */
  private get server(): FederatedMeta['server'] {
    const momentum = this.options.serverMomentum ?? 0;
    const learningRate = this.options.serverLearningRate ?? 1;
    return momentum === 0 && learningRate === 1 ? undefined : { momentum, learningRate };
  }

  /**
   * The next global weights: plain FedAvg (global + mean update, exactly as WeightedSum.apply),
   * or global + learning rate x velocity, with velocity = momentum x the previous round's
   * velocity + mean update (FedAvgM); the new velocity is returned to be kept.
   */
  private async serverStep(
    round: number,
    global: ModelWeights,
  ): Promise<{ averaged: ModelWeights; velocity?: Float64Array[] }> {
    const server = this.server;
    if (!server) return { averaged: this.sum!.apply(global) };
    const mean = this.sum!.mean();
    const previous = server.momentum > 0 ? await this.readVelocity(round, mean) : undefined;
    const velocity = previous
      ? mean.map((m, k) => m.map((v, i) => server.momentum * previous[k][i] + v))
      : mean;
    const values = global.values.map((g, k) => {
      const v = velocity[k];
      const out = new Float32Array(g.length);
      for (let i = 0; i < g.length; i++) out[i] = g[i] + server.learningRate * v[i];
      return out;
    });
    return {
      averaged: { specs: global.specs, values },
      velocity: server.momentum > 0 ? velocity : undefined,
    };
  }

  /**
   * The velocity kept when global version `version` was made; undefined (a fresh start at zero)
   * when there is none for that version (the first round, or a crash between saving a version
   * and its velocity).
   */
  private async readVelocity(version: number, like: Float64Array[]): Promise<Float64Array[] | undefined> {
    let data: Buffer;
    try {
      data = await fs.readFile(this.velocityFile);
    } catch {
      return undefined;
    }
    try {
      const length = data.readUInt32LE(0);
      const header = JSON.parse(data.subarray(4, 4 + length).toString('utf8')) as {
        name?: string;
        version?: number;
        sizes?: number[];
      };
      const sizes = like.map((m) => m.length);
      if (header.name !== this.options.name || header.version !== version) return undefined;
      if (JSON.stringify(header.sizes) !== JSON.stringify(sizes)) return undefined;
      let offset = 4 + length;
      if (data.length !== offset + sizes.reduce((a, n) => a + n * 8, 0)) {
        throw new FleetError('setting-invalid', `${this.velocityFile} is cut short: momentum restarts at 0`);
      }
      return sizes.map((n) => {
        const out = new Float64Array(n);
        Buffer.from(out.buffer).set(data.subarray(offset, offset + n * 8));
        offset += n * 8;
        return out;
      });
    } catch (err) {
      this.emit('failed', err);
      return undefined;
    }
  }

  private async writeVelocity(version: number, velocity: Float64Array[]): Promise<void> {
    const header = Buffer.from(
      JSON.stringify({ name: this.options.name, version, sizes: velocity.map((v) => v.length) }),
    );
    const length = Buffer.alloc(4);
    length.writeUInt32LE(header.length, 0);
    await writeFileAtomic(
      this.velocityFile,
      Buffer.concat([
        length,
        header,
        ...velocity.map((v) => Buffer.from(v.buffer, v.byteOffset, v.byteLength)),
      ]),
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    await this.queue;
    for (const off of this.unsubscribers.splice(0)) await off().catch(() => undefined);
    await this.stateFile.close();
  }
}

/** The global versions' own store of an aggregator keeping its state in `stateDir`. */
export function aggregatorStore(stateDir: string): ModelStore {
  return new ModelStore(path.join(stateDir, 'models'));
}

export interface InitialModelOptions {
  architecture: ArchitectureName;
  inputShape: number[];
  /** Class names (classification) — their order is the fleet's. */
  labels?: string[];
  /** Outputs of a regression model (ignored with labels). */
  outputSize?: number;
  sizes?: Omit<ArchitectureOptions, 'inputShape' | 'outputSize' | 'seed'>;
  seed?: number;
}

/** Saves a freshly initialised model as the first global version (round 1 trains from it). */
export async function saveInitialModel(
  store: ModelStore,
  name: string,
  options: InitialModelOptions,
): Promise<StoredModel> {
  const outputSize = options.labels ? options.labels.length : (options.outputSize ?? 1);
  await tf.ready();
  const model = buildModel(options.architecture, {
    ...options.sizes,
    inputShape: options.inputShape,
    outputSize,
    seed: options.seed ?? 1,
  });
  try {
    const task = taskOf(options.architecture);
    const shapes = modelShapes(model);
    return await store.save(
      name,
      {
        format: 'tfjs-layers',
        entry: 'model.json',
        task,
        inputShape: shapes.inputShape,
        outputShape: shapes.outputShape,
        labels: task === 'classification' ? options.labels : undefined,
        source: 'federated',
        training: { architecture: options.architecture },
      } as ModelInfo,
      async (dir) => {
        await model.save(fileSaveHandler(dir));
      },
    );
  } finally {
    model.dispose();
  }
}
