/**
 * The training worker thread: receives one job, trains with TF.js, posts progress after every
 * epoch and the trained artifacts at the end. Cancellation arrives through a shared flag that
 * is read between batches, so it takes effect even while training keeps this thread busy.
 */
import { parentPort } from 'node:worker_threads';
import { CancelledError, trainModel, type TrainData, type TrainSettings } from './trainer';
import type { WorkerReply, WorkerRequest } from './worker-protocol';

function post(reply: WorkerReply, transfer: ArrayBuffer[] = []): void {
  parentPort?.postMessage(reply, transfer);
}

async function run(settings: TrainSettings, data: TrainData, cancelFlag: Int32Array): Promise<void> {
  try {
    const result = await trainModel(settings, data, {
      isCancelled: () => Atomics.load(cancelFlag, 0) !== 0,
      onEpoch: (progress) => post({ type: 'progress', progress }),
    });
    post({ type: 'done', result }, [result.artifacts.weightData]);
  } catch (err) {
    if (err instanceof CancelledError) post({ type: 'cancelled' });
    else post({ type: 'error', message: err instanceof Error ? err.message : String(err) });
  }
}

parentPort?.on('message', (request: WorkerRequest) => {
  if (request.type === 'train') {
    void run(request.settings, request.data, new Int32Array(request.cancelFlag));
  }
});
