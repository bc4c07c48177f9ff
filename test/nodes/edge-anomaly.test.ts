import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { ModelStore } from '../../lib/models/store/store';
import { fileSaveHandler, tf, useBackend } from '../../lib/models/runtime/tfjs';
import type { EdgeModelNode } from '../../nodes/shared/model-config';
import { useTempUserDir } from '../helpers/user-dir';
import { collect, helper, nodeModule, type FlowNode } from '../helpers/red';
import { gaussian, prng } from '../helpers/signals';

const anomalyNode = nodeModule('edge-anomaly');
const modelNode = nodeModule('edge-model');

const AE_WINDOW = 8;

/**
 * A dense autoencoder over windows of two channels that are normally equal: the 8-unit
 * bottleneck keeps the mean of the two channels at each step, the decoder writes it to both.
 * With `identity` the bottleneck is wide enough to reconstruct any window exactly.
 */
async function saveAutoencoder(store: ModelStore, identity: boolean): Promise<void> {
  const size = AE_WINDOW * 2;
  const latent = identity ? size : AE_WINDOW;
  const model = tfl.sequential({
    layers: [
      tfl.layers.flatten({ inputShape: [AE_WINDOW, 2] }),
      tfl.layers.dense({ units: latent, useBias: false }),
      tfl.layers.dense({ units: size, useBias: false }),
      tfl.layers.reshape({ targetShape: [AE_WINDOW, 2] }),
    ],
  });
  const encoder = new Float32Array(size * latent);
  const decoder = new Float32Array(latent * size);
  for (let i = 0; i < size; i++) {
    if (identity) {
      encoder[i * latent + i] = 1;
      decoder[i * size + i] = 1;
    } else {
      encoder[i * latent + Math.floor(i / 2)] = 0.5;
      decoder[Math.floor(i / 2) * size + i] = 1;
    }
  }
  model.layers[1].setWeights([tf.tensor2d(encoder, [size, latent])]);
  model.layers[2].setWeights([tf.tensor2d(decoder, [latent, size])]);
  await store.save('ae', { format: 'tfjs-layers', entry: 'model.json' }, async (dir) => {
    await model.save(fileSaveHandler(dir));
  });
  model.dispose();
}

/** Two channels that follow each other; from `onset` the second is offset by +1. */
function pairedReadings(n: number, onset: number, seed: number): number[][] {
  const g = gaussian(prng(seed));
  return Array.from({ length: n }, (_, t) => {
    const a = Math.sin(t / 5) + 0.05 * g();
    return [a, a + 0.05 * g() + (t >= onset ? 1 : 0)];
  });
}

type Msg = Record<string, unknown>;
type Payload = { score: number; isAnomaly: boolean; threshold: number; learning: boolean };
type StatusCall = { args: [{ fill?: string; shape?: string; text?: string }] };
interface TestNode {
  receive(msg: Msg): void;
  on(event: string, listener: (arg: never) => void): void;
}
const node = (id: string) => helper.getNode(id) as unknown as TestNode;

function flow(config: Record<string, unknown>, extra: FlowNode[] = []): FlowNode[] {
  return [
    { id: 'f1', type: 'tab', label: 'anomaly' },
    {
      id: 'n1',
      z: 'f1',
      type: 'edge-anomaly',
      name: '',
      method: 'auto',
      window: 10,
      alpha: 0.1,
      learning: 60,
      learningUnit: 'samples',
      threshold: 0.5,
      hysteresis: 0.2,
      minDuration: 5,
      nanPolicy: 'hold',
      adaptRate: 0,
      channels: '',
      seqWindow: 8,
      epochs: 2,
      persist: true,
      ...config,
      wires: [['out'], ['alerts']],
    },
    { id: 'out', z: 'f1', type: 'helper' },
    { id: 'alerts', z: 'f1', type: 'helper' },
    ...extra,
  ];
}

const catchNodes: FlowNode[] = [
  { id: 'c1', z: 'f1', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
  { id: 'caught', z: 'f1', type: 'helper' },
];

/** Two channels of noise; samples [from, to) shifted by +8 on the first channel. */
function readings(n: number, seed: number, from = n, to = n): { pressure: number; flow: number }[] {
  const g = gaussian(prng(seed));
  return Array.from({ length: n }, (_, t) => ({
    pressure: 2 + 0.1 * g() + (t >= from && t < to ? 0.8 : 0),
    flow: 30 + g(),
  }));
}

function statusLog(n: TestNode) {
  const calls: StatusCall['args'][0][] = [];
  n.on('call:status', ((call: StatusCall) => calls.push(call.args[0])) as (arg: never) => void);
  return calls;
}

describe('edge-anomaly node', function () {
  this.timeout(30000);
  const home = useTempUserDir('edge-anomaly');

  const stateFile = () => path.join(home.path, 'edge-ai', 'anomaly', 'n1.json');

  it('answers every message in order and sends only anomalies and their end to the second output', async () => {
    await helper.load(anomalyNode, flow({}));
    const data = readings(200, 1, 120, 160);
    const all = collect(node('out'), data.length);
    const alerts: Msg[] = [];
    node('alerts').on('input', ((m: Msg) => alerts.push(m)) as (arg: never) => void);
    data.forEach((payload, i) => node('n1').receive({ payload, topic: `s${i}`, timestamp: i * 1000 }));
    const out = await all;
    assert.deepEqual(
      out.map((m) => m.topic),
      data.map((_, i) => `s${i}`),
    );
    const payloads = out.map((m) => m.payload as Payload);
    assert.ok(payloads.slice(0, 60).every((p) => p.learning && !p.isAnomaly));
    assert.ok(payloads.every((p) => p.score >= 0 && p.score <= 1 && p.threshold === 0.5));
    assert.ok(
      payloads.slice(60, 120).every((p) => !p.isAnomaly),
      'no alarm before the shift',
    );
    const flagged = payloads.map((p, i) => (p.isAnomaly ? i : -1)).filter((i) => i >= 0);
    assert.ok(flagged.length > 20 && flagged[0] >= 120 && flagged[0] < 130, `flagged ${flagged[0]}..`);
    // Second output: the anomalous messages, then the one that ends the episode.
    assert.ok(alerts.length >= flagged.length);
    const ends = alerts.filter((m) => (m.anomaly as { event?: string }).event === 'end');
    assert.equal(ends.length, 1);
    assert.equal((ends[0].payload as Payload).isAnomaly, false);
    assert.ok(alerts.slice(0, -1).every((m) => (m.payload as Payload).isAnomaly));
    assert.equal((out[130].anomaly as { top: string }).top, 'pressure');
  });

  it('keeps the learned state across a restart, atomically in the user directory', async () => {
    const data = readings(100, 2);
    await helper.load(anomalyNode, flow({}));
    const first = collect(node('out'), 70);
    data.slice(0, 70).forEach((payload) => node('n1').receive({ payload }));
    assert.equal(((await first)[69].payload as Payload).learning, false);
    await helper.unload(); // stops the flow: the node saves its state on close
    assert.ok(existsSync(stateFile()));
    const saved = JSON.parse(await fs.readFile(stateFile(), 'utf8')) as { phase: string; index: number };
    assert.equal(saved.phase, 'ready');
    assert.equal(saved.index, 70);
    assert.deepEqual(
      (await fs.readdir(path.dirname(stateFile()))).filter((f) => f.includes('.tmp')),
      [],
    );

    await helper.load(anomalyNode, flow({}));
    const next = collect(node('out'), 1);
    node('n1').receive({ payload: data[70] });
    const [msg] = await next;
    assert.equal((msg.payload as Payload).learning, false);
    assert.equal((msg.anomaly as { index: number }).index, 70);

    // Other learning settings: the old state does not apply.
    await helper.unload();
    await helper.load(anomalyNode, flow({ learning: 80 }));
    const fresh = collect(node('out'), 1);
    node('n1').receive({ payload: data[71] });
    assert.equal(((await fresh)[0].payload as Payload).learning, true);
  });

  it('deletes its saved state when the node is deleted from the flow', async () => {
    await helper.load(anomalyNode, flow({}));
    const out = collect(node('out'), 70);
    readings(70, 6).forEach((payload) => node('n1').receive({ payload }));
    await out;
    // The fitted model is saved as soon as learning ends.
    for (let i = 0; i < 50 && !existsSync(stateFile()); i++) await new Promise((r) => setTimeout(r, 20));
    assert.ok(existsSync(stateFile()));
    await helper.setFlows([{ id: 'f1', type: 'tab', label: 'anomaly' }]);
    assert.equal(existsSync(stateFile()), false);
  });

  it('forgets the learned state on msg.reset', async () => {
    await helper.load(anomalyNode, flow({ learning: 50 }));
    const data = readings(55, 3);
    const out = collect(node('out'), 57);
    data.forEach((payload) => node('n1').receive({ payload }));
    node('n1').receive({ reset: true });
    node('n1').receive({ payload: [1, 2, 3] });
    const msgs = await out;
    assert.equal((msgs[54].payload as Payload).learning, false);
    assert.equal((msgs[55].payload as Payload).learning, true);
    assert.equal((msgs[55].anomaly as { reset: boolean }).reset, true);
    // The channels were forgotten too: three unnamed channels now start a new learning period.
    assert.equal((msgs[56].payload as Payload).learning, true);
    assert.equal((msgs[56].anomaly as { index: number }).index, 0);
  });

  it('routes bad input to a Catch node with the original message and keeps its state', async () => {
    await helper.load(anomalyNode, flow({}, catchNodes));
    const n1 = node('n1');
    const statuses = statusLog(n1);
    const data = readings(80, 4);
    const out = collect(node('out'), 61);
    data.slice(0, 60).forEach((payload) => n1.receive({ payload }));
    const caught = collect(node('caught'), 3);
    n1.receive({ payload: 'hot', topic: 'a' });
    n1.receive({ payload: [1, 2, 3], topic: 'b' });
    n1.receive({ payload: { pressure: Infinity, flow: 1 }, topic: 'c' });
    n1.receive({ payload: data[60], topic: 'good' });
    const errs = await caught;
    assert.deepEqual(
      errs.map((m) => m.topic),
      ['a', 'b', 'c'],
    );
    assert.equal(errs[0].payload, 'hot');
    assert.deepEqual(errs[1].payload, [1, 2, 3]);
    for (const m of errs) assert.equal((m.error as { source: { id: string } }).source.id, 'n1');
    assert.ok(statuses.some((s) => s.fill === 'red'));
    const msgs = await out;
    assert.equal(msgs[60].topic, 'good');
    assert.equal((msgs[60].anomaly as { index: number }).index, 60);
    assert.equal((msgs[60].payload as Payload).learning, false);
  });

  it('keeps order under load while an autoencoder trains in a worker', async () => {
    await helper.load(anomalyNode, flow({ method: 'ae-dense', learning: 60, persist: false }));
    const n1 = node('n1');
    const statuses = statusLog(n1);
    const data = readings(150, 5, 120, 150);
    const out = collect(node('out'), data.length, 25000);
    data.forEach((payload, i) => n1.receive({ payload, topic: i }));
    const msgs = await out;
    assert.deepEqual(
      msgs.map((m) => m.topic),
      data.map((_, i) => i),
    );
    assert.ok(msgs.slice(60).every((m) => !(m.payload as Payload).learning));
    assert.ok(
      statuses.some((s) => s.fill === 'blue'),
      'training status shown',
    );
    assert.equal(existsSync(stateFile()), false);
  });

  it('stopped while a network trains: saves the learning samples and trains again after the restart', async () => {
    const config = { method: 'ae-dense', learning: 60 };
    const data = readings(70, 7);
    await helper.load(anomalyNode, flow(config));
    const learned = collect(node('out'), 59);
    data.slice(0, 60).forEach((payload) => node('n1').receive({ payload }));
    await learned; // the 60th sample starts the training, which is still running now
    await helper.unload();
    const saved = JSON.parse(await fs.readFile(stateFile(), 'utf8')) as {
      phase: string;
      learningRows: unknown[];
    };
    assert.equal(saved.phase, 'learning');
    assert.equal(saved.learningRows.length, 60);

    await helper.load(anomalyNode, flow(config));
    const out = collect(node('out'), 2, 25000);
    node('n1').receive({ payload: data[60] });
    node('n1').receive({ payload: data[61] });
    const msgs = await out;
    assert.equal((msgs[1].payload as Payload).learning, false);
    assert.equal((msgs[1].anomaly as { index: number }).index, 61);
  });

  it('method "model": scores with an edge-model autoencoder and follows its swaps', async () => {
    await useBackend(['cpu']);
    const store = ModelStore.forUserDir(home.path);
    await saveAutoencoder(store, false);
    await saveAutoencoder(store, true);
    await helper.load(
      [anomalyNode, modelNode],
      flow({ method: 'model', model: 'm', seqWindow: AE_WINDOW, learning: 60, persist: false }, [
        { id: 'm', type: 'edge-model', name: 'ae', source: 'store:ae@1', warmup: 1 },
      ]),
    );
    const edgeModel = helper.getNode('m') as unknown as EdgeModelNode;
    await edgeModel.handle.ready();
    const rows = pairedReadings(140, 100, 3);
    const results = collect(node('out'), rows.length);
    for (const row of rows) node('n1').receive({ payload: row });
    const msgs = await results;
    const payloads = msgs.map((m) => m.payload as Payload);
    assert.ok(msgs.every((m) => (m.anomaly as { method: string }).method === 'model'));
    assert.ok(payloads.slice(0, 60).every((p) => p.learning && !p.isAnomaly));
    assert.ok(payloads.slice(60, 100).every((p) => !p.learning && !p.isAnomaly));
    // The lasting fault stays in alarm; after its first detection the shown score is masked
    // (halved) and the full score is kept in msg.anomaly.unmasked.
    const fullScores = msgs.map(
      (m) => (m.anomaly as { unmasked?: number }).unmasked ?? (m.payload as Payload).score,
    );
    assert.ok(payloads.slice(110).every((p) => p.isAnomaly));
    assert.ok(fullScores.slice(110).every((s) => s > 0.5));

    // Swapped to a model that reconstructs everything, the same anomaly scores nothing.
    await edgeModel.load('store:ae@2');
    const after = collect(node('out'), 20);
    for (const row of pairedReadings(20, 0, 4)) node('n1').receive({ payload: row });
    const swapped = (await after).map((m) => m.payload as Payload);
    assert.ok(
      swapped.every((p) => p.score < 0.1),
      JSON.stringify(swapped.map((p) => p.score)),
    );
  });

  it('method "model" without an edge-model node fails each message to Catch', async () => {
    await helper.load(anomalyNode, flow({ method: 'model', model: '' }, catchNodes));
    const caught = collect(node('caught'), 1);
    node('n1').receive({ payload: 1 });
    const [err] = await caught;
    assert.equal(err.payload, 1);
  });

  it('reports invalid settings and fails each message to Catch', async () => {
    await helper.load(anomalyNode, flow({ method: 'nonsense' }, catchNodes));
    const caught = collect(node('caught'), 1);
    node('n1').receive({ payload: 1 });
    const [err] = await caught;
    assert.equal(err.payload, 1);
  });
});
