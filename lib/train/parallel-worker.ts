/**
 * A helper thread of data-parallel training (lib/train/parallel.ts): holds a copy of the model,
 * and on every step reads the weights and its shard of the batch from shared memory, computes
 * the shard's gradients and writes them back.
 */
import { parentPort, workerData } from 'node:worker_threads';
import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from '../models/runtime/tfjs';
import {
  Ctrl,
  HELPER_PHASES,
  compiledFunctions,
  sharedNow,
  shardGradients,
  trainableVariables,
  type HelperInit,
  type ShardResult,
} from './parallel';
import { prepareBackend } from './trainer';

async function main(init: HelperInit): Promise<void> {
  await prepareBackend(init.backend);
  const model = (await tfl.models.modelFromJSON(
    init.topology as Parameters<typeof tfl.models.modelFromJSON>[0],
  )) as tfl.LayersModel;
  model.setWeights(init.weights.map((w, i) => tf.tensor(w, model.weights[i].shape as number[])));
  model.compile({ optimizer: 'sgd', loss: init.loss, metrics: init.metrics });
  const fns = compiledFunctions(model);
  const variables = trainableVariables(model);
  const ctrl = new Int32Array(init.ctrl);
  const params = new Float32Array(init.params);
  const xAll = new Float32Array(init.x);
  const yAll = new Float32Array(init.y);
  const swAll = new Float32Array(init.sampleWeights);
  const grads = new Float32Array(init.grads);
  const stats = new Float64Array(init.stats);
  const timing = new Float64Array(init.timing);
  const timingBase = 1 + init.index * HELPER_PHASES.length;
  let mark = 0;
  const phase = (name: (typeof HELPER_PHASES)[number]): void => {
    const now = sharedNow();
    timing[timingBase + HELPER_PHASES.indexOf(name)] += now - mark;
    mark = now;
  };
  const inSize = init.inputShape.reduce((a, b) => a * b, 1);
  const outSize = init.targetShape.reduce((a, b) => a * b, 1);
  const paramCount = params.length;
  const statWidth = 2 + 2 * init.metrics.length;
  const gradBase = (init.index - 1) * paramCount;
  // No step starts before every helper is ready, so the first one to wait for is generation 1.
  let seen = 0;
  parentPort?.postMessage({ ready: true });

  for (;;) {
    Atomics.wait(ctrl, Ctrl.Generation, seen);
    seen = Atomics.load(ctrl, Ctrl.Generation);
    if (Atomics.load(ctrl, Ctrl.Stop) !== 0) return;
    mark = timing[0];
    phase('wake');
    try {
      const rows = Atomics.load(ctrl, Ctrl.Rows);
      const start = Atomics.load(ctrl, Ctrl.Shards + init.index);
      const end = Atomics.load(ctrl, Ctrl.Shards + init.index + 1);
      if (end > start) {
        let at = 0;
        for (const v of variables) {
          v.assign(tf.tensor(params.subarray(at, at + v.size), v.shape));
          at += v.size;
        }
        const n = end - start;
        const inputs = [
          tf.tensor(xAll.subarray(start * inSize, end * inSize), [n, ...init.inputShape]),
          tf.tensor(yAll.subarray(start * outSize, end * outSize), [n, ...init.targetShape]),
        ];
        if (Atomics.load(ctrl, Ctrl.Weighted)) inputs.push(tf.tensor(swAll.subarray(start, end), [n]));
        phase('load');
        let result: ShardResult;
        try {
          result = shardGradients(model, fns, variables, inputs[0], inputs[1], inputs[2], rows);
        } finally {
          tf.dispose(inputs);
        }
        phase('compute');
        at = gradBase;
        for (const g of result.grads) {
          grads.set(g.dataSync() as Float32Array, at);
          at += g.size;
        }
        tf.dispose(result.grads);
        result.stats.forEach((v, k) => (stats[init.index * statWidth + k] = v));
        phase('write');
      } else {
        grads.fill(0, gradBase, gradBase + paramCount);
        stats.fill(0, init.index * statWidth, (init.index + 1) * statWidth);
      }
    } catch (err) {
      parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err) });
      Atomics.store(ctrl, Ctrl.Failed, 1);
    }
    Atomics.add(ctrl, Ctrl.Done, 1);
    Atomics.notify(ctrl, Ctrl.Done);
  }
}

main(workerData as HelperInit).catch((err: unknown) => {
  parentPort?.postMessage({ error: err instanceof Error ? err.message : String(err) });
});
