import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ModelNotInStoreYet } from '../../lib/errors';
import { interpretOutput, prepareInput, type InferenceMode } from '../../lib/models/serve/inference';
import { MicroBatcher, type OverflowPolicy } from '../../lib/models/serve/micro-batcher';
import type { LoadedModelInfo } from '../../lib/models/serve/model-handle';
import { Scaler } from '../../lib/preprocess/scaling';
import { getModelNode } from '../shared/model-config';
import { errorText, listSetting, numberSetting, onClose, onInput, shortText } from '../shared/node-utils';

interface EdgeInferDef extends NodeDef {
  model?: string;
  mode?: string;
  topK?: string | number;
  labels?: string;
  property?: string;
  output?: string;
  channels?: string;
  normalise?: boolean | string;
  maxBatch?: string | number;
  maxWait?: string | number;
  maxQueue?: string | number;
  overflow?: string;
}

interface Job {
  payload: unknown;
}

interface JobResult {
  output: Float32Array;
  info: LoadedModelInfo;
  batchSize: number;
}

const MODES: InferenceMode[] = ['classify', 'regress', 'raw'];

export = function (RED: NodeAPI): void {
  function EdgeInfer(this: Node, config: EdgeInferDef): void {
    RED.nodes.createNode(this, config);
    setup(this, config);
  }

  function setup(node: Node, config: EdgeInferDef): void {
    const modelNode = getModelNode(RED, config.model);
    const mode: InferenceMode = MODES.includes(config.mode as InferenceMode)
      ? (config.mode as InferenceMode)
      : 'classify';
    const topK = Math.max(1, Math.floor(numberSetting(config.topK, 1)));
    const labels = listSetting(config.labels);
    const channels = listSetting(config.channels);
    const property = (config.property ?? '').trim() || 'payload';
    const output = (config.output ?? '').trim() || 'payload';
    const normalise =
      config.normalise === undefined || config.normalise === true || config.normalise === 'true';
    const overflow: OverflowPolicy = config.overflow === 'reject' ? 'reject' : 'drop-oldest';

    if (!modelNode) {
      node.status({ fill: 'red', shape: 'ring', text: RED._('edge-infer.status.no-model') });
      onInput(node, () => {
        throw new Error(RED._('edge-infer.errors.no-model'));
      });
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

    const batcher = new MicroBatcher<Job, JobResult>(runBatch, {
      maxBatch: Math.max(1, Math.floor(numberSetting(config.maxBatch, 32))),
      maxWaitMs: Math.max(0, numberSetting(config.maxWait, 0)),
      maxQueue: Math.max(1, Math.floor(numberSetting(config.maxQueue, 1000))),
      overflow,
    });

    // Status: runtime, last latency, queue depth; refreshed at most four times a second.
    let lastLatency: number | undefined;
    let statusTimer: NodeJS.Timeout | undefined;
    const showStatus = (): void => {
      statusTimer = undefined;
      const info = handle.info;
      if (!info) {
        if (handle.loading)
          node.status({ fill: 'yellow', shape: 'ring', text: RED._('edge-infer.status.loading') });
        else if (handle.lastError && !(handle.lastError instanceof ModelNotInStoreYet))
          node.status({ fill: 'red', shape: 'ring', text: shortText(handle.lastError.message) });
        else node.status({ fill: 'grey', shape: 'ring', text: RED._('edge-infer.status.waiting') });
        return;
      }
      const parts: string[] = [info.runtime];
      if (lastLatency !== undefined) parts.push(`${lastLatency.toFixed(lastLatency < 10 ? 2 : 0)} ms`);
      const depth = batcher.depth;
      if (depth > 0) parts.push(RED._('edge-infer.status.queue', { depth }));
      node.status({ fill: 'green', shape: depth > 0 ? 'ring' : 'dot', text: parts.join(' · ') });
    };
    // Leading edge at once, then at most every 250 ms, so a burst shows its queue depth.
    let shownAt = 0;
    const refreshStatus = (): void => {
      if (statusTimer) return;
      const wait = shownAt + 250 - Date.now();
      if (wait <= 0) {
        shownAt = Date.now();
        showStatus();
      } else {
        statusTimer = setTimeout(() => {
          shownAt = Date.now();
          showStatus();
        }, wait);
      }
    };
    batcher.onDepth = refreshStatus;
    const onLoaded = (): void => refreshStatus();
    const onLoadFailed = (): void => {
      if (!handle.info) showStatus();
    };
    handle.on('loaded', onLoaded);
    handle.on('loading', refreshStatus);
    handle.on('load-failed', onLoadFailed);
    showStatus();

    onInput(node, async (msg, send) => {
      const arrived = performance.now();
      let result: JobResult;
      try {
        result = await batcher.submit({ payload: RED.util.getMessageProperty(msg, property) });
      } catch (err) {
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
      refreshStatus();
    });

    onClose(node, () => {
      batcher.close();
      if (statusTimer) clearTimeout(statusTimer);
      handle.off('loaded', onLoaded);
      handle.off('loading', refreshStatus);
      handle.off('load-failed', onLoadFailed);
    });
  }

  RED.nodes.registerType('edge-infer', EdgeInfer);
};
