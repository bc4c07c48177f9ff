import os from 'node:os';
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeStatus } from 'node-red';
import {
  Normaliser,
  type BadValuePolicy,
  type GivenStats,
  type NormaliserOptions,
  type NormaliserStatus,
  type StatsSource,
} from '../../lib/preprocess/normaliser';
import type { NormalisationStats, ScalingMethod } from '../../lib/preprocess/scaling';
import { StateFile, nodeStateFile } from '../../lib/util/state-file';
import {
  errorText,
  listSetting,
  numberSetting,
  onClose,
  onInput,
  setErrorStatus,
} from '../shared/node-utils';

interface EdgeNormaliseDef extends NodeDef {
  method: string;
  range: string;
  source: string;
  learnCount: string | number;
  alpha: string | number;
  mean: string;
  std: string;
  min: string;
  max: string;
  clip: boolean;
  zLimit: string | number;
  badValues: string;
  emitWhileLearning: boolean;
  channels: string;
  windowSize: string | number;
  windowStride: string | number;
  property: string;
}

interface EdgeNormaliseNode extends Node {
  /** The statistics as the read-out would send them (used by the editor button's endpoint). */
  exportStats(): NormalisationStats;
}

/** Status updates at most this often, so fast sensors do not flood the editor. */
const STATUS_INTERVAL_MS = 250;
/** Learned statistics are written at most this often (and on close). */
const PERSIST_DELAY_MS = 5000;

function numberList(value: unknown, label: string): number[] {
  const list = listSetting(value).map(Number);
  if (list.some((n) => !Number.isFinite(n)))
    throw new RangeError(`${label}: expected comma-separated numbers`);
  return list;
}

function parseOptions(config: EdgeNormaliseDef): NormaliserOptions {
  const given: GivenStats = {
    mean: numberList(config.mean, 'mean'),
    std: numberList(config.std, 'std'),
    min: numberList(config.min, 'min'),
    max: numberList(config.max, 'max'),
  };
  const windowSize = numberSetting(config.windowSize, 0);
  return {
    method: (config.method || 'zscore') as ScalingMethod,
    range: config.range === '-1,1' ? [-1, 1] : [0, 1],
    source: (config.source || 'first-n') as StatsSource,
    learnCount: numberSetting(config.learnCount, 100),
    alpha: numberSetting(config.alpha, 0.05),
    given,
    clip: config.clip === true,
    zLimit: numberSetting(config.zLimit, 3),
    badValues: (config.badValues || 'reject') as BadValuePolicy,
    emitWhileLearning: config.emitWhileLearning !== false,
    channels: listSetting(config.channels),
    windowSize,
    windowStride: windowSize > 0 ? numberSetting(config.windowStride, 1) : 1,
  };
}

export = function register(RED: NodeAPI): void {
  function EdgeNormalise(this: EdgeNormaliseNode, config: EdgeNormaliseDef): void {
    RED.nodes.createNode(this, config);
    start(this, config);
  }

  function start(node: EdgeNormaliseNode, config: EdgeNormaliseDef): void {
    const property = config.property || 'payload';

    let normaliser: Normaliser | null = null;
    let configError: Error | null = null;
    try {
      normaliser = new Normaliser(parseOptions(config));
    } catch (err) {
      configError = new Error(RED._('edge-normalise.errors.config', { error: errorText(err) }));
      node.error(configError.message);
      setErrorStatus(node, configError);
    }

    // RED.settings.userDir is always set by a Node-RED runtime; only bare test runtimes lack it.
    const userDir = RED.settings.userDir || os.tmpdir();
    const stateFile = new StateFile(
      nodeStateFile(userDir, 'normalise', node.id),
      () => normaliser?.toJSON(),
      {
        delayMs: PERSIST_DELAY_MS,
        onError: (err) => node.warn(RED._('edge-normalise.errors.save', { error: errorText(err) })),
      },
    );
    if (normaliser) {
      try {
        const saved = stateFile.readSync();
        if (saved !== undefined) {
          const result = normaliser.restore(saved);
          if (!result.restored && result.reason) {
            node.warn(RED._('edge-normalise.warnings.notRestored', { reason: result.reason }));
          }
        }
      } catch (err) {
        node.warn(RED._('edge-normalise.errors.load', { file: stateFile.file, error: errorText(err) }));
      }
    }

    let skipped = 0;
    let statusTimer: NodeJS.Timeout | null = null;
    let lastStatusAt = 0;
    let lastPhase = '';

    function statusOf(s: NormaliserStatus): NodeStatus {
      const parts: string[] = [];
      if (s.phase === 'learning')
        parts.push(RED._('edge-normalise.status.learning', { count: s.count, total: s.learnCount }));
      else if (s.phase === 'frozen') parts.push(RED._('edge-normalise.status.frozen', { count: s.count }));
      else if (s.phase === 'continuous')
        parts.push(RED._('edge-normalise.status.continuous', { source: s.source, count: s.count }));
      else parts.push(RED._(`edge-normalise.status.${s.phase}`));
      if (s.windowSize > 0)
        parts.push(RED._('edge-normalise.status.window', { filled: s.windowFilled, size: s.windowSize }));
      if (skipped > 0) parts.push(RED._('edge-normalise.status.skipped', { count: skipped }));
      return {
        fill: s.phase === 'learning' ? 'blue' : 'green',
        shape: s.phase === 'learning' ? 'ring' : 'dot',
        text: parts.join(' · '),
      };
    }

    function applyStatus(): void {
      if (!normaliser) return;
      const s = normaliser.status();
      lastStatusAt = Date.now();
      lastPhase = s.phase;
      node.status(statusOf(s));
    }

    /** Shows phase changes at once; count updates at most every STATUS_INTERVAL_MS. */
    function showStatus(): void {
      if (!normaliser) return;
      const elapsed = Date.now() - lastStatusAt;
      if (normaliser.status().phase !== lastPhase || elapsed >= STATUS_INTERVAL_MS) {
        if (statusTimer) clearTimeout(statusTimer);
        statusTimer = null;
        applyStatus();
      } else if (!statusTimer) {
        statusTimer = setTimeout(() => {
          statusTimer = null;
          applyStatus();
        }, STATUS_INTERVAL_MS - elapsed);
      }
    }

    node.exportStats = () => {
      if (!normaliser) throw configError;
      return normaliser.exportStats();
    };

    if (normaliser) applyStatus();

    onInput(node, (msg, send) => {
      if (!normaliser) throw configError;
      // A pending count update must not paint over the red status of a failing message.
      if (statusTimer) clearTimeout(statusTimer);
      statusTimer = null;
      const command =
        typeof msg.command === 'string' ? msg.command : msg.topic === 'stats' ? 'stats' : undefined;
      if (msg.reset === true || command === 'reset') {
        normaliser.reset();
        skipped = 0;
        stateFile.changed();
        lastPhase = '';
        showStatus();
        return;
      }
      if (command === 'stats') {
        msg.payload = normaliser.exportStats();
        msg.topic = 'stats';
        send(msg);
        return;
      }
      if (command === 'load-stats') {
        const payload = msg.payload as { normalisation?: unknown } | null;
        // Accepts the statistics themselves or a model's meta.json that carries them.
        normaliser.useStats(
          payload && typeof payload === 'object' && 'normalisation' in payload
            ? payload.normalisation
            : payload,
        );
        stateFile.changed();
        showStatus();
        return;
      }
      if (command !== undefined) throw new Error(RED._('edge-normalise.errors.command', { command }));

      let result;
      try {
        result = normaliser.process(msg.payload);
      } catch (err) {
        throw new Error(RED._('edge-normalise.errors.input', { error: errorText(err) }));
      }
      if (result.learned > 0) stateFile.changed();
      skipped += result.skipped;
      showStatus();
      if (result.outputs.length === 0) return;
      // Further windows get copies made before the first output changes the original message;
      // the input payload is left out of the copies when it is about to be replaced anyway.
      const template = property === 'payload' ? { ...msg, payload: undefined } : msg;
      const messages = result.outputs.map((_, i) => (i === 0 ? msg : RED.util.cloneMessage(template)));
      result.outputs.forEach((out, i) => {
        const m = messages[i];
        RED.util.setMessageProperty(m, property, out.payload, true);
        m.features = out.features;
        m.learning = out.learning;
      });
      send(messages.length === 1 ? messages[0] : [messages as NodeMessage[]]);
    });

    onClose(node, async () => {
      if (statusTimer) clearTimeout(statusTimer);
      statusTimer = null;
      await stateFile.close();
    });
  }

  RED.nodes.registerType('edge-normalise', EdgeNormalise);

  // The editor button: sends the statistics on the node's output, like msg.command "stats".
  RED.httpAdmin.post(
    '/edge-normalise/:id/stats',
    RED.auth.needsPermission('edge-normalise.write'),
    (req, res) => {
      const target = RED.nodes.getNode(String(req.params.id)) as EdgeNormaliseNode | null;
      if (!target || typeof target.exportStats !== 'function') {
        res.status(404).json({ error: RED._('edge-normalise.errors.notDeployed') });
        return;
      }
      try {
        const stats = target.exportStats();
        target.receive({ command: 'stats' } as NodeMessage);
        res.json(stats);
      } catch (err) {
        res.status(500).json({ error: errorText(err) });
      }
    },
  );
};
