import assert from 'node:assert/strict';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import * as tfl from '@tensorflow/tfjs-layers';
import { ModelStore } from '../../lib/models/store/store';
import { fileSaveHandler, useBackend } from '../../lib/models/runtime/tfjs';
import type { CompressionReport } from '../../lib/models/compress/compress-report';
import { useTempUserDir } from '../helpers/user-dir';
import { collect as collectMessages, helper, nodeModule, type FlowNode } from '../helpers/red';

/**
 * Test double for the edge-model config node: records the load requests it receives through
 * the `load` method the loader calls, and answers like a loaded model would.
 */
const loadRequests: unknown[] = [];
function recordingModelNode(RED: NodeAPI): void {
  function RecordingModel(this: Node & Record<string, unknown>, config: NodeDef) {
    RED.nodes.createNode(this, config);
    this.load = async (request: { source: string }) => {
      loadRequests.push(request);
      if (request.source.includes('missing')) throw new Error(`no model at ${request.source}`);
      const store = /^store:(.+)@(\d+)$/.exec(request.source);
      return store
        ? { name: store[1], version: Number(store[2]), runtime: 'tfjs-cpu' }
        : { name: 'downloaded', version: 1, runtime: 'tfjs-cpu' };
    };
  }
  RED.nodes.registerType('recording-model', RecordingModel);
}

const INPUTS = 10;

describe('edge-model-loader node', function () {
  this.timeout(30000);
  const home = useTempUserDir('edge-loader');
  let store: ModelStore;

  before(async () => {
    await useBackend(['wasm', 'cpu']);
  });

  beforeEach(async () => {
    loadRequests.length = 0;
    store = ModelStore.forUserDir(home.path);
    const model = tfl.sequential({
      layers: [
        tfl.layers.dense({ units: 40, inputShape: [INPUTS], activation: 'relu' }),
        tfl.layers.dense({ units: 2, activation: 'softmax' }),
      ],
    });
    await store.save('sensor-net', { format: 'tfjs-layers', entry: 'model.json' }, async (dir) => {
      await model.save(fileSaveHandler(dir));
    });
    model.dispose();
  });

  function flow(loader: Record<string, unknown>): FlowNode[] {
    // Catch nodes only see errors of nodes on their own tab; x/y mark flow (not config) nodes.
    const at = { z: 'tab', x: 100, y: 100 };
    return [
      { id: 'tab', type: 'tab', label: 'loader test' },
      { id: 'target', type: 'recording-model' },
      { id: 'loader', type: 'edge-model-loader', ...at, wires: [['out']], ...loader },
      { id: 'out', type: 'helper', ...at },
      { id: 'catch', type: 'catch', ...at, scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', ...at },
    ];
  }

  /** Flow nodes as the test helper gives them: Node-RED nodes with sinon-spied methods. */
  type TestNode = {
    receive(msg: object): void;
    on(event: 'input', listener: (msg: unknown) => void): void;
    status: { lastCall: { args: [{ fill?: string }] } };
  };

  const collect = (node: TestNode, count: number, ms: number) =>
    collectMessages(node as unknown as Parameters<typeof collectMessages>[0], count, ms);

  async function start(loader: Record<string, unknown>) {
    await helper.load([nodeModule('edge-model-loader'), recordingModelNode], flow(loader));
    const get = (id: string) => helper.getNode(id) as unknown as TestNode;
    return { loader: get('loader'), out: get('out'), caught: get('caught') };
  }

  it('compresses a stored model into a new version and emits the report', async () => {
    const { loader, out } = await start({ mode: 'auto', quantize: 'uint16', prune: 0, pruneScope: 'global' });
    const got = collect(out, 1, 25000);
    const calibration = {
      x: Array.from({ length: 6 }, (_, i) => Array.from({ length: INPUTS }, (_, j) => (i - j) / 10)),
    };
    loader.receive({
      payload: { model: 'sensor-net', quantize: 'uint8', prune: 0.5, calibration },
      topic: 'keep me',
    });
    const [msg] = await got;
    const report = msg.payload as CompressionReport;
    assert.deepEqual(msg.model, { name: 'sensor-net', version: 2 });
    assert.equal(msg.topic, 'keep me');
    assert.deepEqual(report.result, { name: 'sensor-net', version: 2, format: 'tfjs-layers' });
    assert.deepEqual(report.method, { quantize: 'uint8', prune: { target: 0.5, scope: 'global' } });
    const kernels = INPUTS * 40 + 40 * 2;
    assert.equal(report.sparsity.kernels, Math.round(kernels / 2) / kernels);
    assert.equal(report.probe.samples, 6);
    assert.equal(report.sizeBytes.ratio, 4);
    assert.ok(Number.isFinite(report.maxAbsDiff) && report.maxAbsDiff > 0);
    assert.ok(report.latencyMs.before > 0);
    assert.deepEqual(await store.versions('sensor-net'), [1, 2]);
    const saved = await store.get('sensor-net', 2);
    assert.equal((saved?.meta.compression as CompressionReport).sizeBytes.after, report.sizeBytes.after);
    assert.equal(loader.status.lastCall.args[0].fill, 'green');
    assert.deepEqual(loadRequests, []);
  });

  it('in compress mode a name uses the dialog settings, and swap loads the result into the target', async () => {
    const { loader, out } = await start({
      mode: 'compress',
      model: 'target',
      quantize: 'float16',
      prune: '0',
      saveAs: 'sensor-net-small',
      swap: true,
    });
    const got = collect(out, 1, 25000);
    loader.receive({ payload: 'sensor-net' });
    const [msg] = await got;
    assert.deepEqual(msg.model, { name: 'sensor-net-small', version: 1 });
    assert.equal((msg.payload as CompressionReport).method.quantize, 'float16');
    assert.equal((msg.payload as CompressionReport).sizeBytes.ratio, 2);
    assert.deepEqual(loadRequests, [{ source: 'store:sensor-net-small@1' }]);
  });

  it('loads a path or {source, name, sha256} into the target edge-model', async () => {
    const { loader, out } = await start({ mode: 'auto', model: 'target' });
    const got = collect(out, 2, 5000);
    const sha256 = 'ab'.repeat(32);
    loader.receive({ payload: 'models/sensor/model.json' });
    loader.receive({ payload: { source: 'https://example.com/m/model.json', name: 'remote', sha256 } });
    const msgs = await got;
    assert.deepEqual(loadRequests, [
      { source: 'models/sensor/model.json' },
      { source: 'https://example.com/m/model.json', name: 'remote', sha256 },
    ]);
    assert.deepEqual(msgs[0].model, { name: 'downloaded', version: 1 });
    assert.equal((msgs[0].payload as { runtime: string }).runtime, 'tfjs-cpu');
  });

  it('sends bad requests to a Catch node with the original message and keeps working', async () => {
    const { loader, out, caught } = await start({ mode: 'auto', quantize: 'uint8' });
    const errors = collect(caught, 4, 10000);
    const bad = [
      { payload: { model: 'no-such-model', quantize: 'uint8' }, tag: 'unknown model' },
      { payload: { model: 'sensor-net', quantize: 'int4' }, tag: 'bad dtype' },
      { payload: { model: 'sensor-net', prune: 2 }, tag: 'bad sparsity' },
      { payload: 'models/x/model.json', tag: 'no target' },
    ];
    for (const msg of bad) loader.receive(msg);
    const caughtMsgs = await errors;
    assert.deepEqual(
      caughtMsgs.map((m) => m.tag),
      bad.map((m) => m.tag),
    );
    const texts = caughtMsgs.map((m) => String((m.error as { message: string }).message));
    assert.match(texts[0], /"no-such-model" is not in the model store/);
    assert.match(texts[1], /unknown quantization "int4"/);
    assert.match(texts[2], /sparsity/);
    assert.match(texts[3], /noTarget/);
    assert.equal(loader.status.lastCall.args[0].fill, 'red');
    assert.deepEqual(await store.versions('sensor-net'), [1]);

    // The flow goes on: a good request still works.
    const got = collect(out, 1, 25000);
    loader.receive({ payload: { model: 'sensor-net' } });
    const [msg] = await got;
    assert.deepEqual(msg.model, { name: 'sensor-net', version: 2 });
  });

  it('a failed load in the target reaches the Catch node', async () => {
    const { loader, caught } = await start({ mode: 'load', model: 'target' });
    const errors = collect(caught, 1, 5000);
    loader.receive({ payload: { source: 'models/missing/model.json' } });
    const [msg] = await errors;
    assert.match(String((msg.error as { message: string }).message), /no model at models\/missing/);
    assert.equal(loader.status.lastCall.args[0].fill, 'red');
  });

  it('stops a running compression when the flow stops, saving nothing', async () => {
    const { loader } = await start({ mode: 'auto' });
    loader.receive({ payload: { model: 'sensor-net', quantize: 'uint8' } });
    await new Promise((resolve) => setTimeout(resolve, 50));
    await helper.unload();
    assert.deepEqual(await store.versions('sensor-net'), [1]);
  });
});
