import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { isEdgeAiError, type EdgeAiError } from '../../lib/errors';
import { FleetConnection } from '../../lib/fleet/connection';
import { generateFleetKeys, readPrivateKey, readPublicKey } from '../../lib/fleet/keys';
import type { FleetManifest } from '../../lib/fleet/manifest';
import {
  FleetModelFollower,
  publishModel,
  reportModel,
  type DeviceModelReport,
} from '../../lib/fleet/rollout';
import { ModelStore } from '../../lib/models/store/store';
import { fleetBed, testFleetKeys } from '../helpers/fleet-bed';
import { until } from '../helpers/wait';

const { privateKey, publicKey } = testFleetKeys();

interface Device {
  connection: FleetConnection;
  store: ModelStore;
  follower: FleetModelFollower;
  refusals: EdgeAiError[];
}

for (const kind of ['embedded', 'mosquitto'] as const) {
  describe(`fleet model roll-out over MQTT (${kind} broker)`, function () {
    this.timeout(30000);
    const bed = fleetBed(kind, 'fleet');
    const { open } = bed;
    const connect = (deviceId: string): Promise<FleetConnection> => bed.connect(deviceId);

    async function device(
      id: string,
      options: { maxBytes?: number; stallMs?: number } = {},
    ): Promise<Device> {
      const connection = await connect(id);
      const store = new ModelStore(path.join(bed.dir, id));
      const follower = new FleetModelFollower(connection, {
        name: 'sensor',
        store,
        publicKey,
        maxBytes: options.maxBytes ?? 10_000_000,
        stallMs: options.stallMs ?? 2000,
      });
      open.unshift(follower);
      const refusals: EdgeAiError[] = [];
      follower.on('refused', (err: EdgeAiError) => refusals.push(err));
      await follower.start();
      return { connection, store, follower, refusals };
    }

    /** A two-file model (a JSON entry and a binary weights file) in the publisher's store. */
    async function publisherModel(
      weightBytes = 150_000,
    ): Promise<{ store: ModelStore; files: Map<string, Buffer> }> {
      const store = new ModelStore(path.join(bed.dir, 'publisher'));
      const files = new Map<string, Buffer>([
        ['model.json', Buffer.from(JSON.stringify({ format: 'layers-model', weights: 'weights.bin' }))],
        ['weights.bin', randomBytes(weightBytes)],
      ]);
      await store.save(
        'sensor',
        { format: 'tfjs-layers', entry: 'model.json', labels: ['a', 'b'] },
        async (d) => {
          for (const [f, data] of files) await fs.writeFile(path.join(d, f), data);
        },
      );
      return { store, files };
    }

    async function filesOf(store: ModelStore): Promise<Map<string, Buffer> | undefined> {
      const stored = await store.get('sensor');
      if (!stored) return undefined;
      const out = new Map<string, Buffer>();
      for (const f of stored.meta.files) out.set(f.path, await fs.readFile(path.join(stored.dir, f.path)));
      return out;
    }

    /** Polls a device store until it holds `count` versions of the model. */
    async function storedVersions(store: ModelStore, count: number, ms = 10000): Promise<void> {
      const deadline = Date.now() + ms;
      while ((await store.versions('sensor')).length < count) {
        if (Date.now() > deadline) throw new Error(`the device store did not reach ${count} version(s)`);
        await new Promise((r) => setTimeout(r, 20));
      }
    }

    it('rolls a signed model out to several devices: every file byte-identical, stored as a new version', async () => {
      const devices = await Promise.all(['d1', 'd2', 'd3'].map((id) => device(id)));
      const pub = await publisherModel();
      const publisher = await connect('publisher');
      const published = await publishModel(publisher, pub.store, 'sensor', {
        privateKey,
        chunkBytes: 16 * 1024,
      });
      assert.equal(published.manifest.chunks, Math.ceil(published.bytes / (16 * 1024)));
      for (const d of devices) {
        await storedVersions(d.store, 1);
        const files = await filesOf(d.store);
        assert.ok(files);
        for (const [name, data] of pub.files) assert.ok(files.get(name)?.equals(data), `${name} differs`);
        const meta = (await d.store.get('sensor'))?.meta as unknown as Record<string, unknown>;
        assert.deepEqual(meta.labels, ['a', 'b']);
        assert.equal((meta.fleet as { version: number }).version, 1);
        assert.equal(d.refusals.length, 0);
      }
      // A second publication of the same version is not stored again.
      await publishModel(publisher, pub.store, 'sensor', { privateKey, chunkBytes: 16 * 1024 });
      await new Promise((r) => setTimeout(r, 300));
      for (const d of devices) assert.deepEqual(await d.store.versions('sensor'), [1]);
    });

    it('refuses an unsigned manifest and one signed with another key: nothing stored', async () => {
      const d = await device('d1');
      const pub = await publisherModel(10_000);
      const publisher = await connect('publisher');
      const other = readPrivateKey(generateFleetKeys().privateKey);
      await publishModel(publisher, pub.store, 'sensor', { privateKey: other });
      await until('a refusal', () => d.refusals[0]);
      assert.equal(d.refusals[0].code, 'fleet-bad-signature');
      assert.match(d.refusals[0].message, /signature does not verify/);
      const manifest = await manifestOf(publisher);
      await publisher.publish(
        publisher.topics.manifest('sensor'),
        JSON.stringify({ manifest: JSON.stringify(manifest) }),
        {
          retain: true,
        },
      );
      await until('a second refusal', () => d.refusals[1]);
      assert.equal(d.refusals[1].code, 'fleet-unsigned');
      assert.deepEqual(await d.store.versions('sensor'), []);
    });

    /** The manifest currently retained for 'sensor', read as a device would (without checks). */
    async function manifestOf(connection: FleetConnection): Promise<FleetManifest> {
      return new Promise((resolve) => {
        void connection.subscribe(connection.topics.manifest('sensor'), (_t, payload) => {
          resolve(JSON.parse(JSON.parse(payload.toString()).manifest) as FleetManifest);
        });
      });
    }

    it('refuses a tampered chunk (same length, one byte changed) and keeps nothing', async () => {
      const pub = await publisherModel(50_000);
      const publisher = await connect('publisher');
      const { manifest } = await publishModel(publisher, pub.store, 'sensor', {
        privateKey,
        chunkBytes: 8192,
      });
      const topic = publisher.topics.chunk('sensor', manifest.version, 2);
      const chunk = (
        await fs.readFile(path.join((await pub.store.get('sensor'))!.dir, 'weights.bin'))
      ).subarray(0, 8192);
      const bad = Buffer.from(chunk);
      bad[100] ^= 0xff;
      await publisher.publish(topic, bad, { retain: true });
      const d = await device('d1');
      await until('a refusal', () => d.refusals[0]);
      assert.equal(d.refusals[0].code, 'fleet-tampered');
      assert.equal((d.refusals[0].params as { file: string }).file, 'weights.bin');
      assert.deepEqual(await d.store.versions('sensor'), []);
    });

    it('refuses a truncated model: a short chunk, and a missing chunk after the stall time', async () => {
      const pub = await publisherModel(50_000);
      const publisher = await connect('publisher');
      const { manifest } = await publishModel(publisher, pub.store, 'sensor', {
        privateKey,
        chunkBytes: 8192,
      });
      const last = publisher.topics.chunk('sensor', manifest.version, manifest.chunks - 1);
      await publisher.publish(last, Buffer.alloc(3), { retain: true });
      const short = await device('d1');
      await until('a refusal', () => short.refusals[0]);
      assert.equal(short.refusals[0].code, 'fleet-truncated');
      await publisher.publish(last, Buffer.alloc(0), { retain: true }); // the chunk is gone
      const started = Date.now();
      const missing = await device('d2', { stallMs: 400 });
      await until('a refusal', () => missing.refusals[0]);
      assert.equal(missing.refusals[0].code, 'fleet-truncated');
      assert.match(
        missing.refusals[0].message,
        new RegExp(`${manifest.chunks - 1} of ${manifest.chunks} chunks`),
      );
      assert.ok(Date.now() - started >= 400);
      assert.deepEqual(await short.store.versions('sensor'), []);
      assert.deepEqual(await missing.store.versions('sensor'), []);
    });

    it('refuses an oversized model from its signed manifest, before fetching any chunk', async () => {
      const d = await device('d1', { maxBytes: 20_000 });
      let chunkSubscriptions = 0;
      const subscribe = d.connection.subscribe.bind(d.connection);
      d.connection.subscribe = (filter, handler, qos) => {
        if (filter.includes('/v')) chunkSubscriptions++;
        return subscribe(filter, handler, qos);
      };
      const pub = await publisherModel(50_000);
      const publisher = await connect('publisher');
      await publishModel(publisher, pub.store, 'sensor', { privateKey });
      await until('a refusal', () => d.refusals[0]);
      assert.equal(d.refusals[0].code, 'model-too-large');
      assert.ok(isEdgeAiError(d.refusals[0]));
      assert.equal(chunkSubscriptions, 0);
      assert.deepEqual(await d.store.versions('sensor'), []);
    });

    it('a device that was offline during a roll-out catches up from the retained manifest on reconnect', async () => {
      const d = await device('d1');
      const pub = await publisherModel(30_000);
      const publisher = await connect('publisher');
      await publishModel(publisher, pub.store, 'sensor', { privateKey });
      await storedVersions(d.store, 1);
      // The device loses its connection (the socket dies); meanwhile version 2 is rolled out.
      const offline = new Promise((r) => d.connection.once('offline', r));
      (d.connection.client as unknown as { stream: { destroy(): void } }).stream.destroy();
      await offline;
      await pub.store.save('sensor', { format: 'tfjs-layers', entry: 'model.json' }, async (dd) => {
        await fs.writeFile(path.join(dd, 'model.json'), '{"v":2}');
        await fs.writeFile(path.join(dd, 'weights.bin'), randomBytes(30_000));
      });
      await publishModel(publisher, pub.store, 'sensor', { privateKey });
      await storedVersions(d.store, 2);
      const meta = (await d.store.get('sensor'))!.meta as unknown as { fleet: { version: number } };
      assert.equal(meta.fleet.version, 2);
      assert.equal(
        (await fs.readFile(path.join((await d.store.get('sensor'))!.dir, 'model.json'))).toString(),
        '{"v":2}',
      );
      // The superseded version's chunks were cleared from the broker.
      const stale: string[] = [];
      await publisher.subscribe(publisher.topics.chunks('sensor', 1), (t, p) => {
        if (p.length > 0) stale.push(t);
      });
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(stale, []);
    });

    it('a restarted publisher clears the chunks of the version the broker still retains', async () => {
      const pub = await publisherModel(30_000);
      const first = await connect('publisher');
      const v1 = await publishModel(first, pub.store, 'sensor', { privateKey });
      await first.close();
      await pub.store.save('sensor', { format: 'tfjs-layers', entry: 'model.json' }, async (dd) => {
        await fs.writeFile(path.join(dd, 'model.json'), '{"v":2}');
        await fs.writeFile(path.join(dd, 'weights.bin'), randomBytes(30_000));
      });
      // A new connection knows nothing of version 1 but what the broker retains.
      const restarted = await connect('publisher');
      const v2 = await publishModel(restarted, pub.store, 'sensor', { privateKey });
      assert.equal(v2.manifest.version, v1.manifest.version + 1);
      const retained = async (version: number): Promise<string[]> => {
        const topics: string[] = [];
        await restarted.subscribe(restarted.topics.chunks('sensor', version), (t, p) => {
          if (p.length > 0) topics.push(t);
        });
        return topics;
      };
      const [old, current] = [await retained(v1.manifest.version), await retained(v2.manifest.version)];
      await until('the retained chunks of version 2', () =>
        current.length === v2.manifest.chunks ? true : undefined,
      );
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(old, [], 'the chunks of version 1 are cleared');
    });

    it('each device reports the version it runs, retained on its own topic', async () => {
      const a = await connect('a');
      const b = await connect('b');
      await reportModel(a, { name: 'sensor', version: 3, storeVersion: 1, runtime: 'tfjs-cpu' });
      await reportModel(b, { name: 'sensor', version: 2, storeVersion: 2 });
      const watcher = await connect('watcher');
      const seen = new Map<string, DeviceModelReport>();
      await watcher.subscribe(watcher.topics.deviceModels('sensor'), (_t, p) => {
        const r = JSON.parse(p.toString()) as DeviceModelReport;
        seen.set(r.device, r);
      });
      await until('both retained reports', () => (seen.size === 2 ? true : undefined));
      assert.equal(seen.get('a')?.version, 3);
      assert.equal(seen.get('b')?.version, 2);
    });
  });
}

describe('fleet keys', () => {
  it('reads base64 DER and PEM Ed25519 keys; refuses others with fleet-key-invalid', async () => {
    const { generateKeyPairSync } = await import('node:crypto');
    const pair = generateFleetKeys();
    const pub = readPublicKey(pair.publicKey);
    const pem = pub.export({ type: 'spki', format: 'pem' }).toString();
    assert.equal(readPublicKey(pem).asymmetricKeyType, 'ed25519');
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({
      type: 'spki',
      format: 'pem',
    });
    for (const bad of [rsa.toString(), 'not a key', pair.privateKey]) {
      assert.throws(
        () => readPublicKey(bad),
        (err: unknown) => isEdgeAiError(err, 'fleet-key-invalid'),
      );
    }
    assert.throws(
      () => readPrivateKey(pair.publicKey),
      (err: unknown) => isEdgeAiError(err, 'fleet-key-invalid'),
    );
  });
});
