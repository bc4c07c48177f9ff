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
import { graphCnn, graphCnnWeights, graphMlp } from '../fixtures/tfjs-fixtures';

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
