import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { Normaliser, type NormaliserOptions, type NormaliserStatus } from '../../lib/preprocess/normaliser';
import type { NormalisationStats } from '../../lib/preprocess/scaling';
import { commandOf } from '../shared/command';
import { errorText, failStart, onClose, onInput } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import { closeState, nodeState } from '../shared/state';
import { Status } from '../shared/status';

type EdgeNormaliseDef = NodeDef & Record<string, unknown>;

interface EdgeNormaliseNode extends Node {
  /** The statistics as the read-out would send them (used by the editor button's endpoint). */
  exportStats(): NormalisationStats;
}

/** Status updates at most this often, so fast sensors do not flood the editor. */
const STATUS_INTERVAL_MS = 250;
/** Learned statistics are written at most this often (and on close). */
const PERSIST_DELAY_MS = 5000;
const COMMANDS = ['reset', 'stats', 'load-stats'] as const;

function parseOptions(config: EdgeNormaliseDef): NormaliserOptions & { property: string } {
  const s = new Settings(config);
  const windowSize = s.number('windowSize', 0, { integer: true, min: 0 });
  return {
    method: s.choice('method', ['zscore', 'minmax'] as const, 'zscore'),
    range: s.choice('range', ['0,1', '-1,1'] as const, '0,1') === '-1,1' ? [-1, 1] : [0, 1],
    source: s.choice('source', ['fixed', 'first-n', 'welford', 'ewma'] as const, 'first-n'),
    learnCount: s.number('learnCount', 100, { integer: true, min: 1 }),
    alpha: s.number('alpha', 0.05, { above: 0, max: 1 }),
    given: { mean: s.numbers('mean'), std: s.numbers('std'), min: s.numbers('min'), max: s.numbers('max') },
    clip: s.bool('clip', false),
    zLimit: s.number('zLimit', 3, { above: 0 }),
    badValues: s.choice('badValues', ['reject', 'skip', 'hold'] as const, 'reject'),
    emitWhileLearning: s.bool('emitWhileLearning', true),
    channels: s.list('channels'),
    windowSize,
    windowStride: windowSize > 0 ? s.number('windowStride', 1, { integer: true, min: 1 }) : 1,
    property: s.text('property', 'payload'),
  };
}

export = function register(RED: NodeAPI): void {
  function EdgeNormalise(this: EdgeNormaliseNode, config: EdgeNormaliseDef): void {
    RED.nodes.createNode(this, config);
    start(this, config);
  }

  function start(node: EdgeNormaliseNode, config: EdgeNormaliseDef): void {
    const status = new Status(node, RED, 'edge-normalise', { intervalMs: STATUS_INTERVAL_MS });
    let normaliser: Normaliser;
    let property: string;
    try {
      const options = parseOptions(config);
      property = options.property;
      normaliser = new Normaliser(options);
    } catch (err) {
      node.exportStats = () => {
        throw err;
      };
      failStart(node, status, err);
      return;
    }

    const state = nodeState(RED, node, 'normalise', () => normaliser.toJSON(), {
      delayMs: PERSIST_DELAY_MS,
      onError: (err) => node.warn(RED._('edge-normalise.errors.save', { error: errorText(err) })),
    });
    try {
      const saved = state.readSync();
      if (saved !== undefined) {
        const result = normaliser.restore(saved);
        if (!result.restored && result.reason) {
          node.warn(RED._('edge-normalise.warnings.notRestored', { reason: result.reason }));
        }
      }
    } catch (err) {
      node.warn(RED._('edge-normalise.errors.load', { file: state.file, error: errorText(err) }));
    }

    let skipped = 0;
    /** Phase changes show at once, count updates at most every STATUS_INTERVAL_MS. */
    function showStatus(s: NormaliserStatus = normaliser.status()): void {
      const parts: string[] = [];
      if (s.phase === 'learning')
        parts.push(status.t('status.learning', { count: s.count, total: s.learnCount }));
      else if (s.phase === 'frozen') parts.push(status.t('status.frozen', { count: s.count }));
      else if (s.phase === 'continuous')
        parts.push(status.t('status.continuous', { source: s.source, count: s.count }));
      else parts.push(status.t(`status.${s.phase}`));
      if (s.windowSize > 0)
        parts.push(status.t('status.window', { filled: s.windowFilled, size: s.windowSize }));
      if (skipped > 0) parts.push(status.t('status.skipped', { count: skipped }));
      status.text(s.phase === 'learning' ? 'working' : 'ok', parts.join(' · '));
    }

    node.exportStats = () => normaliser.exportStats();
    showStatus();

    onInput(node, status, (msg, send) => {
      // A pending count update must not paint over the red status of a failing message.
      status.cancel();
      const command = commandOf(msg, COMMANDS);
      if (command === 'reset') {
        normaliser.reset();
        skipped = 0;
        state.changed();
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
        state.changed();
        showStatus();
        return;
      }

      let result;
      try {
        result = normaliser.process(msg.payload);
      } catch (err) {
        throw new Error(RED._('edge-normalise.errors.input', { error: errorText(err) }));
      }
      if (result.learned > 0) state.changed();
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

    onClose(node, async (removed) => {
      status.cancel();
      await closeState(state, removed);
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
