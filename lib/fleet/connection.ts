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
}

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
  /** Last connection error, while not connected. */
  lastError: Error | undefined;

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
    this.client.on('connect', () => {
      this.lastError = undefined;
      this.client.publish(this.topics.online(this.deviceId), 'true', { qos: 1, retain: true });
      this.emit('connect');
    });
    this.client.on('close', () => {
      if (!this.closed) this.emit('offline');
    });
    this.client.on('error', (err) => {
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

  get connected(): boolean {
    return this.client.connected;
  }

  /** Resolves once connected (at once if already), or rejects after `timeoutMs`. */
  waitConnected(timeoutMs = 10000): Promise<void> {
    if (this.client.connected) return Promise.resolve();
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
