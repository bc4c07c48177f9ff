import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sharedDir } from '../helpers/shared-data';
import { convertTfliteToOnnx } from '../../lib/models/convert/tflite';
import { collect, helper, nodeModule, type FlowNode } from '../helpers/red';
import { rng } from '../fixtures/reference';
import { closeReference, loadReference, tfliteReferenceUnavailable } from '../helpers/tflite-reference';

type Msg = Record<string, unknown> & { payload: { label: string; probabilities: number[] } };

const MODELS = sharedDir('models', 'tflite');
const LABELS = ['silence', 'unknown', 'yes', 'no'];

describe('edge-infer with a .tflite model in edge-model', function () {
  this.timeout(30000);
  let userDir: string;
  let reason = '';

  before(async () => {
    reason = tfliteReferenceUnavailable();
    if (reason) console.log(`      skipping: ${reason}`);
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-tflite-'));
    await fs.mkdir(path.join(userDir, 'models'));
    await fs.copyFile(
      path.join(MODELS, 'micro_speech_quantized.tflite'),
      path.join(userDir, 'models', 'speech.tflite'),
    );
    helper.settings({ userDir });
    await helper.startServer();
  });
  afterEach(() => helper.unload());
  after(async () => {
    await helper.stopServer();
    await fs.rm(userDir, { recursive: true, force: true });
    await closeReference();
  });

  it("classifies real-valued spectrograms with an int8 TFLite model as TFLite's interpreter does", async function () {
    if (reason) this.skip();
    const flow: FlowNode[] = [
      {
        id: 'm',
        type: 'edge-model',
        name: 'speech',
        warmup: 1,
        source: 'models/speech.tflite',
        labels: LABELS.join(', '),
      },
      { id: 'i', type: 'edge-infer', model: 'm', wires: [['out']] },
      { id: 'out', type: 'helper' },
    ];
    await helper.load([nodeModule('edge-model'), nodeModule('edge-infer')], flow);
    const info = await helper.getNode('m').handle.ready(20000);
    assert.match(String(info.runtime), /^onnxruntime-(node|web)$/);

    const bytes = new Uint8Array(await fs.readFile(path.join(userDir, 'models', 'speech.tflite')));
    const conv = convertTfliteToOnnx(bytes);
    const inQ = conv.inputs[0].quantization!;
    const outQ = conv.outputs[0].quantization!;
    const ref = (await loadReference(bytes))!;
    const next = rng(5);
    const messages = 3;
    const raws = Array.from({ length: messages }, () =>
      Int8Array.from({ length: 1960 }, () => Math.floor(next() * 256) - 128),
    );
    const got = collect(helper.getNode('out') as unknown as Parameters<typeof collect>[0], messages);
    for (const raw of raws) {
      helper.getNode('i').receive({ payload: Array.from(raw, (q) => (q - inQ.zeroPoint) * inQ.scale) });
    }
    const msgs = (await got) as Msg[];
    for (const [k, msg] of msgs.entries()) {
      const [want] = await ref.run([raws[k]]);
      const probs = want.map((q) => (q - outQ.zeroPoint) * outQ.scale);
      const diff = probs.reduce((m, p, j) => Math.max(m, Math.abs(p - msg.payload.probabilities[j])), 0);
      assert.ok(diff <= outQ.scale * 1.0001, `message ${k}: probabilities differ by ${diff}`);
      assert.equal(msg.payload.label, LABELS[probs.indexOf(Math.max(...probs))]);
    }
    await ref.close();
  });
});
