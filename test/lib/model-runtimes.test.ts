import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { readModelFiles, type ModelFiles } from '../../lib/models/store/model-files';
import { ortAvailable, OrtRunner } from '../../lib/models/runtime/ort-runner';
import { liveOrtSessionCount as liveOrtSessions } from '../../lib/models/runtime/ort-session';
import { createRunner } from '../../lib/models/runtime/select';
import { fileSaveHandler, tf, useBackend } from '../../lib/models/runtime/tfjs';
import { denseOnlyExporter, onnxMlp } from '../fixtures/onnx-fixtures';
import { maxAbsDiff, randomValues } from '../fixtures/reference';
import { keras2Dense } from '../fixtures/tfjs-fixtures';

function onnxFiles(bytes: Uint8Array): ModelFiles {
  return { format: 'onnx', entryPath: 'model.onnx', bytes: bytes.length, notes: [], onnx: bytes };
}

async function checkOutputs(
  run: (x: Float32Array, n: number) => Promise<Float32Array>,
  reference: (x: Float32Array) => Float32Array,
  per: number,
  batch = 3,
): Promise<number> {
  const input = randomValues(per * batch, 17, 1.5);
  const out = await run(input, batch);
  const outPer = out.length / batch;
  let worst = 0;
  for (let i = 0; i < batch; i++) {
    const want = reference(input.subarray(i * per, (i + 1) * per));
    worst = Math.max(worst, maxAbsDiff(out.subarray(i * outPer, (i + 1) * outPer), want));
  }
  return worst;
}

describe('runtimes and their automatic selection', function () {
  this.timeout(30000);
  let root: string;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-runtimes-'));
    await useBackend(['wasm', 'cpu']);
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  for (const runtime of ['onnxruntime-node', 'onnxruntime-web'] as const) {
    it(`runs an ONNX (PyTorch-style) model on ${runtime} like the reference`, async function () {
      if (!ortAvailable(runtime)) {
        console.log(`      ${runtime} cannot load here; skipping`);
        this.skip();
      }
      const fixture = onnxMlp();
      const sessions = liveOrtSessions();
      const runner = await OrtRunner.create(fixture.bytes, runtime);
      assert.equal(liveOrtSessions(), sessions + 1);
      assert.equal(runner.runtime, runtime);
      assert.deepEqual(runner.inputShape, [4]);
      assert.deepEqual(runner.outputShape, [3]);
      assert.ok((await checkOutputs((x, n) => runner.predict(x, n), fixture.reference, 4)) < 1e-5);
      await runner.dispose();
      assert.equal(liveOrtSessions(), sessions);
    });
  }

  it('runs a model exported with a fixed batch of 1 one sample at a time', async () => {
    const fixture = onnxMlp({ batch: 1, seed: 7 });
    const { runner } = await createRunner(onnxFiles(fixture.bytes));
    assert.ok((await checkOutputs((x, n) => runner.predict(x, n), fixture.reference, 4, 5)) < 1e-5);
    await runner.dispose();
  });

  it('picks onnxruntime-node for ONNX models, honours a preference for onnxruntime-web', async function () {
    const fixture = onnxMlp();
    const auto = await createRunner(onnxFiles(fixture.bytes));
    assert.equal(
      auto.runner.runtime,
      ortAvailable('onnxruntime-node') ? 'onnxruntime-node' : 'onnxruntime-web',
    );
    await auto.runner.dispose();
    const web = await createRunner(onnxFiles(fixture.bytes), { runtime: 'onnxruntime-web' });
    assert.equal(web.runner.runtime, 'onnxruntime-web');
    await web.runner.dispose();
    const tfjs = await createRunner(onnxFiles(fixture.bytes), { runtime: 'tfjs-wasm' });
    assert.match(tfjs.runner.runtime, /^onnxruntime/);
    assert.match(tfjs.notes.join(), /ONNX models run on ONNX Runtime/);
    await tfjs.runner.dispose();
  });

  describe('layers models', () => {
    let files: ModelFiles;
    let reference: (x: Float32Array) => Float32Array;
    before(async () => {
      const fixture = await keras2Dense(path.join(root, 'dense'));
      reference = fixture.reference;
      files = await readModelFiles(fixture.entry, { root });
    });

    it('runs the verified ONNX export when the exporter can express the model', async () => {
      const sessions = liveOrtSessions();
      const tensors = tf.memory().numTensors;
      const chosen = await createRunner(files, { exporter: denseOnlyExporter() });
      assert.equal(chosen.exported, true);
      assert.match(chosen.runner.runtime, /^onnxruntime-/);
      assert.ok(chosen.maxAbsDiff !== undefined && chosen.maxAbsDiff < 1e-5, `diff ${chosen.maxAbsDiff}`);
      assert.ok((await checkOutputs((x, n) => chosen.runner.predict(x, n), reference, 4)) < 1e-5);
      assert.equal(tf.memory().numTensors, tensors, 'the TF.js model used for the check is released');
      await chosen.runner.dispose();
      assert.equal(liveOrtSessions(), sessions);
    });

    it('falls back to TF.js, reporting the difference, when the export does not match', async () => {
      const sessions = liveOrtSessions();
      const chosen = await createRunner(files, { exporter: denseOnlyExporter(0.05), verifyMessages: 0 });
      assert.equal(chosen.exported, false);
      assert.match(chosen.runner.runtime, /^tfjs-/);
      assert.ok((chosen.maxAbsDiff ?? 0) > 1e-4);
      assert.match(chosen.fallbackReason ?? '', /ONNX export on the random probe: output \S+ differs by/);
      assert.equal(liveOrtSessions(), sessions, 'the rejected ONNX session is released');
      assert.ok((await checkOutputs((x, n) => chosen.runner.predict(x, n), reference, 4)) < 1e-5);
      await chosen.runner.dispose();
    });

    it('falls back to TF.js when the exporter cannot express the model', async () => {
      const chosen = await createRunner(files, {
        exporter: () => {
          throw new Error('cannot export to ONNX: no exporter for Dense');
        },
      });
      assert.match(chosen.runner.runtime, /^tfjs-/);
      assert.match(chosen.fallbackReason ?? '', /not exported to ONNX/);
      await chosen.runner.dispose();
    });

    it('honours a TF.js backend preference; TF.js keeps one backend while its models live', async () => {
      const cpu = await createRunner(files, { runtime: 'tfjs-cpu', exporter: denseOnlyExporter() });
      assert.equal(cpu.runner.runtime, 'tfjs-cpu');
      const wasm = await createRunner(files, { runtime: 'tfjs-wasm' });
      assert.equal(wasm.runner.runtime, 'tfjs-cpu');
      assert.match(wasm.fallbackReason ?? '', /tfjs-wasm could not start/);
      await cpu.runner.dispose();
      await wasm.runner.dispose();
      const again = await createRunner(files, { runtime: 'tfjs-wasm' });
      assert.equal(again.runner.runtime, 'tfjs-wasm');
      assert.ok((await checkOutputs((x, n) => again.runner.predict(x, n), reference, 4)) < 1e-5);
      await again.runner.dispose();
    });

    it('asks for the input shape when the model input has unknown dimensions (or uses a fitting saved one)', async () => {
      const dir = path.join(root, 'variable');
      await fs.mkdir(dir);
      const model = tfl.sequential({
        layers: [tfl.layers.simpleRNN({ units: 2, inputShape: [null, 3] }), tfl.layers.dense({ units: 1 })],
      });
      await model.save(fileSaveHandler(dir));
      model.dispose();
      const variable = await readModelFiles(dir, { root });
      await assert.rejects(
        createRunner(variable, { runtime: 'tfjs' }),
        /unknown dimensions: configure the input shape/,
      );
      await assert.rejects(
        createRunner(variable, { runtime: 'tfjs', fallbackInputShape: [7, 4] }),
        /unknown dimensions/,
        'a saved shape that does not fit is not used',
      );
      const saved = await createRunner(variable, { runtime: 'tfjs', fallbackInputShape: [9, 3] });
      assert.deepEqual(saved.runner.inputShape, [9, 3]);
      await saved.runner.dispose();
      const fixed = await createRunner(variable, { runtime: 'tfjs', inputShape: [7, 3] });
      assert.deepEqual(fixed.runner.inputShape, [7, 3]);
      assert.deepEqual(fixed.runner.outputShape, [1]);
      await fixed.runner.dispose();
    });
  });
});
