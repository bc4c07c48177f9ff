/** Worker thread entry: runs compression jobs (method `compress`) for lib/util/worker-rpc. */
import { serveRpc } from '../../util/worker-rpc';
import { runCompressionJob, type CompressJob, type CompressOutcome } from './compress';
import { useBackend } from '../runtime/tfjs';

serveRpc({
  compress: async (job: CompressJob, call): Promise<CompressOutcome> => {
    await useBackend(['tensorflow', 'wasm', 'cpu']);
    const outcome = await runCompressionJob(job);
    const data = outcome.artifacts?.weightData;
    if (data instanceof ArrayBuffer) call.transfer(data);
    if (outcome.onnx) call.transfer(outcome.onnx.buffer);
    return outcome;
  },
});
