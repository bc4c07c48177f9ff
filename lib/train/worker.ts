/**
 * The training worker thread: trains with TF.js (progress after every epoch, cancellation read
 * between batches, so it takes effect while training keeps this thread busy), and can hold the
 * trained model to run it (the anomaly detector scores windows here).
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from '../models/runtime/tfjs';
import { serveRpc } from '../util/worker-rpc';
import { prepareBackend, trainModel, type EpochProgress, type TrainedArtifacts } from './trainer';
import type { LoadParams, PredictParams, TrainParams } from './worker-protocol';

let held: tfl.LayersModel | null = null;

async function hold(artifacts: TrainedArtifacts): Promise<void> {
  held?.dispose();
  held = null;
  held = await tfl.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: artifacts.modelTopology,
      weightSpecs: artifacts.weightSpecs,
      // A copy: the artifacts' buffer may be moved to the caller afterwards.
      weightData: artifacts.weightData.slice(0),
    }),
  );
}

serveRpc({
  train: async ({ settings, data, keep }: TrainParams, call) => {
    const result = await trainModel(settings, data, {
      isCancelled: call.cancelled,
      onEpoch: (progress: EpochProgress) => call.progress(progress),
    });
    if (keep) await hold(result.artifacts);
    call.transfer(result.artifacts.weightData);
    return result;
  },
  load: async ({ artifacts, backend }: LoadParams) => {
    await prepareBackend(backend);
    await hold(artifacts);
  },
  predict: async ({ x, count }: PredictParams, call) => {
    const model = held;
    if (!model) throw new Error('no model loaded');
    const shape = model.inputs[0].shape.slice(1).map((v) => v ?? 1);
    const y = tf.tidy(() => model.predict(tf.tensor(x, [count, ...shape])) as tf.Tensor);
    const out = (await y.data()) as Float32Array;
    y.dispose();
    call.transfer(out.buffer);
    return out;
  },
  memory: async () => tf.memory().numTensors,
});
