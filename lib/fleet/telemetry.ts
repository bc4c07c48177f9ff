import { EventEmitter } from 'node:events';
import type { FleetConnection } from './connection';
import { checkSegment, type FleetTopics } from './topics';

/**
 * Fleet telemetry: what one device's anomaly detection and nodes are doing, on fleet topics, for a
 * dashboard or an operator anywhere. Per device and telemetry source (one `edge fleet telemetry`
 * node):
 *
 *   <root>/<fleet>/devices/<device>/telemetry/<source>/state    retained, QoS 0: the latest
 *       anomaly score, the episode in progress and the last one, message rate, node statuses,
 *       errors, fleet model versions in use. At most one per interval, whatever the sensor rate.
 *   <root>/<fleet>/devices/<device>/telemetry/<source>/episode  retained, QoS 1: every anomaly
 *       episode start and end (the retained one is the last); queued while the broker is away.
 *
 * Model versions come from the device's own retained reports (devices/<device>/models/<name>),
 * online/offline from devices/<device>/online: both are published by the edge-fleet connection.
 */

export interface TelemetryTopicNames {
  state: string;
  episode: string;
}

export function telemetryTopics(topics: FleetTopics, device: string, source: string): TelemetryTopicNames {
  const base = `${topics.base}/devices/${device}/telemetry/${source}`;
  return { state: `${base}/state`, episode: `${base}/episode` };
}

/** The filter that receives every device's telemetry (state and episodes) of a fleet. */
export function fleetTelemetryFilter(topics: FleetTopics): string {
  return `${topics.base}/devices/+/telemetry/+/+`;
}

export interface TelemetryOptions {
  /** Telemetry source name (a topic level), e.g. the machine or the detector. */
  source: string;
  /** The state is published at most this often (default 5000 ms). */
  intervalMs?: number;
  /** Episode events kept while the broker is unreachable; the oldest go first (default 100). */
  maxPendingEpisodes?: number;
  /** Episode events per minute at most (bucket of 10); more are counted, not sent (default 30). */
  episodesPerMinute?: number;
  /** Node statuses kept in the state (default 50; the oldest change goes first). */
  maxNodes?: number;
}

/** A node as Node-RED's Status and Catch nodes describe it (msg.status.source, msg.error.source). */
export interface TelemetryNodeRef {
  id: string;
  type?: string;
  name?: string;
}

export interface AnomalyReading {
  score: number;
  isAnomaly: boolean;
  threshold?: number;
  learning?: boolean;
}

/** What edge-anomaly puts in msg.anomaly (the parts telemetry uses). */
export interface AnomalyDetails {
  event?: 'start' | 'end';
  episode?: { start: number; end?: number; samples: number; peakScore: number };
  /** The statistic (channel) that deviates most. */
  top?: string;
}

export interface EpisodeEvent {
  device: string;
  source: string;
  event: 'start' | 'end';
  /** ISO times of the episode's first anomalous sample and, on 'end', the first normal one. */
  start: string;
  end?: string;
  durationMs?: number;
  samples: number;
  peakScore: number;
  score: number;
  threshold?: number;
  /** The channel (statistic) that deviated most on this sample. */
  channel?: string;
  at: string;
}

export interface TelemetryState {
  device: string;
  source: string;
  at: string;
  /** When this telemetry started (Node-RED deploy). */
  since: string;
  /** Messages received since `since`, and per second over the last interval. */
  messages: number;
  rate: number;
  anomaly?: {
    score: number;
    isAnomaly: boolean;
    threshold?: number;
    learning?: boolean;
    channel?: string;
    at: string;
    /** The episode in progress, if any. */
    episode: { start: string; samples: number; peakScore: number; channel?: string } | null;
  };
  lastEpisode?: EpisodeEvent;
  /** Episodes started since `since`. */
  episodes: number;
  /** The latest status of each node reported (from a Status node), by node id. */
  nodes: Record<
    string,
    { type?: string; name?: string; fill?: string; shape?: string; text?: string; at: string }
  >;
  errors: number;
  lastError?: { node?: TelemetryNodeRef; message: string; at: string };
  /** Fleet model versions this device runs (its retained model reports). */
  models: Record<string, { version?: number; storeVersion?: number; runtime?: string; refused?: unknown }>;
  /** Episode events not sent: over the per-minute cap, or pushed out of the offline queue. */
  dropped: { episodes: number };
}

const iso = (ms: number): string => new Date(ms).toISOString();

/**
 * Publishes one device's telemetry for one source. Inputs are cheap (counters and the latest
 * values); the state goes out at most every `intervalMs`, so a 100 Hz sensor costs one publish
 * per interval. Emits 'published' (kind, topic) after each publish and 'error' never: a failed
 * publish is retried with the next state, episodes stay queued until the broker takes them.
 */
export class FleetTelemetry extends EventEmitter {
  readonly topics: TelemetryTopicNames;
  private readonly intervalMs: number;
  private readonly maxPending: number;
  private readonly perMinute: number;
  private readonly maxNodes: number;
  private readonly started = Date.now();
  private readonly state: TelemetryState;
  private pending: EpisodeEvent[] = [];
  private tokens = 10;
  private tokensAt = Date.now();
  private windowCount = 0;
  private windowStart = Date.now();
  private lastPublished = 0;
  private dirty = false;
  private timer: NodeJS.Timeout | undefined;
  private flushing = false;
  private closed = false;
  private unsubscribe: (() => Promise<void>) | undefined;
  private readonly onConnect = (): void => {
    this.dirty = true;
    this.schedule();
    void this.flushEpisodes();
  };

  constructor(
    private readonly connection: FleetConnection,
    options: TelemetryOptions,
  ) {
    super();
    const source = checkSegment(options.source, 'telemetry source');
    this.intervalMs = Math.max(100, options.intervalMs ?? 5000);
    this.maxPending = Math.max(1, options.maxPendingEpisodes ?? 100);
    this.perMinute = Math.max(1, options.episodesPerMinute ?? 30);
    this.maxNodes = Math.max(1, options.maxNodes ?? 50);
    this.topics = telemetryTopics(connection.topics, connection.deviceId, source);
    this.state = {
      device: connection.deviceId,
      source,
      at: iso(this.started),
      since: iso(this.started),
      messages: 0,
      rate: 0,
      episodes: 0,
      nodes: {},
      errors: 0,
      models: {},
      dropped: { episodes: 0 },
    };
    connection.on('connect', this.onConnect);
  }

  /** Follows this device's own model reports, then publishes a first state. */
  async start(): Promise<void> {
    const filter = `${this.connection.topics.base}/devices/${this.connection.deviceId}/models/+`;
    this.unsubscribe = await this.connection.subscribe(filter, (topic, payload) => {
      const name = topic.slice(topic.lastIndexOf('/') + 1);
      try {
        const report = JSON.parse(payload.toString('utf8')) as Record<string, unknown>;
        this.state.models[name] = {
          version: typeof report.version === 'number' ? report.version : undefined,
          storeVersion: typeof report.storeVersion === 'number' ? report.storeVersion : undefined,
          runtime: typeof report.runtime === 'string' ? report.runtime : undefined,
          ...(report.refused ? { refused: report.refused } : {}),
        };
      } catch {
        delete this.state.models[name]; // an empty (cleared) or foreign report
      }
      this.touch();
    });
    this.touch();
  }

  /** A snapshot of the state as it would be published now. */
  snapshot(): TelemetryState {
    const now = Date.now();
    const seconds = (now - this.windowStart) / 1000;
    return structuredClone({
      ...this.state,
      at: iso(now),
      rate: seconds > 0 ? Math.round((this.windowCount / seconds) * 100) / 100 : 0,
    });
  }

  /** Episode events waiting for the broker. */
  get pendingEpisodes(): number {
    return this.pending.length;
  }

  /** Any message passing (counts towards the message rate). */
  message(): void {
    this.state.messages++;
    this.windowCount++;
    this.touch();
  }

  /** An anomaly result (edge-anomaly's msg.payload and msg.anomaly) at `timestamp` (ms). */
  anomaly(reading: AnomalyReading, details: AnomalyDetails = {}, timestamp = Date.now()): void {
    this.message();
    const channel = details.top;
    const episode = details.episode;
    this.state.anomaly = {
      score: reading.score,
      isAnomaly: reading.isAnomaly,
      threshold: reading.threshold,
      learning: reading.learning,
      channel,
      at: iso(timestamp),
      episode:
        episode && details.event !== 'end' && reading.isAnomaly
          ? { start: iso(episode.start), samples: episode.samples, peakScore: episode.peakScore, channel }
          : null,
    };
    if (!details.event || !episode) return;
    const event: EpisodeEvent = {
      device: this.state.device,
      source: this.state.source,
      event: details.event,
      start: iso(episode.start),
      ...(details.event === 'end' && episode.end !== undefined
        ? { end: iso(episode.end), durationMs: episode.end - episode.start }
        : {}),
      samples: episode.samples,
      peakScore: episode.peakScore,
      score: reading.score,
      threshold: reading.threshold,
      channel,
      at: iso(timestamp),
    };
    if (details.event === 'start') this.state.episodes++;
    this.state.lastEpisode = event;
    if (!this.takeToken()) {
      this.state.dropped.episodes++;
      return;
    }
    this.pending.push(event);
    if (this.pending.length > this.maxPending) {
      this.pending.splice(0, this.pending.length - this.maxPending);
      this.state.dropped.episodes++;
    }
    void this.flushEpisodes();
  }

  /** A node's status changed (Node-RED's Status node: msg.status). */
  status(node: TelemetryNodeRef, status: { fill?: string; shape?: string; text?: string }): void {
    const nodes = this.state.nodes;
    delete nodes[node.id];
    nodes[node.id] = {
      type: node.type,
      name: node.name || undefined,
      fill: status.fill,
      shape: status.shape,
      text: status.text === undefined ? undefined : String(status.text).slice(0, 200),
      at: iso(Date.now()),
    };
    const ids = Object.keys(nodes);
    for (const id of ids.slice(0, Math.max(0, ids.length - this.maxNodes))) delete nodes[id];
    this.touch();
  }

  /** A node reported an error (Node-RED's Catch node: msg.error). */
  error(message: string, node?: TelemetryNodeRef): void {
    this.state.errors++;
    this.state.lastError = {
      node: node ? { id: node.id, type: node.type, name: node.name || undefined } : undefined,
      message: message.slice(0, 500),
      at: iso(Date.now()),
    };
    this.touch();
  }

  /** Stops publishing; the last state goes out first when the broker is there. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.dirty && this.connection.connected) await this.publishState().catch(() => undefined);
    await this.flushEpisodes().catch(() => undefined);
    this.closed = true;
    this.connection.off('connect', this.onConnect);
    await this.unsubscribe?.().catch(() => undefined);
  }

  private touch(): void {
    this.dirty = true;
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || this.closed || !this.dirty) return;
    const wait = Math.max(0, this.lastPublished + this.intervalMs - Date.now());
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.connection.connected) return; // published again on connect
      void this.publishState().catch(() => this.touch());
    }, wait);
    this.timer.unref?.();
  }

  private async publishState(): Promise<void> {
    const state = this.snapshot();
    this.lastPublished = Date.now();
    // One more state after a busy interval, so a stream that stops shows rate 0.
    this.dirty = this.windowCount > 0;
    this.windowCount = 0;
    this.windowStart = this.lastPublished;
    await this.connection.publish(this.topics.state, JSON.stringify(state), { retain: true, qos: 0 });
    this.emit('published', 'state', this.topics.state, state);
    this.schedule();
  }

  private takeToken(): boolean {
    const now = Date.now();
    this.tokens = Math.min(10, this.tokens + ((now - this.tokensAt) / 60000) * this.perMinute);
    this.tokensAt = now;
    if (this.tokens < 1) return false;
    this.tokens--;
    return true;
  }

  private async flushEpisodes(): Promise<void> {
    if (this.flushing || this.closed) return;
    this.flushing = true;
    try {
      while (this.pending.length && this.connection.connected) {
        const event = this.pending[0];
        await this.connection.publish(this.topics.episode, JSON.stringify(event), { retain: true, qos: 1 });
        if (this.pending[0] === event) this.pending.shift();
        this.emit('published', 'episode', this.topics.episode, event);
      }
    } catch {
      // The broker went away: the events stay queued and go out on reconnect.
    } finally {
      this.flushing = false;
    }
    this.touch();
  }
}
