import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { readStoredWeights } from '../../lib/fleet/federated';
import { aggregatorStore } from '../../lib/fleet/federated-aggregator';
import { generateFleetKeys } from '../../lib/fleet/keys';
import { tf } from '../../lib/models/runtime/tfjs';
import { ModelStore } from '../../lib/models/store/store';
import { helper, nodeModule, type FlowNode } from '../helpers/red';
import { startEmbedded, type TestBroker } from '../helpers/mqtt-brokers';

type Msg = Record<string, unknown> & { topic?: string; payload: Record<string, unknown> };
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Emitter = { on: (event: string, listener: (arg: any) => void) => void; receive(msg: unknown): void };

const nodes = [nodeModule('edge-fleet'), nodeModule('edge-fleet-aggregator'), nodeModule('edge-train')];
const keys = generateFleetKeys();

function node(id: string): Emitter {
  return helper.getNode(id) as unknown as Emitter;
}

/** Messages a helper node received, as they arrive. */
function record(id: string): Msg[] {
  const got: Msg[] = [];
  node(id).on('input', (msg: Msg) => got.push(msg));
  return got;
}

async function until<T>(what: string, check: () => T | undefined, ms = 60000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('edge-train (federated) and edge-fleet-aggregator in a Node-RED runtime', function () {
  this.timeout(120000);
  let broker: TestBroker;
  let userDir: string;

  before(async () => {
    await tf.ready();
    broker = await startEmbedded();
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-fedavg-'));
    helper.settings({ userDir });
    await helper.startServer();
  });
  after(async () => {
    await helper.unload();
    await helper.stopServer();
    await broker.stop();
    await fs.rm(userDir, { recursive: true, force: true });
  });

  it('rounds: the device trains the global model on its samples, sends its update, the aggregator publishes the average', async () => {
    const fleet = `fednode${Date.now()}`;
    const flow: FlowNode[] = [
      { id: 'f', type: 'edge-fleet', broker: broker.url, fleet, deviceId: 'pi1', publicKey: keys.publicKey },
      {
        id: 'agg',
        type: 'edge-fleet-aggregator',
        fleet: 'f',
        model: 'sensor',
        minReports: 1,
        roundSeconds: 60,
        learningRateDecay: 0.5,
        architecture: 'dense-classifier',
        inputShape: '4',
        classes: 'low, high',
        units: '8',
        wires: [['rounds']],
      },
      {
        id: 'train',
        type: 'edge-train',
        source: 'federated',
        fleet: 'f',
        fleetModel: 'sensor',
        modelName: 'sensor-local',
        encoding: 'float32',
        labelSkew: 'restricted-softmax',
        labelSkewStrength: 0.25,
        proximal: 0.01,
        optimizer: 'sgd',
        momentum: 0,
        learningRate: 0.1,
        batchSize: 4,
        epochs: 3,
        validationSplit: 0,
        minSamples: 12,
        backend: 'wasm',
        threads: 1,
        wires: [['updates']],
      },
      { id: 'rounds', type: 'helper' },
      { id: 'updates', type: 'helper' },
    ];
    await helper.load(nodes, flow, { f: { signingKey: keys.privateKey } });
    const rounds = record('rounds');
    const updates = record('updates');
    // The device's own samples: the label follows the sum of the features. Only "high" first:
    // the fleet's class order (low, high) still holds on the device.
    for (let i = 0; i < 12; i++) {
      const high = i % 2 === 0;
      const x = [0, 1, 2, 3].map((k) => (high ? 1 : -1) * (0.5 + ((i * 7 + k * 3) % 5) / 10));
      node('train').receive({ payload: x, label: high ? 'high' : 'low' });
    }
    const first = await until('the first round to close', () => rounds[0]);
    const update = updates.find((m) => m.topic === 'update')!;
    assert.equal(update.payload.round, 1);
    assert.equal(update.payload.encoding, 'float32');
    // The local loss's corrections, as set (FedRS alpha 0.25, FedProx mu 0.01), reported and saved.
    assert.deepEqual(update.payload.labelSkew, { method: 'restricted-softmax', strength: 0.25 });
    assert.equal(update.payload.proximal, 0.01);
    assert.ok((update.payload.bytes as number) > 0);
    assert.deepEqual(
      {
        round: first.payload.round,
        version: first.payload.version,
        reports: first.payload.reports,
        samples: first.payload.samples,
      },
      { round: 1, version: 2, reports: 1, samples: 12 },
    );
    assert.deepEqual(first.payload.devices, ['pi1']);
    assert.equal(first.payload.closedBy, 'reports');
    assert.equal(typeof (first.payload.metrics as Record<string, number>).accuracy, 'number');

    // With one device the average is its own model: version 2 holds the device's trained weights.
    const stateDir = path.join(userDir, 'edge-ai', 'fleet-aggregator', 'agg');
    const global2 = await readStoredWeights((await aggregatorStore(stateDir).get('sensor', 2))!);
    const local = await readStoredWeights(
      (await ModelStore.forUserDir(userDir).get('sensor-local', update.payload.version as number))!,
    );
    global2.values.forEach((v, k) =>
      v.forEach((x, i) => assert.ok(Math.abs(x - local.values[k][i]) <= 1e-6 * Math.max(1, Math.abs(x)))),
    );
    // The device receives version 2 (signed, stored in its model store) and trains the next round.
    const second = await until('the second round to close', () => rounds[1]);
    assert.equal(second.payload.round, 2);
    assert.equal(second.payload.version, 3);
    const deviceStore = ModelStore.forUserDir(userDir);
    const versions = await deviceStore.versions('sensor');
    assert.ok(versions.length >= 2, `the device stored the global versions (${versions.join(', ')})`);
    assert.ok(updates.some((m) => m.topic === 'progress' && m.payload.round === 2));
    // Learning-rate decay 0.5 per round: round 1 trains with the node's 0.1, round 2 with 0.05.
    assert.equal(first.payload.learningRateScale, 0.5);
    const update2 = await until('the round 2 update', () =>
      updates.find((m) => m.topic === 'update' && m.payload.round === 2),
    );
    const training = (await deviceStore.get('sensor-local', update.payload.version as number))!.meta
      .training as Record<string, unknown>;
    assert.deepEqual(
      { labelSkew: training.labelSkew, proximal: training.proximal },
      { labelSkew: { method: 'restricted-softmax', strength: 0.25 }, proximal: 0.01 },
    );
    const rates = await Promise.all(
      [update, update2].map(async (m) => {
        const stored = await deviceStore.get('sensor-local', m.payload.version as number);
        return [
          m.payload.learningRateScale,
          (stored!.meta.training as { learningRate: number }).learningRate,
        ];
      }),
    );
    assert.deepEqual(rates, [
      [1, 0.1],
      [0.5, 0.05],
    ]);
  });

  it('a server momentum out of range is a clear error and a red status; the flow keeps running', async () => {
    await helper.unload();
    const flow: FlowNode[] = [
      { id: 'f', type: 'edge-fleet', broker: broker.url, fleet: `fedbad${Date.now()}`, deviceId: 'pi1' },
      {
        id: 'agg',
        type: 'edge-fleet-aggregator',
        fleet: 'f',
        model: 'sensor',
        serverMomentum: '1.5',
        architecture: 'dense-classifier',
        inputShape: '4',
        classes: 'low, high',
        wires: [['rounds']],
      },
      { id: 'rounds', type: 'helper' },
    ];
    await helper.load(nodes, flow, { f: { signingKey: keys.privateKey } });
    const errors: string[] = [];
    const statuses: { fill?: string; text?: string }[] = [];
    const agg = helper.getNode('agg') as unknown as Emitter;
    agg.on('call:error', (c: { args: unknown[] }) => errors.push(String(c.args[0])));
    agg.on('call:status', (c: { args: [{ fill?: string; text?: string }] }) => statuses.push(c.args[0]));
    await until('the error', () => errors.find((e) => /serverMomentum/.test(e)));
    await until('a red status', () => statuses.find((st) => st.fill === 'red'));
    // The command input still answers (with the same error) instead of throwing.
    agg.receive({ command: 'close' });
    await until('the input answered', () => (errors.length >= 2 ? true : undefined));
  });
});
