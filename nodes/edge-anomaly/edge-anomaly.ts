import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { AnomalyDetector, type DetectorState } from '../../lib/anomaly/detector';
import { detectPayload, type PayloadResult } from '../../lib/anomaly/message';
import { handleRunner } from '../../lib/models/serve/model-handle';
import type { ModelRunner } from '../../lib/models/runtime/runner';
import { commandOf } from '../shared/command';
import { useModel } from '../shared/model-config';
import { errorText, failStart, onClose, onInput } from '../shared/node-utils';
import { closeState, nodeState } from '../shared/state';
import { Status } from '../shared/status';
import { parseOptions } from './settings';

type EdgeAnomalyDef = NodeDef & Record<string, unknown>;

/** Status updates at most this often, so fast sensors do not flood the editor. */
const STATUS_INTERVAL_MS = 500;
/** The detector state is written at most this often while it changes (and on close). */
const PERSIST_INTERVAL_MS = 10000;

export = function register(RED: NodeAPI): void {
  function EdgeAnomalyNode(this: Node, config: EdgeAnomalyDef): void {
    RED.nodes.createNode(this, config);
    start(this, config);
  }

  function start(node: Node, config: EdgeAnomalyDef): void {
    const status = new Status(node, RED, 'edge-anomaly', { intervalMs: STATUS_INTERVAL_MS });
    let detector: AnomalyDetector;
    let options: ReturnType<typeof parseOptions>;
    try {
      options = parseOptions(config);
      // Method 'model': the edge-model node's model, leased per batch so its swaps apply at once.
      let externalModel: ModelRunner | undefined;
      if (options.method === 'model') {
        const modelNode = useModel(RED, node, config.model);
        if (!modelNode) throw new Error(RED._('edge-anomaly.errors.noModel'));
        externalModel = handleRunner(modelNode.handle);
      }
      detector = new AnomalyDetector(options, {
        externalModel,
        onTrainingProgress: (p) =>
          status.set('working', 'status.training', { epoch: p.epoch, epochs: p.epochs }, true),
      });
    } catch (err) {
      failStart(node, status, err);
      return;
    }
    const { channels, persist } = options;
    const state = nodeState(RED, node, 'anomaly', () => detector.snapshot(), {
      delayMs: PERSIST_INTERVAL_MS,
      onError: (err) => node.warn(RED._('edge-anomaly.errors.save', { error: errorText(err) })),
    });
    /** Writes the state now (a reset, the end of learning). */
    const saveNow = (): void => {
      if (!persist) return;
      state.changed();
      void state.flush();
    };

    if (persist) {
      // Queued ahead of any message, so the first sample already sees the restored state.
      void detector
        .restoreWith(async () => {
          let saved: DetectorState | undefined;
          try {
            saved = state.readSync() as DetectorState | undefined;
          } catch (err) {
            node.warn(RED._('edge-anomaly.errors.restore', { error: errorText(err) }));
          }
          if (!saved) return null;
          if (!detector.compatible(saved)) {
            node.log(RED._('edge-anomaly.log.settingsChanged'));
            return null;
          }
          return saved;
        })
        .then((restored) => {
          if (restored) showStatus(null);
        })
        .catch((err: unknown) => node.warn(RED._('edge-anomaly.errors.restore', { error: errorText(err) })));
    }

    function showStatus(result: PayloadResult | null, force = true): void {
      if (!result) {
        if (detector.learning) status.set('waiting', 'status.waiting', {}, force);
        else status.set('ok', 'status.restored', {}, force);
      } else if (result.learning) {
        status.set(
          'working',
          'status.learning',
          { percent: Math.floor((result.details.progress ?? 0) * 100) },
          force,
        );
      } else if (result.details.relearned) {
        status.set('ok', 'status.relearned', {}, force);
      } else if (result.isAnomaly) {
        status.set('alert', 'status.anomaly', { score: result.score.toFixed(2) }, force);
      } else {
        status.set('ok', 'status.normal', { score: result.score.toFixed(2) }, force);
      }
    }
    showStatus(null);

    onInput(node, status, async (msg, send) => {
      // Everything this message needs is queued now, before the next message can queue its work.
      const resetting = commandOf(msg, ['reset'] as const) === 'reset';
      const reset = resetting ? detector.reset() : null;
      const payload = msg.payload;
      const hasSample = !(
        resetting &&
        (payload === undefined || payload === null || typeof payload === 'string')
      );
      const timestamp =
        typeof msg.timestamp === 'number' && Number.isFinite(msg.timestamp) ? msg.timestamp : Date.now();
      const pending = hasSample ? detectPayload(detector, payload, timestamp, channels) : null;
      pending?.catch(() => undefined);
      const wasLearning = detector.learning;
      if (reset) {
        await reset;
        saveNow();
      }
      if (!pending) {
        msg.payload = { score: 0, isAnomaly: false, threshold: detector.options.threshold, learning: true };
        msg.anomaly = { method: detector.options.method, phase: 'learning', index: 0, reset: true };
        showStatus(null);
        send([msg as NodeMessage, null]);
        return;
      }
      const result = await pending;
      const { score, isAnomaly, threshold, learning } = result;
      msg.payload = { score, isAnomaly, threshold, learning };
      msg.anomaly = { ...result.details, ...(result.rows ? { rows: result.rows } : {}) };
      const alert = isAnomaly || result.details.event === 'end';
      showStatus(result, result.details.event !== undefined);
      // The fitted model is saved as soon as learning ends; later changes at most every few seconds.
      if (wasLearning && !detector.learning) saveNow();
      else if (persist) state.changed();
      send([msg as NodeMessage, alert ? (msg as NodeMessage) : null]);
    });

    onClose(node, async (removed) => {
      status.cancel();
      // Taken now rather than queued: a network still training is abandoned, not awaited
      // (its learning samples are in the state, so it trains again after the restart).
      const last = persist && !removed ? detector.state() : undefined;
      if (last) state.changed();
      await detector.close();
      await closeState(state, removed, () => last);
      status.clear();
    });
  }

  RED.nodes.registerType('edge-anomaly', EdgeAnomalyNode);
};
