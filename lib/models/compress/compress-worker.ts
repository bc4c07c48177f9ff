/** Worker thread entry: runs one compression job and posts its outcome back. */
import { parentPort, workerData } from 'node:worker_threads';
import { runCompressionJob, type CompressJob, type CompressOutcome } from './compress';
import { useBackend } from '../runtime/tfjs';

async function main(job: CompressJob): Promise<CompressOutcome> {
  await useBackend(['tensorflow', 'wasm', 'cpu']);
  return runCompressionJob(job);
}

main(workerData as CompressJob).then(
  (outcome) => {
    const transfer: ArrayBuffer[] = [];
    const data = outcome.artifacts?.weightData;
    if (data instanceof ArrayBuffer) transfer.push(data);
    if (outcome.onnx) transfer.push(outcome.onnx.buffer as ArrayBuffer);
    parentPort?.postMessage({ ok: true, outcome }, transfer);
  },
  (err: unknown) => {
    parentPort?.postMessage({ ok: false, error: err instanceof Error ? err.message : String(err) });
  },
);
