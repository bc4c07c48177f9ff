import os from 'node:os';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { EdgeAiError } from '../../lib/errors';
import { FleetConnection } from '../../lib/fleet/connection';
import { useEmbeddedBroker, type EmbeddedBroker } from '../../lib/fleet/embedded-broker';
import { readPrivateKey, readPublicKey } from '../../lib/fleet/keys';
import type { FleetManifest } from '../../lib/fleet/manifest';
import {
  FleetModelFollower,
  fleetVersionOf,
  publishModel,
  reportModel,
  type PublishedModel,
} from '../../lib/fleet/rollout';
import type { LoadedModelInfo, ModelHandle } from '../../lib/models/serve/model-handle';
import { ModelStore } from '../../lib/models/store/store';
import { errorText, onClose } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import { translateError } from '../shared/status';
import { userDirOf } from '../shared/user-dir';
import type { EdgeFleetNode } from '../shared/fleet-config';
import { FederatedAggregator, type AggregatorOptions } from '../../lib/fleet/federated-aggregator';
import { FederatedClient } from '../../lib/fleet/federated-client';
import { localFleetKeys } from '../../lib/fleet/local-keys';

type EdgeFleetDef = NodeDef & Record<string, unknown>;

interface Credentials {
  username?: string;
  password?: string;
  signingKey?: string;
}

export = function (RED: NodeAPI): void {
  function EdgeFleet(this: Node, config: EdgeFleetDef): void {
    RED.nodes.createNode(this, config);
    setup(this, config);
  }

  function setup(node: Node, config: EdgeFleetDef): void {
    const s = new Settings(config);
    const credentials = ((node as { credentials?: Credentials }).credentials ?? {}) as Credentials;
    const userDir = userDirOf(RED);
    const store = ModelStore.forUserDir(userDir);
    const t = (key: string, params?: Record<string, unknown>): string =>
      RED._(`edge-fleet.${key}`, params as Record<string, string | number> | undefined);
    const describe = (err: unknown): string => translateError(RED._, 'edge-fleet', err);

    let embedded: EmbeddedBroker | undefined;
    let closed = false;
    const connecting: Promise<FleetConnection> = (async () => {
      const fleet = s.text('fleet', 'fleet');
      const deviceId = s.text('deviceId') || os.hostname().replace(/[^A-Za-z0-9._-]/g, '-');
      let url = s.text('broker', 'mqtt://localhost:1883');
      if (s.bool('embedded', false)) {
        embedded = await useEmbeddedBroker(
          s.number('embeddedPort', 1883, { integer: true, min: 0, max: 65535 }),
          s.text('embeddedHost', '127.0.0.1'),
        );
        if (closed) {
          await embedded.release();
          throw new Error('closed');
        }
        url = embedded.url;
        node.log(t('log.embedded', { url }));
      }
      const connection = new FleetConnection({
        url,
        fleet,
        deviceId,
        clientId: s.text('clientId') || undefined,
        username: credentials.username || undefined,
        password: credentials.password || undefined,
        topicRoot: s.text('topicRoot', 'edge-ai'),
        tls: {
          ca: s.text('tlsCa') || undefined,
          cert: s.text('tlsCert') || undefined,
          key: s.text('tlsKey') || undefined,
          rejectUnauthorized: s.bool('tlsVerify', true),
        },
      });
      connection.on('connect', () => node.log(t('log.connected', { url, fleet, device: deviceId })));
      let lastWarned = '';
      // Another connection with this client id: an error, not a warning, once (it stopped reconnecting).
      connection.on('duplicate', (err: Error) => node.error(describe(err)));
      connection.on('connect-error', (err: Error) => {
        if (err === connection.duplicate || err.message === lastWarned) return;
        lastWarned = err.message;
        node.warn(describe(err));
      });
      return connection;
    })();
    connecting.catch((err: unknown) => {
      if (!closed) node.error(describe(err));
    });

    let publicKey: KeyObject | undefined;
    let privateKey: KeyObject | undefined;
    try {
      const text = s.text('publicKey');
      if (text) publicKey = readPublicKey(text);
      if (credentials.signingKey) privateKey = readPrivateKey(credentials.signingKey);
    } catch (err) {
      node.error(describe(err));
    }
    if (s.bool('localKeys', false) && !publicKey && !privateKey) {
      // A fleet on this machine only: a key pair generated once and kept in the user directory.
      try {
        const local = localFleetKeys(path.join(userDir, 'edge-ai', 'fleet-keys'), s.text('fleet', 'fleet'));
        publicKey = readPublicKey(local.publicKey);
        privateKey = readPrivateKey(local.privateKey);
      } catch (err) {
        node.error(describe(err));
      }
    }

    /** Federated learning: a device's client and the round aggregator (see lib/fleet/federated-*). */
    const federated = {
      federatedClient: async (name: string): Promise<FederatedClient> => {
        if (!publicKey) throw new Error(t('errors.no-public-key', { name }));
        return new FederatedClient(await connecting, {
          name,
          store,
          publicKey,
          maxBytes: 100 * 1024 * 1024,
          stallMs: s.number('stallSec', 30, { above: 0 }) * 1000,
        });
      },
      aggregator: async (options: Omit<AggregatorOptions, 'privateKey'>): Promise<FederatedAggregator> => {
        if (!privateKey) throw new Error(t('errors.no-signing-key'));
        return new FederatedAggregator(await connecting, {
          ...options,
          privateKey,
          chunkBytes: s.number('chunkKB', 64, { above: 0 }) * 1024,
        });
      },
    };

    const served: EdgeFleetNode = Object.assign(node, federated, {
      connection: () => connecting,
      publish: async (name: string, version?: number): Promise<PublishedModel> => {
        if (!privateKey) throw new Error(t('errors.no-signing-key'));
        const connection = await connecting;
        return publishModel(connection, store, name, {
          privateKey,
          version,
          chunkBytes: s.number('chunkKB', 64, { above: 0 }) * 1024,
        });
      },
      follow: (user: Node, name: string, handle: ModelHandle, maxBytes: number): void => {
        if (!publicKey) {
          user.error(t('errors.no-public-key', { name }));
          return;
        }
        const key = publicKey;
        let follower: FleetModelFollower | undefined;
        let lastRefusal: { version?: number; code: string; message: string; at: string } | undefined;
        const report = async (info: LoadedModelInfo | undefined): Promise<void> => {
          const connection = await connecting;
          if (info && info.name !== name) return;
          const meta = info?.version
            ? (await store.get(name, info.version).catch(() => undefined))?.meta
            : undefined;
          await reportModel(connection, {
            name,
            version: fleetVersionOf(meta),
            storeVersion: info?.version,
            runtime: info?.runtime,
            refused: lastRefusal,
          });
        };
        const onConnect = (): void => void report(handle.info).catch(() => undefined);
        let offConnect: (() => void) | undefined;
        const onLoaded = (info: LoadedModelInfo): void => {
          lastRefusal = undefined;
          report(info).catch(() => undefined);
        };
        handle.on('loaded', onLoaded);
        connecting
          .then(async (connection) => {
            if (closed) return;
            follower = new FleetModelFollower(connection, {
              name,
              store,
              publicKey: key,
              maxBytes,
              stallMs: s.number('stallSec', 30, { above: 0 }) * 1000,
            });
            follower.on('fetching', (m: FleetManifest) =>
              user.log(t('log.fetching', { name, version: m.version, bytes: m.totalBytes })),
            );
            follower.on('stored', (_stored, m: FleetManifest) =>
              user.log(t('log.stored', { name, version: m.version })),
            );
            follower.on('refused', (err: EdgeAiError, m?: FleetManifest) => {
              const version = m?.version ?? (err.params?.version as number | undefined);
              lastRefusal = { version, code: err.code, message: err.message, at: new Date().toISOString() };
              user.error(t('errors.refused', { error: describe(err), code: err.code }));
              handle.emit('fleet-refused', err);
              report(handle.info).catch(() => undefined);
            });
            follower.on('failed', (err: Error) =>
              user.error(t('errors.store-failed', { name, error: errorText(err) })),
            );
            connection.on('connect', onConnect);
            offConnect = () => connection.off('connect', onConnect);
            await follower.start();
            if (handle.info) await report(handle.info);
          })
          .catch((err: unknown) => user.error(describe(err)));
        onClose(user, async () => {
          handle.off('loaded', onLoaded);
          offConnect?.();
          await follower?.close();
        });
      },
    });
    void served;

    onClose(node, async () => {
      closed = true;
      const connection = await connecting.catch(() => undefined);
      await connection?.close();
      await embedded?.release();
    });
  }

  RED.nodes.registerType('edge-fleet', EdgeFleet, {
    credentials: {
      username: { type: 'text' },
      password: { type: 'password' },
      signingKey: { type: 'password' },
    },
  });
};
