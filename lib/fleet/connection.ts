import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { FleetError } from '../errors';
import { FleetTopics, checkSegment, topicMatches } from './topics';

/**
 * One device's connection to its fleet's MQTT broker (any MQTT 3.1.1/5 broker: Mosquitto, EMQX,
 * HiveMQ, VerneMQ, or the embedded one). Reconnects by itself; subscriptions are renewed on
 * reconnect, so retained messages (manifests) are delivered again and a device catches up.
 * The broker holds a retained last will "false" on the device's online topic.
 *
 * Two connections with the same client id (e.g. two devices given the same device id) would end
 * each other's session at every reconnect, forever: when the broker ends this connection's session
 * right after it began (no network error, three times in a row) or says the session was taken over
 * (MQTT 5 reason 0x8E), the connection stops reconnecting and reports a 'fleet-duplicate-id'
 * error naming the client id ('connect-error' and 'duplicate' events); the other connection keeps
 * its session.
 */

export interface FleetTlsOptions {
  /** PEM text or a file path of the CA certificate(s) to trust. */
  ca?: string;
  /** PEM text or a file path of this device's client certificate. */
  cert?: string;
  /** PEM text or a file path of this device's client key. */
  key?: string;
  /** Check the broker's certificate (default true). */
  rejectUnauthorized?: boolean;
  servername?: string;
}

export interface FleetConnectionOptions {
  /** mqtt://, mqtts://, ws:// or wss:// URL of the broker. */
  url: string;
  fleet: string;
  deviceId: string;
  /** Default: `<fleet>-<deviceId>`. */
  clientId?: string;
  username?: string;
  password?: string;
  tls?: FleetTlsOptions;
  topicRoot?: string;
  keepaliveSec?: number;
  reconnectMs?: number;
  connectTimeoutMs?: number;
  /**
   * A session the broker ends sooner than this after it began, with no error, counts as taken
   * over by another connection with the same client id; default max(5 s, 3 x reconnectMs).
   */
  takeoverMs?: number;
}

/** Sessions ended right after they began, in a row, taken as a duplicate client id. */
const TAKEOVERS = 3;
/** MQTT 5 DISCONNECT reason: "Session taken over". */
const SESSION_TAKEN_OVER = 0x8e;

export type MessageHandler = (topic: string, payload: Buffer, retained: boolean) => void;

const URL_SCHEMES = ['mqtt:', 'mqtts:', 'ws:', 'wss:', 'tcp:', 'ssl:'];

function pemOf(value: string | undefined): string | undefined {
  if (!value?.trim()) return undefined;
  const text = value.trim();
  return text.startsWith('-----') ? text : readFileSync(text, 'utf8');
}

export function checkBrokerUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new FleetError('setting-invalid', `broker URL "${url}" is not a URL (e.g. mqtt://localhost:1883)`);
  }
  if (!URL_SCHEMES.includes(parsed.protocol)) {
    throw new FleetError('setting-invalid', `broker URL "${url}": use mqtt://, mqtts://, ws:// or wss://`);
  }
  return parsed;
}

/** OpenSSL's and Node's codes for a broker certificate that does not check out. */
const UNTRUSTED_CERTIFICATE = new Set([
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_SIGNATURE_FAILURE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** The error a failed connection reports: fleet-tls-untrusted for a certificate refused, else fleet-connect-failed. */
export function connectionError(url: string, err: Error): FleetError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code && UNTRUSTED_CERTIFICATE.has(code)) {
    return new FleetError(
      'fleet-tls-untrusted',
      `broker ${url}: certificate not trusted (${code}): ${err.message}`,
      {
        url,
        tlsCode: code,
      },
    );
  }
  return new FleetError('fleet-connect-failed', `broker ${url}: ${err.message}`, { url });
}

export class FleetConnection extends EventEmitter {
  readonly client: MqttClient;
  readonly topics: FleetTopics;
  readonly deviceId: string;
  private readonly handlers: { filter: string; handler: MessageHandler }[] = [];
  private closed = false;
  private sessionStart = 0;
  private sessionError = false;
  private shortSessions = 0;
  /** Last connection error, while not connected. */
  lastError: Error | undefined;
  /** Set when another connection uses this client id (see the class comment): no more reconnects. */
  duplicate: FleetError | undefined;

  constructor(readonly options: FleetConnectionOptions) {
    super();
    this.setMaxListeners(0);
    checkBrokerUrl(options.url);
    this.deviceId = checkSegment(options.deviceId, 'device id');
    this.topics = new FleetTopics(options.fleet, options.topicRoot || undefined);
    const tls = options.tls ?? {};
    const clientOptions: IClientOptions = {
      clientId: options.clientId || `${options.fleet}-${options.deviceId}`,
      username: options.username || undefined,
      password: options.password || undefined,
      keepalive: options.keepaliveSec ?? 30,
      reconnectPeriod: options.reconnectMs ?? 2000,
      connectTimeout: options.connectTimeoutMs ?? 10000,
      clean: true,
      resubscribe: true,
      ca: pemOf(tls.ca),
      cert: pemOf(tls.cert),
      key: pemOf(tls.key),
      rejectUnauthorized: tls.rejectUnauthorized ?? true,
      servername: tls.servername || undefined,
      will: { topic: this.topics.online(this.deviceId), payload: Buffer.from('false'), qos: 1, retain: true },
    };
    this.client = mqtt.connect(options.url, clientOptions);
    const clientId = clientOptions.clientId!;
    const takeoverMs = options.takeoverMs ?? Math.max(5000, 3 * (options.reconnectMs ?? 2000));
    this.client.on('connect', () => {
      this.sessionStart = Date.now();
      this.sessionError = false;
      this.lastError = undefined;
      this.client.publish(this.topics.online(this.deviceId), 'true', { qos: 1, retain: true });
      this.emit('connect');
    });
    this.client.on('close', () => {
      if (this.closed || this.duplicate) return;
      if (this.sessionStart > 0) {
        const short = Date.now() - this.sessionStart < takeoverMs && !this.sessionError;
        this.sessionStart = 0;
        this.shortSessions = short ? this.shortSessions + 1 : 0;
        if (this.shortSessions >= TAKEOVERS) {
          this.stopAsDuplicate(
            clientId,
            `${TAKEOVERS} sessions in a row ended by the broker right after they began`,
          );
          return;
        }
      }
      this.emit('offline');
    });
    this.client.on('disconnect', (packet) => {
      if (packet.reasonCode === SESSION_TAKEN_OVER) {
        this.stopAsDuplicate(clientId, 'the broker says the session was taken over');
      }
    });
    this.client.on('error', (err) => {
      this.sessionError = true;
      this.lastError = connectionError(options.url, err);
      this.emit('connect-error', this.lastError);
    });
    this.client.on('message', (topic, payload, packet) => {
      for (const { filter, handler } of [...this.handlers]) {
        if (!topicMatches(filter, topic)) continue;
        try {
          handler(topic, payload, packet.retain);
        } catch (err) {
          this.emit('handler-error', err);
        }
      }
    });
  }

  private stopAsDuplicate(clientId: string, why: string): void {
    if (this.duplicate || this.closed) return;
    this.duplicate = new FleetError(
      'fleet-duplicate-id',
      `MQTT client id "${clientId}" (device "${this.deviceId}") is used by another connection to ${this.options.url}: ` +
        `${why}. Give every device its own device id (or client id); this connection stopped reconnecting.`,
      { url: this.options.url, clientId, device: this.deviceId },
    );
    this.lastError = this.duplicate;
    this.client.end(true);
    this.emit('connect-error', this.duplicate);
    this.emit('duplicate', this.duplicate);
    this.emit('offline');
  }

  get connected(): boolean {
    return this.client.connected;
  }

  /** Resolves once connected (at once if already), or rejects after `timeoutMs`. */
  waitConnected(timeoutMs = 10000): Promise<void> {
    if (this.client.connected) return Promise.resolve();
    if (this.duplicate) return Promise.reject(this.duplicate);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.off('connect', onConnect);
        reject(
          this.lastError ??
            new FleetError(
              'fleet-connect-failed',
              `broker ${this.options.url}: not connected after ${timeoutMs} ms`,
              {
                url: this.options.url,
              },
            ),
        );
      }, timeoutMs);
      const onConnect = (): void => {
        clearTimeout(timer);
        resolve();
      };
      this.once('connect', onConnect);
    });
  }

  publish(
    topic: string,
    payload: string | Buffer,
    options: { retain?: boolean; qos?: 0 | 1 | 2 } = {},
  ): Promise<void> {
    return new Promise((resolve, reject) => {
      this.client.publish(
        topic,
        payload,
        { qos: options.qos ?? 1, retain: options.retain ?? false },
        (err) =>
          err
            ? reject(
                new FleetError('fleet-connect-failed', `publish to ${topic} failed: ${err.message}`, {
                  url: this.options.url,
                }),
              )
            : resolve(),
      );
    });
  }

  /** Subscribes `handler` to `filter`; resolves with a function that undoes it. */
  async subscribe(filter: string, handler: MessageHandler, qos: 0 | 1 = 1): Promise<() => Promise<void>> {
    const entry = { filter, handler };
    this.handlers.push(entry);
    await new Promise<void>((resolve, reject) => {
      this.client.subscribe(filter, { qos }, (err) => (err ? reject(err) : resolve()));
    });
    return async () => {
      const i = this.handlers.indexOf(entry);
      if (i >= 0) this.handlers.splice(i, 1);
      if (this.closed || this.handlers.some((h) => h.filter === filter)) return;
      await new Promise<void>((resolve) => this.client.unsubscribe(filter, () => resolve()));
    };
  }

  /** Says goodbye (online "false"), then disconnects. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.client.connected) {
      await this.publish(this.topics.online(this.deviceId), 'false', { retain: true }).catch(() => undefined);
    }
    this.closed = true;
    this.handlers.length = 0;
    await new Promise<void>((resolve) => this.client.end(false, {}, () => resolve()));
  }
}
