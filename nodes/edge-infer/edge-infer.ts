import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ModelNotInStoreYet } from '../../lib/errors';
import {
  interpretOutputs,
  prepareFeeds,
  splitOutputs,
  stackFeeds,
  type InferenceMode,
} from '../../lib/models/serve/inference';
import { MicroBatcher } from '../../lib/models/serve/micro-batcher';
import { runStreamJobs, streamsBatchable } from '../../lib/models/serve/stream-batch';
import type { LoadedModelInfo } from '../../lib/models/serve/model-handle';
import { runNamed } from '../../lib/models/runtime/runner';
import {
  checkStreamSettings,
  DEFAULT_MAX_STREAMS,
  messageInputs,
  parseConstants,
  parseStatePairs,
  StreamStates,
  type StreamSettings,
} from '../../lib/models/serve/streams';
import type { TensorSpec } from '../../lib/models/runtime/runner';
import { commandOf } from '../shared/command';
import { Scaler } from '../../lib/preprocess/scaling';
import { useModel } from '../shared/model-config';
import { errorText, failStart, onClose, onInput, parseOrFail } from '../shared/node-utils';
import { SettingError, Settings } from '../shared/settings';
import { Status } from '../shared/status';

type EdgeInferDef = NodeDef & Record<string, unknown>;

interface Job {
  payload: unknown;
  /** Stream of a stateful model (msg.topic). */
  stream: string;
}

interface JobResult {
  outputs: Record<string, Float32Array>;
  info: LoadedModelInfo;
  batchSize: number;
}

/** How one loaded model is fed: its inputs from messages, state and constants, its streams. */
interface Feeding {
  fromMessage: TensorSpec[];
  streams?: StreamStates;
}

const MODES: InferenceMode[] = ['classify', 'regress', 'raw'];

/** A text setting parsed by a lib parser; its error names the field. */
function parseSetting<T>(config: EdgeInferDef, field: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new SettingError(field, config[field], (err as Error).message);
  }
}

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
    outputName: s.text('outputName', ''),
    state: parseSetting(config, 'state', () => parseStatePairs(s.text('state', ''))),
    constants: parseSetting(config, 'constants', () => parseConstants(s.text('constants', ''))),
    maxStreams: s.number('maxStreams', DEFAULT_MAX_STREAMS, { integer: true, min: 1 }),
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
      if (info.fallbackReason) parts.push(status.t('status.fallback'));
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
    // One Scaler and one way of feeding per loaded model, built on its first batch.
    const scalers = new WeakMap<LoadedModelInfo, Scaler>();
    const scalerFor = (info: LoadedModelInfo): Scaler | undefined => {
      if (!normalise || !info.normalisation) return undefined;
      let scaler = scalers.get(info);
      if (!scaler) scalers.set(info, (scaler = new Scaler(info.normalisation)));
      return scaler;
    };
    const feedings = new WeakMap<LoadedModelInfo, Feeding>();
    const feedingFor = (info: LoadedModelInfo): Feeding => {
      let feeding = feedings.get(info);
      if (feeding) return feeding;
      const fromMeta = info.streams ?? {};
      const settings: StreamSettings = {
        state: options.state.length > 0 ? options.state : (fromMeta.state ?? []),
        constants: { ...(fromMeta.constants ?? {}), ...options.constants },
        maxStreams: options.maxStreams,
      };
      const used = settings.state.length > 0 || Object.keys(settings.constants).length > 0;
      if (used) checkStreamSettings(settings, info.inputs, info.outputs);
      feeding = {
        fromMessage: messageInputs(used ? settings : undefined, info.inputs),
        streams: used ? new StreamStates(settings) : undefined,
      };
      feedings.set(info, feeding);
      return feeding;
    };
    let streamsInUse: StreamStates | undefined;

    // One batch: every message is prepared against the model serving now; bad ones fail alone.
    // A stateful model runs each stream's messages in order on its state; different streams batch.
    const runBatch = async (jobs: Job[]): Promise<(JobResult | Error)[]> => {
      // A first model on its way (e.g. a followed store model just saved): wait for it rather
      // than fail the messages that arrive meanwhile.
      if (!handle.info && handle.loading) await handle.ready(30000).catch(() => undefined);
      const lease = handle.lease();
      try {
        const { info, runner } = lease;
        const feeding = feedingFor(info);
        const streams = feeding.streams;
        streamsInUse = streams;
        const scaler = scalerFor(info);
        const prepared = jobs.map((job) => {
          try {
            const fed = prepareFeeds(job.payload, feeding.fromMessage, { channels, normalisation: scaler });
            return streams && !streams.stateful
              ? { ...streams.feedsFor(job.stream, info.inputs), ...fed }
              : fed;
          } catch (err) {
            return err as Error;
          }
        });
        if (streams?.stateful) {
          const ran = await runStreamJobs(
            runner,
            streams,
            info.inputs,
            jobs.map((job, i) => ({ feeds: prepared[i], stream: job.stream })),
            streamsBatchable(streams, info.inputs, info.outputs),
          );
          return ran.map((r) =>
            r instanceof Error ? r : { outputs: r.outputs, info, batchSize: r.batchSize },
          );
        }
        const valid = prepared.filter((p): p is Record<string, Float32Array> => !(p instanceof Error));
        if (valid.length === 0) return prepared as Error[];
        const outputs = splitOutputs(
          await runNamed(runner, stackFeeds(valid, info.inputs), valid.length),
          valid.length,
        );
        let k = 0;
        return prepared.map((p) =>
          p instanceof Error ? p : { outputs: outputs[k++], info, batchSize: valid.length },
        );
      } finally {
        lease.release();
      }
    };

    const batcher = new MicroBatcher<Job, JobResult>(runBatch, options.batching);
    batcher.onDepth = showStatus;
    showStatus();

    onInput(node, status, async (msg, send) => {
      const arrived = performance.now();
      const stream = msg.topic === undefined || msg.topic === null ? '' : String(msg.topic);
      if ((options.state.length > 0 || streamsInUse?.stateful) && commandOf(msg, ['reset']) === 'reset') {
        // A reset clears the message's stream (all streams without a topic); a payload then runs fresh.
        streamsInUse?.reset(stream === '' || stream === 'reset' ? undefined : stream);
        if (msg.payload === undefined) return;
      }
      let result: JobResult;
      try {
        result = await batcher.submit({ payload: RED.util.getMessageProperty(msg, property), stream });
      } catch (err) {
        // Without a model the load error is the cause: say that, not "inference failed".
        if (!handle.info && handle.lastError) throw handle.lastError;
        // Translated framing for the user, the library's own message inside; `cause` keeps it whole.
        throw Object.assign(new Error(RED._('edge-infer.errors.failed', { error: errorText(err) })), {
          cause: err,
        });
      }
      const { info } = result;
      const { value, outputs } = interpretOutputs(result.outputs, info.outputs, mode, {
        labels: labels.length > 0 ? labels : info.labels,
        topK,
        outputName: options.outputName || undefined,
      });
      RED.util.setMessageProperty(msg, output, value, true);
      if (outputs) msg.outputs = outputs;
      const latencyMs = performance.now() - arrived;
      msg.inference = {
        model: info.name,
        version: info.version,
        runtime: info.runtime,
        latencyMs: Math.round(latencyMs * 1000) / 1000,
        batchSize: result.batchSize,
        ...(info.fallbackReason ? { fallbackReason: info.fallbackReason } : {}),
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
