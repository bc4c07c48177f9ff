import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import {
  AnomalyDetector,
  DEFAULT_OPTIONS,
  METHODS,
  type DetectorOptions,
  type DetectorState,
  type Method,
  type NanPolicy,
} from '../../lib/anomaly/detector';
import { detectPayload, type PayloadResult } from '../../lib/anomaly/message';
import { handleRunner } from '../../lib/models/serve/model-handle';
import type { ModelRunner } from '../../lib/models/runtime/runner';
import { readJsonFile, writeFileAtomic } from '../../lib/util/atomic';
import { getModelNode } from '../shared/model-config';
import {
  errorText,
  listSetting,
  numberSetting,
  onClose,
  onInput,
  setErrorStatus,
} from '../shared/node-utils';

interface EdgeAnomalyDef extends NodeDef {
  method: string;
  window: string | number;
  alpha: string | number;
  learning: string | number;
  learningUnit: string;
  threshold: string | number;
  hysteresis: string | number;
  minDuration: string | number;
  nanPolicy: string;
  adaptRate: string | number;
  channels: string;
  seqWindow: string | number;
  epochs: string | number;
  persist: boolean;
  /** edge-model config node supplying the model of method 'model'. */
  model?: string;
}

/** Status updates at most this often, so fast sensors do not flood the editor. */
const STATUS_INTERVAL_MS = 500;
/** The detector state is written at most this often while it changes (and on close). */
const PERSIST_INTERVAL_MS = 10000;

const UNIT_MS: Record<string, number> = { seconds: 1000, minutes: 60000, hours: 3600000 };

export function parseOptions(config: EdgeAnomalyDef): Partial<DetectorOptions> {
  const method = (config.method || 'auto') as Method;
  if (!METHODS.includes(method)) throw new Error(`unknown method "${config.method}"`);
  const learning = numberSetting(config.learning, DEFAULT_OPTIONS.learningSamples);
  const unitMs = UNIT_MS[config.learningUnit] ?? 0;
  return {
    method,
    window: numberSetting(config.window, DEFAULT_OPTIONS.window),
    alpha: numberSetting(config.alpha, DEFAULT_OPTIONS.alpha),
    learningSamples: unitMs ? DEFAULT_OPTIONS.learningSamples : learning,
    learningMs: unitMs ? learning * unitMs : 0,
    threshold: numberSetting(config.threshold, DEFAULT_OPTIONS.threshold),
    hysteresis: numberSetting(config.hysteresis, DEFAULT_OPTIONS.hysteresis),
    minDuration: numberSetting(config.minDuration, DEFAULT_OPTIONS.minDuration),
    nanPolicy: (config.nanPolicy || 'hold') as NanPolicy,
    adaptRate: numberSetting(config.adaptRate, DEFAULT_OPTIONS.adaptRate),
    sequence: {
      ...DEFAULT_OPTIONS.sequence,
      window: numberSetting(config.seqWindow, DEFAULT_OPTIONS.sequence.window),
      epochs: numberSetting(config.epochs, DEFAULT_OPTIONS.sequence.epochs),
    },
  };
}

module.exports = function (RED: NodeAPI) {
  function EdgeAnomalyNode(this: Node, config: EdgeAnomalyDef): void {
    RED.nodes.createNode(this, config);
    start(this, config);
  }

  function start(node: Node, config: EdgeAnomalyDef): void {
    const channels = listSetting(config.channels);
    const persist = config.persist !== false;
    const userDir = (RED.settings as { userDir?: string }).userDir || path.join(os.homedir(), '.node-red');
    const stateFile = path.join(userDir, 'edge-ai', 'anomaly', `${node.id}.json`);

    let detector: AnomalyDetector;
    try {
      const options = parseOptions(config);
      // Method 'model': the edge-model node's model, leased per batch so its swaps apply at once.
      let externalModel: ModelRunner | undefined;
      if (options.method === 'model') {
        const modelNode = getModelNode(RED, config.model);
        if (!modelNode) throw new Error(RED._('edge-anomaly.errors.noModel'));
        externalModel = handleRunner(modelNode.handle);
      }
      detector = new AnomalyDetector(options, {
        externalModel,
        onTrainingProgress: (p) =>
          node.status({
            fill: 'blue',
            shape: 'ring',
            text: RED._('edge-anomaly.status.training', { epoch: p.epoch, epochs: p.epochs }),
          }),
      });
    } catch (err) {
      setErrorStatus(node, err);
      node.error(RED._('edge-anomaly.errors.config', { error: errorText(err) }));
      onInput(node, () => {
        throw new Error(RED._('edge-anomaly.errors.config', { error: errorText(err) }));
      });
      return;
    }

    // Saves are chained so two never overlap; the snapshot is taken between two samples.
    let saving: Promise<void> = Promise.resolve();
    let dirty = false;
    let saveTimer: NodeJS.Timeout | null = null;
    let closed = false;
    function save(): Promise<void> {
      if (!persist) return Promise.resolve();
      dirty = false;
      const snapshot = detector.snapshot();
      saving = saving
        .then(() => snapshot)
        .then((state) => writeFileAtomic(stateFile, JSON.stringify(state)))
        .catch((err: unknown) => node.warn(RED._('edge-anomaly.errors.save', { error: errorText(err) })));
      return saving;
    }
    function scheduleSave(): void {
      dirty = true;
      if (!persist || saveTimer || closed) return;
      saveTimer = setTimeout(() => {
        saveTimer = null;
        if (dirty) void save();
      }, PERSIST_INTERVAL_MS);
    }

    if (persist) {
      // Queued ahead of any message, so the first sample already sees the restored state.
      void detector
        .restoreWith(async () => {
          let state: DetectorState;
          try {
            state = await readJsonFile<DetectorState>(stateFile);
          } catch (err) {
            if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
              node.warn(RED._('edge-anomaly.errors.restore', { error: errorText(err) }));
            return null;
          }
          if (!detector.compatible(state)) {
            node.log(RED._('edge-anomaly.log.settingsChanged'));
            return null;
          }
          return state;
        })
        .then((restored) => {
          if (restored) updateStatus(null, true);
        })
        .catch((err: unknown) => node.warn(RED._('edge-anomaly.errors.restore', { error: errorText(err) })));
    }

    let lastStatus = 0;
    let lastFill = '';
    function updateStatus(result: PayloadResult | null, force = false): void {
      const now = Date.now();
      let fill: 'yellow' | 'green' | 'red' | 'blue';
      let text: string;
      if (!result) {
        fill = detector.learning ? 'yellow' : 'green';
        text = RED._(detector.learning ? 'edge-anomaly.status.waiting' : 'edge-anomaly.status.restored');
      } else if (result.learning) {
        fill = 'yellow';
        text = RED._('edge-anomaly.status.learning', {
          percent: Math.floor((result.details.progress ?? 0) * 100),
        });
      } else if (result.isAnomaly) {
        fill = 'red';
        text = RED._('edge-anomaly.status.anomaly', { score: result.score.toFixed(2) });
      } else {
        fill = 'green';
        text = RED._('edge-anomaly.status.normal', { score: result.score.toFixed(2) });
      }
      if (!force && fill === lastFill && now - lastStatus < STATUS_INTERVAL_MS) return;
      lastStatus = now;
      lastFill = fill;
      node.status({ fill, shape: result?.isAnomaly ? 'dot' : 'ring', text });
    }
    updateStatus(null, true);

    onInput(node, async (msg, send) => {
      // Everything this message needs is queued now, before the next message can queue its work.
      const resetting = msg.reset === true;
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
        void save();
      }
      if (!pending) {
        msg.payload = { score: 0, isAnomaly: false, threshold: detector.options.threshold, learning: true };
        msg.anomaly = { method: detector.options.method, phase: 'learning', index: 0, reset: true };
        updateStatus(null, true);
        send([msg as NodeMessage, null]);
        return;
      }
      const result = await pending;
      const { score, isAnomaly, threshold, learning } = result;
      msg.payload = { score, isAnomaly, threshold, learning };
      msg.anomaly = { ...result.details, ...(result.rows ? { rows: result.rows } : {}) };
      const alert = isAnomaly || result.details.event === 'end';
      updateStatus(result, result.details.event !== undefined);
      // The fitted model is saved as soon as learning ends; later changes at most every few seconds.
      if (wasLearning && !detector.learning) void save();
      else scheduleSave();
      send([msg as NodeMessage, alert ? (msg as NodeMessage) : null]);
    });

    onClose(node, async (removed) => {
      closed = true;
      if (saveTimer) clearTimeout(saveTimer);
      saveTimer = null;
      if (removed) {
        await detector.close();
        await saving;
        await fs.rm(stateFile, { force: true });
      } else {
        // Taken now rather than queued: a network still training is abandoned, not awaited
        // (its learning samples are in the state, so it trains again after the restart).
        const state = persist ? detector.state() : null;
        await detector.close();
        await saving;
        if (state)
          await writeFileAtomic(stateFile, JSON.stringify(state)).catch((err: unknown) =>
            node.warn(RED._('edge-anomaly.errors.save', { error: errorText(err) })),
          );
      }
      node.status({});
    });
  }

  RED.nodes.registerType('edge-anomaly', EdgeAnomalyNode);
};
