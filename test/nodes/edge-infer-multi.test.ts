import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as OrtWeb from 'onnxruntime-web';
import { availableOrtRuntimes, loadOrt } from '../../lib/models/runtime/ort-session';
import { collect, helper, nodeModule, type FlowNode } from '../helpers/red';
import { onnxStatefulRnn } from '../fixtures/onnx-fixtures';
import { maxAbsDiff, randomValues } from '../fixtures/reference';
import { keras3TwoInputs } from '../fixtures/tfjs-fixtures';

type Msg = Record<string, unknown> & { payload: unknown; inference?: Record<string, unknown> };
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Emitter = { on: (event: string, listener: (arg: any) => void) => void };

const nodes = [nodeModule('edge-model'), nodeModule('edge-infer')];

function flow(model: Record<string, unknown>, infer: Record<string, unknown> = {}): FlowNode[] {
  return [
    { id: 'm', type: 'edge-model', name: 'multi', warmup: 1, ...model },
    { id: 'i', type: 'edge-infer', model: 'm', wires: [['out']], ...infer },
    { id: 'out', type: 'helper' },
  ];
}

function errorsOf(target: Emitter): Error[] {
  const calls: Error[] = [];
  // The node frames the library's error in a translated text; its cause is the library's own.
  target.on('call:error', (call: { args: [Error & { cause?: Error }] }) =>
    calls.push(call.args[0].cause ?? call.args[0]),
  );
  return calls;
}

describe('edge-infer with several inputs and outputs, and with recurrent state', function () {
  this.timeout(60000);
  let userDir: string;
  let two: Awaited<ReturnType<typeof keras3TwoInputs>>;
  let rnn: ReturnType<typeof onnxStatefulRnn>;

  before(async () => {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-infer-multi-'));
    two = await keras3TwoInputs(path.join(userDir, 'models', 'two'));
    rnn = onnxStatefulRnn();
    await fs.writeFile(path.join(userDir, 'models', 'vad.onnx'), rnn.bytes);
    helper.settings({ userDir });
    await helper.startServer();
  });
  afterEach(() => helper.unload());
  after(async () => {
    await helper.stopServer();
    await fs.rm(userDir, { recursive: true, force: true });
  });

  it('feeds a two-input Keras 3 model by input name or order and returns every output by name', async () => {
    await helper.load(nodes, flow({ source: 'models/two/model.json' }, { mode: 'raw' }));
    await helper.getNode('m').handle.ready(20000);
    const got = collect(helper.getNode('out') as unknown as Emitter, 3);
    const inputs = [0, 1, 2].map((i) => ({
      sensor: Array.from(randomValues(4, 10 + i, 1.5)),
      context: Array.from(randomValues(3, 20 + i, 1.5)),
    }));
    const infer = helper.getNode('i');
    infer.receive({ payload: inputs[0] });
    infer.receive({ payload: [inputs[1].sensor, inputs[1].context] });
    infer.receive({ payload: { context: inputs[2].context, sensor: inputs[2].sensor } });
    const msgs = (await got) as Msg[];
    msgs.forEach((msg, i) => {
      const want = two.reference2(Float32Array.from(inputs[i].sensor), Float32Array.from(inputs[i].context));
      const out = msg.payload as { class: number[]; level: number[] };
      assert.deepEqual(Object.keys(out), ['class', 'level']);
      assert.ok(maxAbsDiff(out.class, want.class) < 1e-5);
      assert.ok(maxAbsDiff(out.level, want.level) < 1e-5);
    });
    assert.equal(msgs[2].inference?.batchSize, 3, 'the three messages ran as one batch');
  });

  it('classifies on a chosen output and fails a message missing an input alone', async () => {
    await helper.load(
      nodes,
      flow(
        { source: 'models/two/model.json', labels: 'low, mid, high' },
        { mode: 'classify', outputName: 'class' },
      ),
    );
    await helper.getNode('m').handle.ready(20000);
    const infer = helper.getNode('i');
    const errors = errorsOf(infer as unknown as Emitter);
    const got = collect(helper.getNode('out') as unknown as Emitter, 1);
    const sensor = [0.5, -1, 1.5, 0.2];
    const context = [1, 0, -0.5];
    infer.receive({ payload: { sensor } });
    infer.receive({ payload: { sensor, context } });
    const [msg] = (await got) as Msg[];
    const want = two.reference2(Float32Array.from(sensor), Float32Array.from(context));
    const result = msg.payload as { label: string; probabilities: number[] };
    assert.ok(maxAbsDiff(result.probabilities, want.class) < 1e-5);
    assert.equal(result.label, ['low', 'mid', 'high'][want.class.indexOf(Math.max(...want.class))]);
    const all = msg.outputs as { level: number[] };
    assert.ok(maxAbsDiff(all.level, want.level) < 1e-5);
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /lacks context/);
  });

  it('carries an ONNX RNN state per msg.topic over a burst, as direct ONNX Runtime calls do, and resets a stream', async function () {
    const runtime = availableOrtRuntimes()[0];
    if (!runtime) {
      console.log('      no ONNX Runtime loads here; skipping');
      this.skip();
    }
    await helper.load(
      nodes,
      flow(
        { source: 'models/vad.onnx' },
        { mode: 'raw', state: 'hn:h, cn:c', constants: 'sr=16000', maxStreams: 4 },
      ),
    );
    await helper.getNode('m').handle.ready(20000);
    const ort = loadOrt(runtime) as typeof OrtWeb;
    const direct = await ort.InferenceSession.create(rnn.bytes);
    const state: Record<string, { h: Float32Array; c: Float32Array }> = {};
    const directStep = async (topic: string, x: number[]): Promise<number> => {
      const s = (state[topic] ??= { h: new Float32Array(rnn.hidden), c: new Float32Array(rnn.hidden) });
      const r = await direct.run({
        input: new ort.Tensor('float32', Float32Array.from(x), [1, rnn.features]),
        sr: new ort.Tensor('int64', BigInt64Array.of(16000n), [1]),
        h: new ort.Tensor('float32', s.h, [1, 1, rnn.hidden]),
        c: new ort.Tensor('float32', s.c, [1, 1, rnn.hidden]),
      });
      state[topic] = { h: r.hn.data as Float32Array, c: r.cn.data as Float32Array };
      return (r.output.data as Float32Array)[0];
    };
    try {
      const infer = helper.getNode('i');
      const errors = errorsOf(infer as unknown as Emitter);
      const sent: { topic: string; x: number[] }[] = [];
      for (let i = 0; i < 4; i++) {
        for (const topic of ['left', 'right'])
          sent.push({ topic, x: Array.from(randomValues(4, 50 + sent.length, 1.5)) });
      }
      const got = collect(helper.getNode('out') as unknown as Emitter, sent.length);
      // A burst: every message waits in the queue together; one with a bad shape fails alone.
      for (const [i, { topic, x }] of sent.entries()) {
        infer.receive({ topic, payload: x });
        if (i === 3) infer.receive({ topic: 'left', payload: [1, 2, 3] });
      }
      const msgs = (await got) as Msg[];
      for (const [i, { topic, x }] of sent.entries()) {
        const out = msgs[i].payload as { output: number[] };
        assert.equal(msgs[i].topic, topic);
        assert.equal(out.output[0], await directStep(topic, x), `message ${i} (${topic})`);
      }
      // The two streams' queued messages ran together, state stacked, still equal to direct calls.
      assert.ok(
        msgs.some((m) => (m.inference as { batchSize: number }).batchSize === 2),
        msgs.map((m) => (m.inference as { batchSize: number }).batchSize).join(','),
      );
      assert.equal(errors.length, 1);
      assert.match(errors[0].message, /expects input shape \[4\]/);
      // msg.reset clears the stream: its next output is that of a fresh stream again.
      const again = collect(helper.getNode('out') as unknown as Emitter, 2);
      infer.receive({ topic: 'left', reset: true, payload: sent[0].x });
      infer.receive({ topic: 'right', payload: sent[1].x });
      const [fresh, continued] = (await again) as Msg[];
      state.left = { h: new Float32Array(rnn.hidden), c: new Float32Array(rnn.hidden) };
      assert.equal((fresh.payload as { output: number[] }).output[0], await directStep('left', sent[0].x));
      assert.equal(
        (continued.payload as { output: number[] }).output[0],
        await directStep('right', sent[1].x),
      );
      assert.notEqual(
        (fresh.payload as { output: number[] }).output[0],
        (continued.payload as { output: number[] }).output[0],
      );
    } finally {
      await direct.release();
    }
  });

  it('refuses state settings that do not fit the model, naming the input', async () => {
    await helper.load(nodes, flow({ source: 'models/vad.onnx' }, { mode: 'raw', state: 'hn:hidden' }));
    await helper.getNode('m').handle.ready(20000);
    const infer = helper.getNode('i');
    const errors = errorsOf(infer as unknown as Emitter);
    infer.receive({ topic: 'x', payload: [1, 2, 3, 4] });
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(errors.length, 1);
    assert.match(errors[0].message, /state input "hidden" is not an input of the model \(input, sr, h, c\)/);
  });
});
