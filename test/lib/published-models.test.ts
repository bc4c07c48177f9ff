import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { availableOrtRuntimes } from '../../lib/models/runtime/ort-session';
import { OrtRunner } from '../../lib/models/runtime/ort-runner';
import { renamedRunner, runNamed, type ModelRunner, type TensorSpec } from '../../lib/models/runtime/runner';
import { createRunner } from '../../lib/models/runtime/select';
import { useBackend } from '../../lib/models/runtime/tfjs';
import { readModelFiles } from '../../lib/models/store/model-files';
import { ModelHandle } from '../../lib/models/serve/model-handle';
import { onnxRefusesZeros } from '../fixtures/onnx-fixtures';
import { maxAbsDiff, randomValues } from '../fixtures/reference';
import { graphMlp } from '../fixtures/tfjs-fixtures';

/** Shapes and habits of models as others publish them. */
describe('models as others publish them', function () {
  this.timeout(60000);
  let root: string;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-published-'));
    await useBackend(['wasm', 'cpu']);
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  for (const runtime of ['onnxruntime-node', 'onnxruntime-web'] as const) {
    it(`${runtime}: an unnamed dimension is unknown, and a model that refuses zeros loads on its declared shapes`, async function () {
      if (!availableOrtRuntimes().includes(runtime)) {
        console.log(`      ${runtime} does not load here; skipping`);
        this.skip();
      }
      const runner = await OrtRunner.create(onnxRefusesZeros(true), runtime);
      try {
        assert.deepEqual(
          runner.inputs.map((s) => [s.name, s.shape, s.batched]),
          [
            ['x', [4], true],
            ['sr', [], false],
          ],
        );
        assert.deepEqual(
          runner.outputs.map((s) => [s.name, s.shape, s.batched]),
          [['y', [4], true]],
        );
        assert.match(runner.notes.join(' '), /as the model declares them/);
        const x = randomValues(12, 5);
        const out = await runNamed(runner, { x, sr: Float32Array.of(3) }, 3);
        assert.deepEqual(
          Array.from(out.y),
          Array.from(x, (v) => Math.fround(v * 2)),
        );
      } finally {
        await runner.dispose();
      }
      await assert.rejects(
        OrtRunner.create(onnxRefusesZeros(false), runtime),
        (err: Error & { code?: string }) =>
          err.code === 'runtime-failed' &&
          /probe of zeros and does not declare its output shapes/.test(err.message),
      );
    });
  }

  it('serves a model that refuses zeros through the model handle, without a warm-up', async function () {
    if (availableOrtRuntimes().length === 0) {
      console.log('      no ONNX Runtime loads here; skipping');
      this.skip();
    }
    const file = path.join(root, 'refuses-zeros.onnx');
    await fs.writeFile(file, onnxRefusesZeros(true));
    const handle = new ModelHandle({ userDir: root });
    try {
      const info = await handle.load(file);
      assert.match(info.notes.join(' '), /no warm-up: the model refuses zeros/);
      const lease = handle.lease();
      try {
        const out = await runNamed(
          lease.runner,
          { x: Float32Array.of(1, 2, 3, 4), sr: Float32Array.of(1) },
          1,
        );
        assert.deepEqual(Array.from(out.y), [2, 4, 6, 8]);
      } finally {
        lease.release();
      }
    } finally {
      await handle.close();
    }
  });

  it('names the runtime and the cause when TF.js cannot run a graph model', async () => {
    const fixture = await graphMlp(path.join(root, 'unknown-op'));
    const json = JSON.parse(await fs.readFile(fixture.entry, 'utf8'));
    json.modelTopology.node.find((n: { op: string }) => n.op === 'Relu').op = 'FancyRelu';
    await fs.writeFile(fixture.entry, JSON.stringify(json));
    await assert.rejects(
      createRunner(await readModelFiles(fixture.entry, { root }), { runtime: 'tfjs' }),
      (err: Error & { code?: string }) =>
        err.code === 'runtime-failed' &&
        /^TF\.js \((wasm|cpu)\) could not run the model on a probe of zeros: .*FancyRelu/.test(err.message),
    );
  });

  it('maps a converted model onto its original by output name when it lists them in another order', async () => {
    const spec = (name: string, size: number): TensorSpec => ({
      name,
      shape: [size],
      dtype: 'float32',
      batched: true,
    });
    const inner: ModelRunner = {
      runtime: 'onnxruntime-node',
      inputShape: [2],
      outputShape: [3],
      inputs: [spec('x', 2)],
      outputs: [spec('boxes', 3), spec('scores', 1)],
      predict: () => Promise.resolve(Float32Array.of(7, 8, 9)),
      run: (feeds) =>
        Promise.resolve({ boxes: Float32Array.of(7, 8, 9), scores: Float32Array.of(feeds.x[0]) }),
      dispose: () => Promise.resolve(),
    };
    const renamed = renamedRunner(inner, [spec('x', 2)], [spec('scores', 1), spec('boxes', 3)]);
    assert.deepEqual(
      renamed.outputs?.map((o) => [o.name, o.shape]),
      [
        ['scores', [1]],
        ['boxes', [3]],
      ],
    );
    assert.deepEqual(renamed.outputShape, [1]);
    const out = await runNamed(renamed, { x: Float32Array.of(5, 6) }, 1);
    assert.deepEqual([Array.from(out.scores), Array.from(out.boxes)], [[5], [7, 8, 9]]);
    assert.deepEqual(Array.from(await renamed.predict(Float32Array.of(4, 0), 1)), [4]);
    // Other names (a layers model's export): by position.
    const exported = renamedRunner(inner, [spec('sensor', 2)], [spec('first', 3), spec('second', 1)]);
    const byPosition = await runNamed(exported, { sensor: Float32Array.of(3, 0) }, 1);
    assert.deepEqual([Array.from(byPosition.first), Array.from(byPosition.second)], [[7, 8, 9], [3]]);
  });

  it('runs a TF.js graph model with a fixed batch of 1 on a batch of several samples, and verifies its ONNX export', async () => {
    const fixture = await graphMlp(path.join(root, 'batch-one'), {}, 1);
    const files = await readModelFiles(fixture.entry, { root });
    const x = randomValues(3 * 4, 7);
    const expected = [0, 1, 2].flatMap((i) => Array.from(fixture.reference(x.subarray(i * 4, i * 4 + 4))));
    const tfjs = await createRunner(files, { runtime: 'tfjs' });
    try {
      const got = await tfjs.runner.predict(x, 3);
      assert.ok(maxAbsDiff(got, expected) < 1e-5, `TF.js: ${maxAbsDiff(got, expected)}`);
    } finally {
      await tfjs.runner.dispose();
    }
    if (availableOrtRuntimes().length === 0) return;
    const auto = await createRunner(files, {});
    try {
      assert.equal(auto.exported, true, String(auto.fallbackReason));
      const got = await auto.runner.predict(x, 3);
      assert.ok(maxAbsDiff(got, expected) < 1e-5, `ONNX: ${maxAbsDiff(got, expected)}`);
    } finally {
      await auto.runner.dispose();
    }
  });
});
