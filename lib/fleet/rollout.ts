import { EventEmitter } from 'node:events';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { EdgeAiError, FleetError, ModelLoadError } from '../errors';
import { ModelStore, type ModelMeta, type StoredModel } from '../models/store/store';
import type { FleetConnection } from './connection';
import {
  chunkLength,
  decodeManifest,
  encodeManifest,
  manifestDigest,
  splitFiles,
  type FleetManifest,
} from './manifest';
import { keyIdOf, publicKeyOf } from './keys';

/**
 * Signed model roll-out. The publisher sends a store version as retained chunks, then its
 * retained signed manifest; a device following the model checks the signature, fetches the
 * chunks, checks every file's hash, and saves the files as a new version of its own store (an
 * edge-model following the store swaps to it without dropping messages). A device that was
 * away gets the retained manifest again when it reconnects and catches up.
 */

export const DEFAULT_CHUNK_BYTES = 64 * 1024;

/** What a device's store meta.json records about a version that came from the fleet. */
export interface FleetOrigin {
  fleet: string;
  version: number;
  manifest: string;
  keyId: string;
  published: string;
}

export interface PublishOptions {
  privateKey: KeyObject;
  /** Store version to publish; the newest when omitted. */
  version?: number;
  chunkBytes?: number;
  /**
   * Clear the chunks of the version this connection published before (default true); a publisher
   * that keeps track of its versions across restarts (the aggregator) clears them itself.
   */
  clearSuperseded?: boolean;
}

export interface PublishedModel {
  manifest: FleetManifest;
  bytes: number;
  ms: number;
}

/** Versions each connection published per model, so the chunks of a superseded one are cleared. */
const lastPublished = new WeakMap<FleetConnection, Map<string, FleetManifest>>();

/**
 * How long a publisher waits for the broker's retained manifest of a model it has not published
 * since it started (e.g. after a Node-RED restart); brokers send it right after subscribing.
 */
export const RETAINED_MANIFEST_WAIT_MS = 500;

/** The manifest the broker retains for `name`, if one signed with this fleet's key is there. */
async function retainedManifest(
  connection: FleetConnection,
  name: string,
  publicKey: KeyObject,
): Promise<FleetManifest | undefined> {
  let found: FleetManifest | undefined;
  let arrived: () => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const wait = new Promise<void>((resolve) => {
    arrived = resolve;
    timer = setTimeout(resolve, RETAINED_MANIFEST_WAIT_MS);
  });
  const unsubscribe = await connection.subscribe(
    connection.topics.manifest(name),
    (_topic, payload, retained) => {
      if (found || !retained || payload.length === 0) return;
      try {
        const options = {
          name,
          fleet: connection.topics.fleet,
          publicKey,
          maxBytes: Number.MAX_SAFE_INTEGER,
        };
        found = decodeManifest(payload, options);
        arrived();
      } catch {
        // Not ours to clear: a manifest this key did not sign says nothing about our chunks.
      }
    },
  );
  try {
    await wait;
  } finally {
    clearTimeout(timer);
    await unsubscribe();
  }
  return found;
}

export async function publishModel(
  connection: FleetConnection,
  store: ModelStore,
  name: string,
  options: PublishOptions,
): Promise<PublishedModel> {
  const started = performance.now();
  ModelStore.checkName(name);
  const stored = await store.get(name, options.version);
  if (!stored) {
    throw new ModelLoadError(
      options.version
        ? `model ${name} has no version ${options.version} in the store`
        : `no model named ${name} in the store`,
      'model-not-found',
      { location: `store:${name}` },
    );
  }
  await store.verify(stored);
  const chunkSize = Math.max(1, Math.floor(options.chunkBytes ?? DEFAULT_CHUNK_BYTES));
  const files = [...stored.meta.files];
  const bundle = Buffer.concat(
    await Promise.all(files.map((f) => fs.readFile(path.join(stored.dir, f.path)))),
  );
  const { name: _n, version: _v, files: _f, created: _c, format, entry, ...info } = stored.meta;
  void _n;
  void _v;
  void _f;
  void _c;
  delete (info as Record<string, unknown>).fleet;
  const manifest: FleetManifest = {
    fleet: connection.topics.fleet,
    name,
    version: stored.meta.version,
    format,
    entry,
    files,
    totalBytes: bundle.length,
    chunkSize,
    chunks: Math.ceil(bundle.length / chunkSize),
    info,
    published: new Date().toISOString(),
    keyId: keyIdOf(publicKeyOf(options.privateKey)),
  };
  const mine = lastPublished.get(connection) ?? new Map<string, FleetManifest>();
  lastPublished.set(connection, mine);
  const clear = options.clearSuperseded !== false;
  // After a restart the version to supersede is the one the broker still retains.
  const previous =
    mine.get(name) ??
    (clear ? await retainedManifest(connection, name, publicKeyOf(options.privateKey)) : undefined);
  const sends: Promise<void>[] = [];
  for (let i = 0; i < manifest.chunks; i++) {
    const data = bundle.subarray(i * chunkSize, (i + 1) * chunkSize);
    sends.push(
      connection.publish(connection.topics.chunk(name, manifest.version, i), data, { retain: true }),
    );
  }
  await Promise.all(sends);
  await connection.publish(connection.topics.manifest(name), encodeManifest(manifest, options.privateKey), {
    retain: true,
  });
  mine.set(name, manifest);
  if (previous && previous.version !== manifest.version && clear) await clearChunks(connection, previous);
  return { manifest, bytes: bundle.length, ms: performance.now() - started };
}

/** Removes the retained chunks of a superseded version from the broker (an empty retained message). */
export async function clearChunks(
  connection: FleetConnection,
  manifest: Pick<FleetManifest, 'name' | 'version' | 'chunks'>,
): Promise<void> {
  const clears: Promise<void>[] = [];
  for (let i = 0; i < manifest.chunks; i++) {
    clears.push(
      connection.publish(connection.topics.chunk(manifest.name, manifest.version, i), Buffer.alloc(0), {
        retain: true,
      }),
    );
  }
  await Promise.all(clears);
}

export interface FollowOptions {
  name: string;
  store: ModelStore;
  publicKey: KeyObject;
  /** Largest model accepted, in bytes. */
  maxBytes: number;
  /** A fetch with no new chunk for this long is refused as truncated. Default 30 s. */
  stallMs?: number;
}

interface Fetch {
  manifest: FleetManifest;
  digest: string;
  chunks: (Buffer | undefined)[];
  received: number;
  timer?: NodeJS.Timeout;
  unsubscribe?: () => Promise<void>;
  done: boolean;
}

/**
 * Follows one model of the fleet for this device. Events:
 *   'fetching' (manifest)            a new signed version is being fetched
 *   'stored'   (StoredModel, manifest) it passed every check and is now a store version
 *   'current'  (StoredModel, manifest) the store already holds the announced version
 *   'refused'  (EdgeAiError, manifest?) a version was refused; nothing was stored
 *   'failed'   (Error)               saving a checked version failed (e.g. the disk is full)
 */
export class FleetModelFollower extends EventEmitter {
  private fetch: Fetch | undefined;
  private unsubscribe: (() => Promise<void>) | undefined;
  /** Manifests refused for what they are (signature, contents): not fetched again. */
  private readonly refused = new Set<string>();
  private closed = false;
  private queue: Promise<void> = Promise.resolve();

  constructor(
    readonly connection: FleetConnection,
    readonly options: FollowOptions,
  ) {
    super();
    ModelStore.checkName(options.name);
  }

  async start(): Promise<void> {
    this.unsubscribe = await this.connection.subscribe(
      this.connection.topics.manifest(this.options.name),
      (_t, payload) => {
        if (payload.length === 0) return; // cleared
        this.queue = this.queue
          .then(() => this.onManifest(payload))
          .catch((err: unknown) => {
            this.emit('failed', err);
          });
      },
    );
  }

  /** The fleet origin of the newest store version that came from the fleet, if any. */
  async newestFromFleet(): Promise<{ stored: StoredModel; origin: FleetOrigin } | undefined> {
    const { store, name } = this.options;
    const versions = await store.versions(name);
    for (const v of versions.reverse()) {
      const stored = await store.get(name, v).catch(() => undefined);
      const origin = (stored?.meta as (ModelMeta & { fleet?: FleetOrigin }) | undefined)?.fleet;
      if (stored && origin && origin.fleet === this.connection.topics.fleet) return { stored, origin };
    }
    return undefined;
  }

  private refuse(err: EdgeAiError, manifest?: FleetManifest, digest?: string, permanent = true): void {
    if (digest && permanent) this.refused.add(digest);
    this.emit('refused', err, manifest);
  }

  private async onManifest(payload: Buffer): Promise<void> {
    if (this.closed) return;
    const digest = manifestDigest(payload);
    if (this.refused.has(digest) || (this.fetch?.digest === digest && !this.fetch.done)) return;
    let manifest: FleetManifest;
    try {
      manifest = decodeManifest(payload, {
        name: this.options.name,
        fleet: this.connection.topics.fleet,
        publicKey: this.options.publicKey,
        maxBytes: this.options.maxBytes,
      });
    } catch (err) {
      this.refuse(err as EdgeAiError, undefined, digest);
      return;
    }
    const have = await this.newestFromFleet();
    if (have && have.origin.version >= manifest.version) {
      this.emit('current', have.stored, manifest);
      return;
    }
    if (this.fetch && !this.fetch.done) await this.abandon(this.fetch);
    const fetch: Fetch = { manifest, digest, chunks: new Array(manifest.chunks), received: 0, done: false };
    this.fetch = fetch;
    this.emit('fetching', manifest);
    if (manifest.chunks === 0) {
      await this.finish(fetch);
      return;
    }
    this.arm(fetch);
    fetch.unsubscribe = await this.connection.subscribe(
      this.connection.topics.chunks(manifest.name, manifest.version),
      (topic, data) => this.onChunk(fetch, topic, data),
    );
  }

  /** (Re)starts the stall timer: no chunk for stallMs refuses the version as truncated. */
  private arm(fetch: Fetch): void {
    if (fetch.timer) clearTimeout(fetch.timer);
    fetch.timer = setTimeout(() => {
      if (fetch.done) return;
      const { name, version, chunks } = fetch.manifest;
      void this.abandon(fetch);
      this.refuse(
        new FleetError(
          'fleet-truncated',
          `fleet model ${name} v${version}: ${fetch.received} of ${chunks} chunks arrived, then nothing for ${this.stallMs} ms, refused`,
          { name, version },
        ),
        fetch.manifest,
        fetch.digest,
        false,
      );
    }, this.stallMs);
    fetch.timer.unref?.();
  }

  private get stallMs(): number {
    return this.options.stallMs ?? 30000;
  }

  private onChunk(fetch: Fetch, topic: string, data: Buffer): void {
    if (fetch.done || data.length === 0) return;
    const index = Number(topic.slice(topic.lastIndexOf('/') + 1));
    const { manifest } = fetch;
    if (!Number.isSafeInteger(index) || index < 0 || index >= manifest.chunks || fetch.chunks[index]) return;
    const expected = chunkLength(manifest, index);
    if (data.length !== expected) {
      void this.abandon(fetch);
      const code = data.length < expected ? 'fleet-truncated' : 'fleet-tampered';
      this.refuse(
        new FleetError(
          code,
          `fleet model ${manifest.name} v${manifest.version}: chunk ${index} is ${data.length} bytes, the manifest says ${expected}, refused`,
          { name: manifest.name, version: manifest.version },
        ),
        manifest,
        fetch.digest,
        code === 'fleet-tampered',
      );
      return;
    }
    fetch.chunks[index] = Buffer.from(data);
    fetch.received++;
    this.arm(fetch);
    if (fetch.received === manifest.chunks) {
      this.queue = this.queue
        .then(() => this.finish(fetch))
        .catch((err: unknown) => {
          this.emit('failed', err);
        });
    }
  }

  private async abandon(fetch: Fetch): Promise<void> {
    fetch.done = true;
    if (fetch.timer) clearTimeout(fetch.timer);
    fetch.chunks = [];
    await fetch.unsubscribe?.().catch(() => undefined);
  }

  private async finish(fetch: Fetch): Promise<void> {
    if (fetch.done) return;
    const bundle = Buffer.concat(fetch.chunks as Buffer[]);
    await this.abandon(fetch);
    const { manifest } = fetch;
    let files: Map<string, Buffer>;
    try {
      files = splitFiles(manifest, bundle);
    } catch (err) {
      this.refuse(err as EdgeAiError, manifest, fetch.digest, (err as EdgeAiError).code === 'fleet-tampered');
      return;
    }
    if (this.closed) return;
    const origin: FleetOrigin = {
      fleet: manifest.fleet,
      version: manifest.version,
      manifest: fetch.digest,
      keyId: manifest.keyId,
      published: manifest.published,
    };
    const stored = await this.options.store.save(
      manifest.name,
      { ...manifest.info, format: manifest.format, entry: manifest.entry, fleet: origin },
      async (dir) => {
        for (const [file, data] of files) {
          const target = path.join(dir, file);
          await fs.mkdir(path.dirname(target), { recursive: true });
          await fs.writeFile(target, data);
        }
      },
    );
    this.emit('stored', stored, manifest);
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.fetch) await this.abandon(this.fetch);
    await this.unsubscribe?.().catch(() => undefined);
  }
}

/** What a device reports, retained on its model topic. */
export interface DeviceModelReport {
  device: string;
  name: string;
  /** Fleet version running (undefined for a model that did not come from the fleet). */
  version?: number;
  storeVersion?: number;
  runtime?: string;
  /** The last refusal, if the newest announced version was refused. */
  refused?: { version?: number; code: string; message: string; at: string };
  at: string;
}

export async function reportModel(
  connection: FleetConnection,
  report: Omit<DeviceModelReport, 'device' | 'at'>,
): Promise<void> {
  const full: DeviceModelReport = { device: connection.deviceId, ...report, at: new Date().toISOString() };
  await connection.publish(
    connection.topics.deviceModel(connection.deviceId, report.name),
    JSON.stringify(full),
    {
      retain: true,
    },
  );
}

/** The fleet version recorded in a store version's meta.json, if it came from the fleet. */
export function fleetVersionOf(meta: ModelMeta | undefined): number | undefined {
  const origin = (meta as (ModelMeta & { fleet?: FleetOrigin }) | undefined)?.fleet;
  return typeof origin?.version === 'number' ? origin.version : undefined;
}

export { FleetError };
