import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ModelNotInStoreYet } from '../../lib/errors';
import { interpretOutput, prepareInput, type InferenceMode } from '../../lib/models/serve/inference';
import { MicroBatcher } from '../../lib/models/serve/micro-batcher';
import type { LoadedModelInfo } from '../../lib/models/serve/model-handle';
import { Scaler } from '../../lib/preprocess/scaling';
import { useModel } from '../shared/model-config';
import { errorText, failStart, onClose, onInput, parseOrFail } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import { Status } from '../shared/status';

type EdgeInferDef = NodeDef & Record<string, unknown>;

interface Job {
  payload: unknown;
}

interface JobResult {
  output: Float32Array;
  info: LoadedModelInfo;
  batchSize: number;
}

const MODES: InferenceMode[] = ['classify', 'regress', 'raw'];

function parseOptions(config: EdgeInferDef) {
  const s = new Settings(config);
  return {
    mode: s.choice('mode', MODES, 'classify'),
    topK: s.number('topK', 1, { integer: true, min: 1 }),
    labels: s.list('labels'),
    channels: s.list('channels'),
    property: s.text('property', 'payload'),
    output: s.text('output', 'payload'),
    normalise: s.bool('normalise', true),
    batching: {
      maxBatch: s.number('maxBatch', 32, { integer: true, min: 1 }),
      maxWaitMs: s.number('maxWait', 0, { min: 0 }),
      maxQueue: s.number('maxQueue', 1000, { integer: true, min: 1 }),
      overflow: s.choice('overflow', ['drop-oldest', 'reject'] as const, 'drop-oldest'),
    },
  };
}

export = function (RED: NodeAPI): void {
  function EdgeInfer(this: Node, config: EdgeInferDef): void {
    RED.nodes.createNode(this, config);
    setup(this, config);
  }

  function setup(node: Node, config: EdgeInferDef): void {
    const status = new Status(node, RED, 'edge-infer');
    const options = parseOrFail(node, status, () => parseOptions(config));
    if (!options) return;
    const { mode, topK, labels, channels, property, output, normalise } = options;
    let lastLatency: number | undefined;

    /** Runtime, last latency and queue depth; while there is no model, why not (the load error). */
    const showStatus = (): void => {
      const info = modelNode?.handle.info;
      if (!modelNode || !info) {
        const handle = modelNode?.handle;
        if (handle?.loading) status.set('working', 'status.loading');
        else if (handle?.lastError && !(handle.lastError instanceof ModelNotInStoreYet))
          status.error(handle.lastError);
        else status.set('waiting', 'status.waiting');
        return;
      }
      const parts: string[] = [
        info.noNative ? `${info.runtime} ${status.t('status.noNative')}` : info.runtime,
      ];
      if (lastLatency !== undefined) parts.push(`${lastLatency.toFixed(lastLatency < 10 ? 2 : 0)} ms`);
      // Listeners run only after setup, when the batcher below exists.
      const depth = batcher.depth;
      if (depth > 0) parts.push(status.t('status.queue', { depth }));
      if (refused) parts.push(status.t('status.refused', { code: refused }));
      status.text(refused ? 'warning' : 'ok', parts.join(' · '));
    };
    /** A fleet version this device refused: shown (yellow) until a model loads; the current one serves. */
    let refused: string | undefined;
    const onRefused = (err: { code?: string }): void => {
      refused = err.code ?? 'refused';
      showStatus();
    };
    const onLoaded = (): void => {
      refused = undefined;
      showStatus();
    };
    const modelNode = useModel(RED, node, config.model, {
      loaded: onLoaded,
      loading: showStatus,
      'load-failed': showStatus,
      'fleet-refused': onRefused,
    });
    if (!modelNode) {
      failStart(node, status, new Error(RED._('edge-infer.errors.no-model')));
      return;
    }
    const handle = modelNode.handle;
    // One Scaler per loaded model, built on its first batch.
    const scalers = new WeakMap<LoadedModelInfo, Scaler>();
    const scalerFor = (info: LoadedModelInfo): Scaler | undefined => {
      if (!normalise || !info.normalisation) return undefined;
      let scaler = scalers.get(info);
      if (!scaler) scalers.set(info, (scaler = new Scaler(info.normalisation)));
      return scaler;
    };

    // One batch: every message is reshaped against the model serving now; bad ones fail alone.
    const runBatch = async (jobs: Job[]): Promise<(JobResult | Error)[]> => {
      // A first model on its way (e.g. a followed store model just saved): wait for it rather
      // than fail the messages that arrive meanwhile.
      if (!handle.info && handle.loading) await handle.ready(30000).catch(() => undefined);
      const lease = handle.lease();
      try {
        const { info, runner } = lease;
        const per = info.inputShape.reduce((a, b) => a * b, 1);
        const scaler = scalerFor(info);
        const prepared = jobs.map((job) => {
          try {
            return prepareInput(job.payload, info.inputShape, { channels, normalisation: scaler });
          } catch (err) {
            return err as Error;
          }
        });
        const valid = prepared.filter((p): p is Float32Array => p instanceof Float32Array);
        if (valid.length === 0) return prepared as Error[];
        const input = new Float32Array(valid.length * per);
        valid.forEach((v, i) => input.set(v, i * per));
        const out = await runner.predict(input, valid.length);
        const outPer = out.length / valid.length;
        let k = 0;
        return prepared.map((p) => {
          if (p instanceof Error) return p;
          const slice = out.slice(k * outPer, (k + 1) * outPer);
          k++;
          return { output: slice, info, batchSize: valid.length };
        });
      } finally {
        lease.release();
      }
    };

    const batcher = new MicroBatcher<Job, JobResult>(runBatch, options.batching);
    batcher.onDepth = showStatus;
    showStatus();

    onInput(node, status, async (msg, send) => {
      const arrived = performance.now();
      let result: JobResult;
      try {
        result = await batcher.submit({ payload: RED.util.getMessageProperty(msg, property) });
      } catch (err) {
        // Without a model the load error is the cause: say that, not "inference failed".
        if (!handle.info && handle.lastError) throw handle.lastError;
        // Translated framing for the user, the library's own message inside; `cause` keeps it whole.
        throw Object.assign(new Error(RED._('edge-infer.errors.failed', { error: errorText(err) })), {
          cause: err,
        });
      }
      const { info } = result;
      const value = interpretOutput(result.output, info.outputShape, mode, {
        labels: labels.length > 0 ? labels : info.labels,
        topK,
      });
      RED.util.setMessageProperty(msg, output, value, true);
      const latencyMs = performance.now() - arrived;
      msg.inference = {
        model: info.name,
        version: info.version,
        runtime: info.runtime,
        latencyMs: Math.round(latencyMs * 1000) / 1000,
        batchSize: result.batchSize,
      };
      lastLatency = latencyMs;
      send(msg);
      showStatus();
    });

    onClose(node, () => {
      batcher.close();
      status.cancel();
    });
  }

  RED.nodes.registerType('edge-infer', EdgeInfer);
};
