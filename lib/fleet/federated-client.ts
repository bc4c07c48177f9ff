import { EventEmitter } from 'node:events';
import type { KeyObject } from 'node:crypto';
import type { EdgeAiError } from '../errors';
import { FleetError } from '../errors';
import type { ModelStore, StoredModel } from '../models/store/store';
import type { FleetConnection } from './connection';
import {
  FederatedTopics,
  encodeUpdate,
  readStoredWeights,
  weightDelta,
  type ModelWeights,
  type UpdateEncoding,
  type UpdateHeader,
} from './federated';
import type { FederatedMeta } from './federated-aggregator';
import type { FleetManifest } from './manifest';
import { FleetModelFollower } from './rollout';

/**
 * A device's side of federated learning: follows the fleet's global model with the roll-out
 * machinery (every version signature- and hash-checked, stored as a version of the device's
 * store), says when a round starts for this device, and publishes the update of a local
 * training run: the trained weights minus the global version's, quantized, with the sample
 * count. The training itself is the caller's (edge-train trains in its worker thread).
 *
 * Events: 'round' (FederatedRound) a new global version arrived and this device is asked to
 * train on it; 'skipped' (FederatedRound) a round this device is not selected for;
 * 'refused' (EdgeAiError) a global version was refused; 'failed' (Error).
 */

export interface FederatedClientOptions {
  name: string;
  store: ModelStore;
  publicKey: KeyObject;
  maxBytes: number;
  stallMs?: number;
}

export interface FederatedRound {
  name: string;
  round: number;
  /** The global version in this device's store. */
  stored: StoredModel;
  selected: boolean;
  /**
   * The factor on the device's own learning rate the aggregator announced for this round
   * (learning-rate decay over rounds); 1 without decay.
   */
  learningRateScale: number;
}

export interface UpdateOptions {
  encoding: UpdateEncoding;
  clipNorm?: number;
  noise?: number;
  metrics?: Record<string, number>;
  random?: () => number;
}

export interface SentUpdate {
  round: number;
  bytes: number;
  header: UpdateHeader;
}

/** The learning-rate factor a global version announces to the devices (1 when none). */
export function learningRateScaleOf(fed: FederatedMeta | undefined): number {
  const scale = fed?.learningRateScale;
  return typeof scale === 'number' && Number.isFinite(scale) && scale > 0 ? scale : 1;
}

export class FederatedClient extends EventEmitter {
  readonly follower: FleetModelFollower;
  readonly topics: FederatedTopics;
  /** The newest round announced to this device. */
  current: FederatedRound | undefined;
  private readonly reported = new Set<number>();
  private readonly globals = new Map<number, Promise<ModelWeights>>();

  constructor(
    readonly connection: FleetConnection,
    readonly options: FederatedClientOptions,
  ) {
    super();
    this.topics = new FederatedTopics(connection.topics, options.name);
    this.follower = new FleetModelFollower(connection, {
      name: options.name,
      store: options.store,
      publicKey: options.publicKey,
      maxBytes: options.maxBytes,
      stallMs: options.stallMs,
    });
    const onVersion = (stored: StoredModel, manifest: FleetManifest): void => {
      if (this.current && this.current.round >= manifest.version) return;
      const fed = (manifest.info as { federated?: FederatedMeta }).federated;
      const selected = !Array.isArray(fed?.selected) || fed.selected.includes(connection.deviceId);
      this.current = {
        name: options.name,
        round: manifest.version,
        stored,
        selected,
        learningRateScale: learningRateScaleOf(fed),
      };
      this.emit(selected ? 'round' : 'skipped', this.current);
    };
    this.follower.on('stored', onVersion);
    this.follower.on('current', onVersion);
    this.follower.on('refused', (err: EdgeAiError) => this.emit('refused', err));
    this.follower.on('failed', (err: Error) => this.emit('failed', err));
  }

  start(): Promise<void> {
    return this.follower.start();
  }

  /** Whether this device already sent its update for `round`. */
  hasReported(round: number): boolean {
    return this.reported.has(round);
  }

  /** The weights of a global version (read once per round). */
  globalWeights(round: FederatedRound): Promise<ModelWeights> {
    let weights = this.globals.get(round.round);
    if (!weights) {
      weights = readStoredWeights(round.stored);
      this.globals.clear();
      this.globals.set(round.round, weights);
      weights.catch(() => this.globals.delete(round.round));
    }
    return weights;
  }

  /**
   * Publishes the update of a local run that trained `local` (a stored model, or its weights)
   * from `round`'s global version on `samples` samples. Resolves with what was sent.
   */
  async sendUpdate(
    round: FederatedRound,
    local: StoredModel | ModelWeights,
    samples: number,
    options: UpdateOptions,
  ): Promise<SentUpdate> {
    if (this.reported.has(round.round)) {
      throw new FleetError(
        'fleet-update-invalid',
        `this device already sent its update for round ${round.round}`,
        {
          device: this.connection.deviceId,
          round: round.round,
        },
      );
    }
    const global = await this.globalWeights(round);
    const weights = 'values' in local ? local : await readStoredWeights(local);
    const delta = weightDelta(weights, global);
    const { payload, header } = encodeUpdate(
      {
        fleet: this.connection.topics.fleet,
        name: this.options.name,
        device: this.connection.deviceId,
        round: round.round,
        samples,
        metrics: options.metrics,
      },
      global.specs,
      delta,
      options,
    );
    await this.connection.publish(this.topics.update(this.connection.deviceId), payload, { qos: 1 });
    this.reported.add(round.round);
    return { round: round.round, bytes: payload.length, header };
  }

  async close(): Promise<void> {
    await this.follower.close();
  }
}
