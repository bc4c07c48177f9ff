import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { availableOrtRuntimes } from '../../lib/models/runtime/ort-session';
import { createRunner } from '../../lib/models/runtime/select';
import { useBackend } from '../../lib/models/runtime/tfjs';
import { readModelFiles } from '../../lib/models/store/model-files';
import { graphCnnLayersTwin } from '../fixtures/graph-cnn-twin';
import { maxAbsDiff, randomValues } from '../fixtures/reference';
import { graphCnn, graphCnnWeights, graphMlp, graphPublishedOps } from '../fixtures/tfjs-fixtures';
import { runNamed } from '../../lib/models/runtime/runner';

describe('TF.js graph models on ONNX Runtime', function () {
  this.timeout(60000);
  let root: string;
  before(async function () {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-graph-onnx-'));
    await useBackend(['wasm', 'cpu']);
    if (availableOrtRuntimes().length === 0) {
      console.log('      no ONNX Runtime loads here; skipping');
      this.skip();
    }
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  it('converts a graph CNN (fused conv, depthwise, pooling, fused matmul) and matches TF.js and its layers twin', async () => {
    const weights = graphCnnWeights();
    const graph = await readModelFiles(await graphCnn(path.join(root, 'cnn'), weights), { root });
    const layers = await readModelFiles(await graphCnnLayersTwin(path.join(root, 'twin'), weights), { root });
    const onOrt = await createRunner(graph, {});
    const onTfjs = await createRunner(graph, { runtime: 'tfjs' });
    const twin = await createRunner(layers, { runtime: 'tfjs' });
    try {
      assert.equal(onOrt.exported, true, onOrt.fallbackReason);
      assert.match(onOrt.runner.runtime, /^onnxruntime-/);
      assert.match(onTfjs.runner.runtime, /^tfjs-/);
      assert.deepEqual(onOrt.runner.inputShape, [8, 8, 1]);
      const x = randomValues(64 * 5, 3, 2);
      const ort = await onOrt.runner.predict(x, 5);
      assert.equal(ort.length, 15);
      assert.ok(maxAbsDiff(ort, await onTfjs.runner.predict(x, 5)) < 1e-5);
      assert.ok(maxAbsDiff(ort, await twin.runner.predict(x, 5)) < 1e-5);
    } finally {
      await onOrt.runner.dispose();
      await onTfjs.runner.dispose();
      await twin.runner.dispose();
    }
  });

  it('converts a graph MLP (MatMul, BiasAdd, Reshape) like its reference', async () => {
    const fixture = await graphMlp(path.join(root, 'mlp'));
    const chosen = await createRunner(await readModelFiles(fixture.entry, { root }), {});
    try {
      assert.equal(chosen.exported, true, chosen.fallbackReason);
      const x = randomValues(4, 9, 1.5);
      assert.ok(maxAbsDiff(await chosen.runner.predict(x, 1), fixture.reference(x)) < 1e-5);
    } finally {
      await chosen.runner.dispose();
    }
  });

  it('converts PReLU (fused and alone), AddN, ResizeBilinear, Cast, a transposed convolution, DepthToSpace and GatherV2, outputs matched by name', async () => {
    const files = await readModelFiles(await graphPublishedOps(path.join(root, 'published')), { root });
    const onOrt = await createRunner(files, {});
    const onTfjs = await createRunner(files, { runtime: 'tfjs' });
    try {
      assert.equal(onOrt.exported, true, onOrt.fallbackReason);
      assert.deepEqual(onOrt.runner.outputs?.map((o) => o.name).sort(), ['pick', 'truncated', 'up']);
      // Three samples of a model with a fixed batch of 1.
      const x = randomValues(32 * 3, 17, 2);
      const got = await runNamed(onOrt.runner, { x }, 3);
      const want = await runNamed(onTfjs.runner, { x }, 3);
      assert.equal(got.up.length, 8 * 8 * 2 * 3);
      assert.ok(maxAbsDiff(got.up, want.up) < 1e-5, `up: ${maxAbsDiff(got.up, want.up)}`);
      assert.deepEqual(Array.from(got.truncated), Array.from(want.truncated));
      assert.equal(got.pick.length, 3 * 16 * 2 * 3);
      assert.ok(maxAbsDiff(got.pick, want.pick) < 1e-5, `pick: ${maxAbsDiff(got.pick, want.pick)}`);
      assert.ok(got.truncated.some((v) => v !== 0) && got.truncated.every(Number.isInteger));
    } finally {
      await onOrt.runner.dispose();
      await onTfjs.runner.dispose();
    }
  });

  it('refuses a graph input of unknown rank other than the first, rather than guessing its shape', async () => {
    const fixture = await graphMlp(path.join(root, 'rankless'));
    const json = JSON.parse(await fs.readFile(fixture.entry, 'utf8'));
    json.modelTopology.node.push({
      name: 'state',
      op: 'Placeholder',
      attr: { dtype: { type: 'DT_FLOAT' }, shape: { shape: { unknownRank: true } } },
    });
    const out = json.modelTopology.node.find((n: { name: string }) => n.name === 'Identity');
    out.op = 'AddV2';
    out.input = ['Softmax', 'state'];
    delete json.signature;
    await fs.writeFile(fixture.entry, JSON.stringify(json));
    await assert.rejects(
      createRunner(await readModelFiles(fixture.entry, { root }), { runtime: 'tfjs' }),
      /input state has no known rank; inputs of any shape other than the first are not supported/,
    );
  });

  it('keeps TF.js, naming the op, for a graph op without a translation', async () => {
    const fixture = await graphMlp(path.join(root, 'odd'));
    const json = JSON.parse(await fs.readFile(fixture.entry, 'utf8'));
    const relu = json.modelTopology.node.find((n: { op: string }) => n.op === 'Relu');
    relu.op = 'Selu';
    await fs.writeFile(fixture.entry, JSON.stringify(json));
    const chosen = await createRunner(await readModelFiles(fixture.entry, { root }), {});
    try {
      assert.match(chosen.runner.runtime, /^tfjs-/);
      assert.match(chosen.fallbackReason ?? '', /not converted to ONNX: .*graph op Selu/);
    } finally {
      await chosen.runner.dispose();
    }
  });
});
