import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { FleetConnection } from '../../lib/fleet/connection';
import { generateFleetKeys, readPrivateKey, readPublicKey } from '../../lib/fleet/keys';
import { FleetModelFollower, publishModel, type DeviceModelReport } from '../../lib/fleet/rollout';
import { fileSaveHandler, tf } from '../../lib/models/runtime/tfjs';
import { ModelStore } from '../../lib/models/store/store';
import { collect, helper, nodeModule, type FlowNode } from '../helpers/red';
import { freePort, startEmbedded, type TestBroker } from '../helpers/mqtt-brokers';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Emitter = { on: (event: string, listener: (arg: any) => void) => void; receive(msg: unknown): void };
type Msg = Record<string, unknown> & { payload: unknown; inference?: { version?: number } };

const nodes = [
  nodeModule('edge-fleet'),
  nodeModule('edge-fleet-rollout'),
  nodeModule('edge-model'),
  nodeModule('edge-infer'),
];
const keys = generateFleetKeys();
const privateKey = readPrivateKey(keys.privateKey);

function node(id: string): Emitter {
  return helper.getNode(id) as unknown as Emitter;
}

async function saveScale(store: ModelStore, scale: number): Promise<void> {
  const model = tfl.sequential({ layers: [tfl.layers.dense({ units: 1, inputShape: [3], useBias: false })] });
  tf.tidy(() => model.setWeights([tf.tensor2d([[scale], [scale], [scale]])]));
  await store.save('sensor', { format: 'tfjs-layers', entry: 'model.json' }, async (dir) => {
    await model.save(fileSaveHandler(dir));
  });
  model.dispose();
}

async function until<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  ms = 15000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('edge-fleet: a Node-RED device follows the fleet model (fleet:<name>)', function () {
  this.timeout(60000);
  let broker: TestBroker;
  let userDir: string;
  let pubDir: string;
  let fleetSeq = 0;
  const open: { close(): Promise<void> }[] = [];

  before(async () => {
    await tf.ready();
    broker = await startEmbedded();
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-fleet-'));
    pubDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-fleet-pub-'));
    helper.settings({ userDir });
    await helper.startServer();
  });
  afterEach(async () => {
    await helper.unload();
    for (const o of open.splice(0).reverse()) await o.close();
  });
  after(async () => {
    await helper.stopServer();
    await broker.stop();
    await fs.rm(userDir, { recursive: true, force: true });
    await fs.rm(pubDir, { recursive: true, force: true });
  });

  function deviceFlow(fleet: string, extra: Record<string, unknown> = {}): FlowNode[] {
    return [
      {
        id: 'f',
        type: 'edge-fleet',
        broker: broker.url,
        fleet,
        deviceId: 'pi1',
        publicKey: keys.publicKey,
        stallSec: 2,
        ...extra,
      },
      { id: 'm', type: 'edge-model', name: 'sensor', source: 'fleet:sensor', fleet: 'f', warmup: 1 },
      { id: 'i', type: 'edge-infer', model: 'm', mode: 'regress', maxQueue: 5000, wires: [['out']] },
      { id: 'out', type: 'helper' },
    ];
  }

  async function connect(fleet: string, deviceId: string): Promise<FleetConnection> {
    const c = new FleetConnection({ url: broker.url, fleet, deviceId });
    open.push(c);
    await c.waitConnected();
    return c;
  }

  it('serves each signed version as it arrives, drops no message, reports it, and keeps serving past a bad one', async () => {
    const fleet = `nr${fleetSeq++}-${Date.now()}`;
    const pubStore = new ModelStore(path.join(pubDir, fleet));
    const publisher = await connect(fleet, 'publisher');
    await saveScale(pubStore, 1);
    await publishModel(publisher, pubStore, 'sensor', { privateKey });
    await helper.load(nodes, deviceFlow(fleet));
    const handle = (
      helper.getNode('m') as unknown as {
        handle: { info?: { version?: number }; once: (e: string, f: () => void) => void };
      }
    ).handle;
    await until('version 1 served', () => (handle.info ? true : undefined));
    const infer = node('i');
    const seen: Msg[] = [];
    const errors: unknown[] = [];
    node('out').on('input', (m: Msg) => seen.push(m));
    infer.on('call:error', (c) => errors.push(c));
    const swapped = new Promise<void>((r) => handle.once('loaded', () => r()));
    const total = 600;
    for (let k = 0; k < total; k++) {
      infer.receive({ payload: [1, 2, 3], seq: k });
      if (k === 100) {
        await saveScale(pubStore, 2);
        await publishModel(publisher, pubStore, 'sensor', { privateKey });
      }
      if (k % 50 === 0) await new Promise((r) => setTimeout(r, 5));
      if (k === 300) await swapped;
    }
    await until('every message answered', () => (seen.length + errors.length >= total ? true : undefined));
    assert.equal(errors.length, 0);
    assert.deepEqual(
      seen.map((m) => m.seq),
      Array.from({ length: total }, (_, k) => k),
    );
    assert.equal(seen[0].payload, 6);
    assert.equal(seen[total - 1].payload, 12);

    // The device reports the fleet version it runs, retained.
    const watcher = await connect(fleet, 'watcher');
    let report: DeviceModelReport | undefined;
    await watcher.subscribe(watcher.topics.deviceModel('pi1', 'sensor'), (_t, p) => {
      report = JSON.parse(p.toString()) as DeviceModelReport;
    });
    await until('report of version 2', () => (report?.version === 2 ? report : undefined));

    // A version signed with another key is refused: an error naming the code, v2 keeps serving.
    const statuses: { fill?: string }[] = [];
    infer.on('call:status', (c: { args: [{ fill?: string }] }) => statuses.push(c.args[0]));
    const modelErrors: string[] = [];
    (helper.getNode('m') as unknown as Emitter).on('call:error', (c: { args: [string] }) =>
      modelErrors.push(String(c.args[0])),
    );
    await saveScale(pubStore, 3);
    await publishModel(publisher, pubStore, 'sensor', {
      privateKey: readPrivateKey(generateFleetKeys().privateKey),
    });
    await until('the refusal', () => (modelErrors.length > 0 ? true : undefined));
    // edge-infer shows it (yellow: a warning, the model still serves).
    await until('a yellow status', () => (statuses.some((st) => st.fill === 'yellow') ? true : undefined));
    assert.match(modelErrors[0], /fleet-bad-signature|refused/);
    await until('refusal reported', () =>
      report?.refused?.code === 'fleet-bad-signature' ? true : undefined,
    );
    assert.equal(report?.version, 2);
    const after = collect(node('out'), 1);
    infer.receive({ payload: [1, 2, 3] });
    assert.equal((await after)[0].payload, 12);
  });

  it('edge-fleet-rollout publishes a store model with the signing key from the credentials', async () => {
    const fleet = `nr${fleetSeq++}-${Date.now()}`;
    const store = ModelStore.forUserDir(userDir);
    await saveScale(store, 5);
    const version = (await store.get('sensor'))?.meta.version as number;
    const d = await connect(fleet, 'd1');
    const deviceStore = new ModelStore(path.join(pubDir, `${fleet}-device`));
    const follower = new FleetModelFollower(d, {
      name: 'sensor',
      store: deviceStore,
      publicKey: readPublicKey(keys.publicKey),
      maxBytes: 1e7,
    });
    open.unshift(follower);
    await follower.start();
    await helper.load(
      nodes,
      [
        { id: 'f', type: 'edge-fleet', broker: broker.url, fleet, deviceId: 'hub' },
        { id: 'r', type: 'edge-fleet-rollout', fleet: 'f', model: 'sensor', wires: [['out']] },
        { id: 'out', type: 'helper' },
      ],
      { f: { signingKey: keys.privateKey } },
    );
    const out = collect(node('out'), 1, 15000);
    node('r').receive({ payload: {} });
    const [msg] = await out;
    assert.equal((msg.payload as { version: number }).version, version);
    await until('the device stored it', async () =>
      (await deviceStore.versions('sensor')).length === 1 ? true : undefined,
    );
    const a = await fs.readFile(path.join((await store.get('sensor'))!.dir, 'model.json'));
    const b = await fs.readFile(path.join((await deviceStore.get('sensor'))!.dir, 'model.json'));
    assert.ok(a.equals(b));
  });

  it('edge-fleet-rollout without a signing key fails the message with a clear error', async () => {
    const fleet = `nr${fleetSeq++}-${Date.now()}`;
    await helper.load(nodes, [
      { id: 'f', type: 'edge-fleet', broker: broker.url, fleet, deviceId: 'hub' },
      { id: 'r', type: 'edge-fleet-rollout', fleet: 'f', model: 'sensor', wires: [['out']] },
      { id: 'out', type: 'helper' },
    ]);
    const failed = new Promise<{ args: [Error] }>((r) => node('r').on('call:error', r));
    node('r').receive({ payload: 'sensor' });
    // The test runtime has no message catalogs: the key names the cause.
    assert.match((await failed).args[0].message, /no signing key|no-signing-key/);
  });

  it('the embedded broker: the config node runs one, other clients use it', async () => {
    const port = await freePort();
    await helper.load(nodes, [
      {
        id: 'f',
        type: 'edge-fleet',
        embedded: true,
        embeddedPort: port,
        fleet: 'solo',
        deviceId: 'pi9',
        wires: [],
      },
    ]);
    const client = new FleetConnection({
      url: `mqtt://127.0.0.1:${port}`,
      fleet: 'solo',
      deviceId: 'watcher',
      reconnectMs: 200,
    });
    open.push(client);
    await client.waitConnected();
    let online: string | undefined;
    await client.subscribe(client.topics.online('pi9'), (_t, p) => (online = p.toString()));
    await until('pi9 online', () => (online === 'true' ? true : undefined));
  });
});
