import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { liveOrtSessionCount as liveOrtSessions } from '../../lib/models/runtime/ort-session';
import { ModelStore } from '../../lib/models/store/store';
import { tf } from '../../lib/models/runtime/tfjs';
import { fileSaveHandler } from '../../lib/models/runtime/tfjs';
import { collect, helper, nodeModule, type FlowNode } from '../helpers/red';
import { onnxMlp } from '../fixtures/onnx-fixtures';
import { maxAbsDiff, randomValues } from '../fixtures/reference';
import { keras2Dense, keras2Lstm, type Fixture } from '../fixtures/tfjs-fixtures';
import * as tfl from '@tensorflow/tfjs-layers';

type Msg = Record<string, unknown> & { payload: unknown; inference?: Record<string, unknown> };
type ErrorCall = { args: [Error & { cause?: Error }, Msg] };
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Emitter = { on: (event: string, listener: (arg: any) => void) => void };

function node(id: string): Emitter & Record<string, unknown> {
  return helper.getNode(id) as unknown as Emitter & Record<string, unknown>;
}

const nodes = [nodeModule('edge-model'), nodeModule('edge-infer')];

function flow(model: Record<string, unknown>, infer: Record<string, unknown> = {}): FlowNode[] {
  return [
    { id: 'm', type: 'edge-model', name: 'sensor', warmup: 1, ...model },
    { id: 'i', type: 'edge-infer', model: 'm', wires: [['out']], ...infer },
    { id: 'out', type: 'helper' },
  ];
}

/** Error calls (done(err)) of a node, collected as they happen. */
function errorsOf(target: Emitter): ErrorCall[] {
  const calls: ErrorCall[] = [];
  target.on('call:error', (call) => calls.push(call));
  return calls;
}

async function modelReady(): Promise<Record<string, unknown>> {
  const m = helper.getNode('m');
  return m.handle.ready(20000);
}

describe('edge-infer node with edge-model', function () {
  this.timeout(30000);
  let userDir: string;
  let dense: Fixture;
  let lstm: Fixture;

  before(async () => {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-infer-'));
    dense = await keras2Dense(path.join(userDir, 'models', 'dense'));
    lstm = await keras2Lstm(path.join(userDir, 'models', 'lstm'));
    helper.settings({ userDir });
    await helper.startServer();
  });
  afterEach(() => helper.unload());
  after(async () => {
    await helper.stopServer();
    await fs.rm(userDir, { recursive: true, force: true });
  });

  it('classifies with labels, reports the runtime and matches the reference', async () => {
    await helper.load(
      nodes,
      flow({ source: 'models/dense/model.json', labels: 'low, mid, high' }, { topK: 2 }),
    );
    const info = await modelReady();
    assert.deepEqual(info.inputShape, [4]);
    const out = node('out');
    const got = collect(out, 1);
    const sample = [0.3, -1.2, 0.8, 0.1];
    helper.getNode('i').receive({ payload: sample });
    const [msg] = (await got) as Msg[];
    const result = msg.payload as {
      label: string;
      confidence: number;
      probabilities: number[];
      top: unknown[];
    };
    const expected = dense.reference(Float32Array.from(sample));
    assert.ok(maxAbsDiff(result.probabilities, expected) < 1e-5);
    const best = expected.indexOf(Math.max(...expected));
    assert.equal(result.label, ['low', 'mid', 'high'][best]);
    assert.equal(result.top.length, 2);
    assert.equal(msg.inference?.model, 'sensor');
    // A Dense model exports to ONNX, so "auto" runs it on ONNX Runtime when the export checks out.
    assert.match(String(msg.inference?.runtime), /^(onnxruntime-(node|web)|tfjs-(wasm|cpu|node))$/);
    assert.equal(msg.inference?.runtime, info.runtime);
    assert.equal(typeof msg.inference?.latencyMs, 'number');
  });

  it('reshapes any numeric input to the model input and rejects wrong shapes and NaN clearly', async () => {
    await helper.load(nodes, flow({ source: 'models/lstm' }, { mode: 'regress' }));
    await modelReady();
    const infer = node('i') as Emitter & { receive(msg: unknown): void };
    const errors = errorsOf(infer);
    const window = randomValues(15, 3, 1);
    const rows = Array.from({ length: 5 }, (_, t) => Array.from(window.subarray(t * 3, t * 3 + 3)));
    const got = collect(node('out'), 3);
    infer.receive({ payload: rows, tag: '2d' }); // 5 x 3 window
    infer.receive({ payload: [[1, 2, 3]], tag: 'bad' }); // 1 x 3: wrong shape
    infer.receive({ payload: [...Array.from(window.subarray(0, 14)), NaN], tag: 'nan' });
    infer.receive({ payload: Array.from(window), tag: 'flat' }); // 15 numbers
    infer.receive({ payload: window, tag: 'typed' }); // Float32Array
    const msgs = (await got) as Msg[];
    assert.deepEqual(
      msgs.map((m) => m.tag),
      ['2d', 'flat', 'typed'],
    );
    const expected = lstm.reference(window)[0];
    for (const m of msgs) assert.ok(Math.abs((m.payload as number) - expected) < 1e-5);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(errors.length, 2);
    const [shapeError, nanError] = errors.map((c) => c.args[0].cause?.message ?? '');
    assert.match(shapeError, /expects input shape \[5, 3\] \(15 values per message\); got a 1x3 array/);
    assert.match(nanError, /input value 14 is NaN/);
    assert.equal(errors[0].args[1].tag, 'bad', 'the original message goes with the error');
  });

  it('micro-batches a burst while replying to every message in order', async () => {
    await helper.load(nodes, flow({ source: 'models/lstm' }, { mode: 'regress', maxBatch: 16 }));
    await modelReady();
    const infer = node('i') as Emitter & { receive(msg: unknown): void };
    const count = 100;
    const got = collect(node('out'), count, 20000);
    const inputs = Array.from({ length: count }, (_, k) => randomValues(15, 100 + k, 1));
    inputs.forEach((x, k) => infer.receive({ payload: x, seq: k }));
    const msgs = (await got) as Msg[];
    assert.deepEqual(
      msgs.map((m) => m.seq),
      inputs.map((_, k) => k),
    );
    const sizes = msgs.map((m) => Number(m.inference?.batchSize));
    assert.ok(Math.max(...sizes) > 1, 'some messages shared a batch');
    assert.ok(Math.max(...sizes) <= 16);
    msgs.forEach((m, k) => assert.ok(Math.abs((m.payload as number) - lstm.reference(inputs[k])[0]) < 1e-5));
  });

  for (const overflow of ['reject', 'drop-oldest'] as const) {
    it(`bounds the queue (${overflow}) and shows its depth`, async () => {
      await helper.load(
        nodes,
        flow({ source: 'models/lstm' }, { mode: 'regress', maxBatch: 1, maxQueue: 5, overflow }),
      );
      await modelReady();
      const infer = node('i') as Emitter & { receive(msg: unknown): void };
      const errors = errorsOf(infer);
      const statuses: string[] = [];
      infer.on('call:status', (call: { args: [{ text?: string }] }) =>
        statuses.push(String(call.args[0].text)),
      );
      const answered: number[] = [];
      node('out').on('input', (m: Msg) => answered.push(m.seq as number));
      await new Promise((r) => setTimeout(r, 300)); // past the status throttle of the load
      for (let k = 0; k < 20; k++) infer.receive({ payload: randomValues(15, k), seq: k });
      const deadline = Date.now() + 10000;
      while (answered.length + errors.length < 20 && Date.now() < deadline)
        await new Promise((r) => setTimeout(r, 20));
      assert.equal(answered.length + errors.length, 20, 'every message is answered or fails');
      // Only 5 may wait; the first may already be running when the rest arrive.
      const failed = errors.map((c) => c.args[1].seq as number);
      assert.ok(answered.length === 5 || answered.length === 6, `${answered.length} answered`);
      const all = Array.from({ length: 20 }, (_, k) => k);
      if (overflow === 'reject') {
        assert.deepEqual(answered, all.slice(0, answered.length), 'the first ones run');
        assert.deepEqual(failed, all.slice(answered.length), 'later ones are refused');
        assert.ok(errors.every((c) => c.args[0].cause?.name === 'QueueFullError'));
      } else {
        assert.deepEqual(answered.slice(-5), [15, 16, 17, 18, 19], 'the newest ones run');
        assert.deepEqual(
          [...failed].sort((a, b) => a - b),
          all.slice(answered.length - 5, 15),
          'the oldest waiting ones are dropped',
        );
        assert.ok(errors.every((c) => c.args[0].cause?.name === 'DroppedError'));
      }
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(
        statuses.some((s) => s.includes('edge-infer.status.queue')),
        'queue depth shown in the status',
      );
    });
  }

  it('runs an ONNX model on ONNX Runtime', async () => {
    const fixture = onnxMlp();
    await fs.writeFile(path.join(userDir, 'models', 'mlp.onnx'), fixture.bytes);
    await helper.load(nodes, flow({ source: 'models/mlp.onnx' }));
    const info = await modelReady();
    assert.match(String(info.runtime), /^onnxruntime-(node|web)$/);
    const got = collect(node('out'), 1);
    helper.getNode('i').receive({ payload: { a: 1, b: -0.5, c: 0.25, d: 2 } });
    const [msg] = (await got) as Msg[];
    const probs = (msg.payload as { probabilities: number[] }).probabilities;
    assert.ok(maxAbsDiff(probs, fixture.reference(Float32Array.from([1, -0.5, 0.25, 2]))) < 1e-5);
    assert.equal(msg.inference?.runtime, info.runtime);
  });

  it('applies the normalisation statistics saved with the model', async () => {
    const store = ModelStore.forUserDir(userDir);
    const source = tfl.sequential({
      layers: [tfl.layers.dense({ units: 1, inputShape: [2], useBias: false })],
    });
    tf.tidy(() => source.setWeights([tf.tensor2d([[1], [1]])]));
    await store.save(
      'scaled',
      {
        format: 'tfjs-layers',
        entry: 'model.json',
        normalisation: { method: 'zscore', channels: ['t', 'h'], mean: [20, 50], std: [2, 10], count: 100 },
      },
      async (dir) => {
        await source.save(fileSaveHandler(dir));
      },
    );
    source.dispose();
    await helper.load(nodes, flow({ source: 'store:scaled' }, { mode: 'regress' }));
    await modelReady();
    const got = collect(node('out'), 1);
    helper.getNode('i').receive({ payload: { h: 70, t: 23 } }); // ordered by the stats' channels
    const [msg] = (await got) as Msg[];
    assert.ok(Math.abs((msg.payload as number) - ((23 - 20) / 2 + (70 - 50) / 10)) < 1e-5);
    assert.equal(msg.inference?.version, 1);
  });
});

describe('edge-model swaps and follows the store without dropping messages', function () {
  this.timeout(60000);
  let userDir: string;

  before(async () => {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-swap-'));
    helper.settings({ userDir });
    await helper.startServer();
  });
  afterEach(() => helper.unload());
  after(async () => {
    await helper.stopServer();
    await fs.rm(userDir, { recursive: true, force: true });
  });

  async function saveVersion(store: ModelStore, scale: number): Promise<void> {
    const model = tfl.sequential({
      layers: [tfl.layers.dense({ units: 1, inputShape: [3], useBias: false })],
    });
    tf.tidy(() => model.setWeights([tf.tensor2d([[scale], [scale], [scale]])]));
    await store.save('follow', { format: 'tfjs-layers', entry: 'model.json' }, async (dir) => {
      await model.save(fileSaveHandler(dir));
    });
    model.dispose();
  }

  it('waits (grey status, no error) for a followed model that is not trained yet, then serves it, also messages sent while it loads', async () => {
    await helper.load(
      nodes,
      flow({ name: 'later', source: 'store:later', follow: true }, { mode: 'regress' }),
    );
    const statuses: { fill?: string }[] = [];
    node('i').on('call:status', (call: { args: [{ fill?: string }] }) => statuses.push(call.args[0]));
    const modelErrors = errorsOf(node('m'));
    await new Promise((r) => setTimeout(r, 400));
    assert.ok(statuses.length > 0 && statuses.every((s) => s.fill !== 'red'), JSON.stringify(statuses));
    assert.equal(modelErrors.length, 0);
    const loaded = new Promise<void>((resolve) => helper.getNode('m').handle.once('loaded', () => resolve()));
    // A message that arrives while the saved model is loading waits for it (no error).
    const inferErrors = errorsOf(node('i'));
    const early = collect(node('out'), 1);
    helper
      .getNode('m')
      .handle.once('loading', () =>
        (node('i') as Emitter & { receive(msg: unknown): void }).receive({ payload: [1, 1, 1] }),
      );
    const store = ModelStore.forUserDir(userDir);
    const model = tfl.sequential({
      layers: [tfl.layers.dense({ units: 1, inputShape: [3], useBias: false })],
    });
    tf.tidy(() => model.setWeights([tf.tensor2d([[1], [1], [1]])]));
    await store.save('later', { format: 'tfjs-layers', entry: 'model.json' }, (dir) =>
      model.save(fileSaveHandler(dir)).then(() => undefined),
    );
    model.dispose();
    await loaded;
    assert.equal((await early)[0].payload, 3);
    assert.deepEqual(inferErrors, []);
    const out = collect(node('out'), 1);
    (node('i') as Emitter & { receive(msg: unknown): void }).receive({ payload: [1, 2, 3] });
    assert.equal((await out)[0].payload, 6);
  });

  it('follows new store versions mid-stream: every message answered, no tensor or session leak', async () => {
    const store = ModelStore.forUserDir(userDir);
    await saveVersion(store, 1);
    await helper.load(
      nodes,
      flow(
        { name: 'follow', source: 'store:follow', follow: true },
        { mode: 'regress', maxBatch: 32, maxQueue: 5000 },
      ),
    );
    await modelReady();
    const infer = node('i') as Emitter & { receive(msg: unknown): void };
    const errors = errorsOf(infer);
    const tensors = tf.memory().numTensors;
    const sessions = liveOrtSessions();
    const total = 3000;
    const seen: Msg[] = [];
    node('out').on('input', (m: Msg) => seen.push(m));
    const swapped = new Promise<void>((resolve) =>
      helper.getNode('m').handle.once('loaded', () => resolve()),
    );
    for (let k = 0; k < total - 10; k++) {
      infer.receive({ payload: [1, 2, 3], seq: k });
      if (k === total / 2) await saveVersion(store, 2); // a trainer saving a new version
      if (k % 100 === 0) await new Promise((r) => setImmediate(r));
    }
    await swapped;
    for (let k = total - 10; k < total; k++) infer.receive({ payload: [1, 2, 3], seq: k });
    const deadline = Date.now() + 20000;
    while (seen.length + errors.length < total && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    assert.equal(errors.length, 0, errors[0]?.args[0].cause?.message);
    assert.equal(seen.length, total);
    assert.deepEqual(
      seen.map((m) => m.seq),
      Array.from({ length: total }, (_, k) => k),
    );
    const versions = seen.map((m) => m.inference?.version as number);
    assert.equal(versions[0], 1);
    assert.equal(versions[total - 1], 2);
    assert.ok(
      versions.every((v, k) => k === 0 || v >= versions[k - 1]),
      'the version only moves forward',
    );
    for (const m of seen) assert.equal(m.payload, m.inference?.version === 1 ? 6 : 12);
    // The old model was disposed once its last batch finished: only one model's weights remain.
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(tf.memory().numTensors, tensors);
    assert.equal(liveOrtSessions(), sessions);
  });

  it('swaps when edge-model-loader asks it to (load), and keeps serving on a bad request', async () => {
    const store = ModelStore.forUserDir(userDir);
    await saveVersion(store, 3);
    const latest = (await store.get('follow'))?.meta.version as number;
    const loader = nodeModule('edge-model-loader');
    await helper.load(
      [...nodes, loader],
      [
        ...flow({ source: `store:follow@1` }, { mode: 'regress' }),
        { id: 'loader', type: 'edge-model-loader', model: 'm', mode: 'load', wires: [['loaded']] },
        { id: 'loaded', type: 'helper' },
      ],
    );
    await modelReady();
    const infer = node('i') as Emitter & { receive(msg: unknown): void };
    const ask = async (payload: unknown): Promise<number> => {
      const got = collect(node('out'), 1);
      infer.receive({ payload });
      return ((await got)[0] as Msg).payload as number;
    };
    assert.equal(await ask([1, 1, 1]), 3, 'version 1 multiplies by 1');
    const loaded = collect(node('loaded'), 1);
    (node('loader') as unknown as { receive(msg: unknown): void }).receive({
      payload: `store:follow@${latest}`,
    });
    await loaded;
    assert.equal(helper.getNode('m').modelInfo().version, latest);
    assert.equal(await ask([1, 1, 1]), 9, 'the loaded version multiplies by 3');
    const errors = errorsOf(node('loader'));
    (node('loader') as unknown as { receive(msg: unknown): void }).receive({ payload: 'store:follow@99' });
    const deadline = Date.now() + 5000;
    while (errors.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(errors.length, 1);
    assert.equal(await ask([1, 1, 1]), 9, 'still serving after the failed load');
  });

  it('keeps serving the previous model when a swap fails', async () => {
    const store = ModelStore.forUserDir(userDir);
    const good = await store.get('follow');
    assert.ok(good);
    await fs.mkdir(path.join(userDir, 'broken'), { recursive: true });
    await fs.writeFile(path.join(userDir, 'broken', 'model.json'), '{"modelTopology": {"class_name": "Sequ');
    await helper.load(nodes, flow({ source: 'store:follow' }, { mode: 'regress' }));
    await modelReady();
    const modelNode = helper.getNode('m');
    await assert.rejects(modelNode.load('broken/model.json'), /not valid JSON/);
    await assert.rejects(modelNode.load('../outside/model.json'), /outside the allowed directory/);
    const got = collect(node('out'), 1);
    helper.getNode('i').receive({ payload: [1, 1, 1] });
    const [msg] = (await got) as Msg[];
    assert.equal(msg.inference?.version, good.meta.version);
    assert.equal(msg.payload, 3 * good.meta.version, 'version n multiplies by n');
  });
});
