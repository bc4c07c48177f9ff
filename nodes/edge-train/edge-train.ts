import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { ModelStore } from '../../lib/models/store/store';
import { ARCHITECTURES, type Task } from '../../lib/train/architectures';
import {
  DeviceTrainer,
  outcomePayload,
  outcomeSummary,
  progressPayload,
  roundMetric,
  type AutoTraining,
  type ClassWeighting,
  type DeviceTrainerConfig,
} from '../../lib/train/device-trainer';
import { CancelledError } from '../../lib/train/trainer';
import { commandOf } from '../shared/command';
import { errorText, onClose, onInput, type Send } from '../shared/node-utils';
import { SettingError, Settings } from '../shared/settings';
import { nodeStateDir, removeStateDir } from '../shared/state';
import { Status } from '../shared/status';
import { modelStoreOf } from '../shared/user-dir';
import { startFederated } from './federated';

type EdgeTrainDef = NodeDef & Record<string, unknown>;

const COMMANDS = ['train', 'cancel', 'export', 'clear'] as const;

function parseClassWeights(s: Settings): ClassWeighting {
  const text = s.text('classWeights', 'none');
  if (text === 'none' || text === 'balanced') return text;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    parsed = undefined;
  }
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new SettingError('classWeights', text, '"none", "balanced" or a JSON object such as {"fault": 5}');
  }
  return parsed as Record<string, number>;
}

/** The trainer's configuration from the editor fields; throws on what cannot work. */
function parseConfig(config: EdgeTrainDef, store: ModelStore, datasetDir: string): DeviceTrainerConfig {
  const s = new Settings(config);
  const source = s.choice('source', ['build', 'transfer', 'federated'] as const, 'build');
  const federated = source === 'federated';
  const fineTune = source === 'transfer' || federated;
  const architecture = fineTune
    ? undefined
    : s.choice(
        'architecture',
        Object.keys(ARCHITECTURES) as (keyof typeof ARCHITECTURES)[],
        'dense-classifier',
      );
  const whole = { integer: true, min: 1 };
  const optional = <T>(list: T[]): T[] | undefined => (list.length > 0 ? list : undefined);
  const optionalNumber = (n: number): number | undefined => (Number.isNaN(n) ? undefined : n);
  return {
    modelName: s.text('modelName'),
    store,
    datasetDir,
    capacity: s.number('capacity', 10000, whole),
    policy: s.choice('policy', ['ring', 'reservoir'] as const, 'ring'),
    architecture,
    task: fineTune
      ? s.choice<Task>('task', ['classification', 'regression', 'autoencoder'], 'classification')
      : undefined,
    baseModel: federated
      ? { name: s.text('fleetModel'), freeze: 0 }
      : fineTune
        ? { name: s.text('baseModel'), freeze: s.number('freeze', 0, { integer: true, min: 0 }) }
        : undefined,
    inputShape: optional(s.numbers('inputShape', whole)),
    classes: optional(s.list('classes')),
    classWeights: parseClassWeights(s),
    minSamples: s.number('minSamples', 10, whole),
    training: {
      sizes: {
        units: optional(s.numbers('units', whole)),
        filters: optional(s.numbers('filters', whole)),
        kernelSize: s.number('kernelSize', 3, whole),
        dropout: s.number('dropout', 0, { min: 0, max: 1 }),
        latent: optionalNumber(s.number('latent', NaN, whole)),
      },
      optimizer: s.choice('optimizer', ['adam', 'sgd', 'rmsprop'] as const, 'adam'),
      learningRate: s.number('learningRate', 0.001, { above: 0 }),
      momentum: s.number('momentum', 0.9, { min: 0 }),
      learningRateDecay: s.number('learningRateDecay', 1, { above: 0 }),
      batchSize: s.number('batchSize', 32, whole),
      epochs: s.number('epochs', 10, whole),
      validationSplit: s.number('validationSplit', 0.2, { min: 0, max: 1 }),
      earlyStoppingPatience: s.number('patience', 0, { integer: true, min: 0 }),
      augmentShift: s.number('augmentShift', 0, { integer: true, min: 0 }),
      backend: s.choice('backend', ['auto', 'wasm', 'cpu'] as const, 'auto'),
      threads: s.number('threads', 0, { integer: true, min: 0 }),
    },
  };
}

function parseTrigger(config: EdgeTrainDef): AutoTraining & { labelProperty: string; reuse: boolean } {
  const s = new Settings(config);
  return {
    labelProperty: s.text('labelProperty', 'label').replace(/^msg\./, ''),
    trigger: s.choice('trigger', ['message', 'interval', 'samples'] as const, 'message'),
    everySamples: s.number('everySamples', 100, { integer: true, min: 1 }),
    intervalMinutes: s.number('interval', 60, { min: 0 }),
    reuse: s.bool('reuse', false),
  };
}

export = function register(RED: NodeAPI): void {
  function EdgeTrain(this: Node, config: EdgeTrainDef): void {
    RED.nodes.createNode(this, config);
    start(this, config);
  }

  function start(node: Node, config: EdgeTrainDef): void {
    const status = new Status(node, RED, 'edge-train');
    const datasetDir = nodeStateDir(RED, node, 'datasets');
    let trainer: DeviceTrainer | undefined;
    let closed = false;
    /** Federated mode: the fleet's rounds start the training (nodes/edge-train/federated.ts). */
    const federated =
      config.source === 'federated' ? startFederated(RED, node, config, status, () => closed) : undefined;

    const idleStatus = (): void => {
      if (!trainer || trainer.training) return;
      status.set('waiting', 'status.samples', { count: trainer.dataset.count });
    };

    let trigger: ReturnType<typeof parseTrigger> | undefined;
    const ready: Promise<DeviceTrainer> = (async () => {
      trigger = parseTrigger(config);
      const opened = await DeviceTrainer.open(parseConfig(config, modelStoreOf(RED), datasetDir));
      if (opened.resetReason) node.warn(RED._('edge-train.warnings.reset', { reason: opened.resetReason }));
      return opened;
    })();
    ready.then(
      (opened) => {
        if (closed) {
          void opened.close();
          return;
        }
        trainer = opened;
        idleStatus();
        if (federated) federated.attach(opened);
        else if (trigger) opened.autoTrain(trigger, trainInBackground);
      },
      (err: unknown) => {
        node.error(status.describe(err));
        status.error(err);
      },
    );

    /** Statistics of the edge-normalise node named in the settings, if any. */
    const normaliserStats = (): unknown => {
      if (typeof config.normaliser !== 'string' || !config.normaliser) return undefined;
      const source = RED.nodes.getNode(config.normaliser) as (Node & { exportStats?: () => unknown }) | null;
      return source && typeof source.exportStats === 'function' ? source.exportStats() : undefined;
    };

    /** One training run; progress and the final message go out with `send`. */
    const train = async (active: DeviceTrainer, send: Send, base: NodeMessage = {}): Promise<void> => {
      const stats = normaliserStats();
      if (stats !== undefined) await active.setNormalisation(stats);
      status.set('working', 'status.starting', {}, true);
      let epoch = 0;
      let epochs = 0;
      try {
        const outcome = await active.train((p) => {
          epoch = p.epoch;
          epochs = p.epochs;
          status.set('working', 'status.epoch', {
            epoch: p.epoch,
            epochs: p.epochs,
            loss: roundMetric(p.loss) ?? '-',
          });
          send({ ...base, topic: 'progress', payload: progressPayload(p) });
        });
        const { accuracy, loss } = outcomeSummary(outcome);
        if (accuracy !== undefined)
          status.set('ok', 'status.trainedAccuracy', { version: outcome.version, accuracy }, true);
        else status.set('ok', 'status.trained', { version: outcome.version, loss }, true);
        send({ ...base, topic: 'trained', payload: outcomePayload(outcome) });
      } catch (err) {
        if (closed) {
          // A redeploy or stop ends the run: expected, not an error, but say what was lost.
          node.warn(RED._('edge-train.warnings.closed', { model: active.config.modelName, epoch, epochs }));
          return;
        }
        if (err instanceof CancelledError) {
          status.set('waiting', 'status.cancelled', {}, true);
          return;
        }
        throw err;
      }
    };

    /**
     * With "reuse a saved model": a saved version stands in for the training the schedule or the
     * sample count would start; says so with a 'reused' message. False when there is none.
     */
    const reuseSaved = async (active: DeviceTrainer): Promise<boolean> => {
      const reused = trigger?.reuse ? await active.reuseSaved() : undefined;
      if (!reused) return false;
      status.set('ok', 'status.reused', { version: reused.version }, true);
      node.send({ topic: 'reused', payload: reused } as NodeMessage);
      return true;
    };

    /** Training started by the schedule or the sample count: errors go to the log and status. */
    let starting = false;
    const trainInBackground = (): void => {
      if (!trainer || trainer.training || closed || starting) return;
      const active = trainer;
      starting = true;
      reuseSaved(active)
        .then((reused) => {
          starting = false;
          if (reused || closed) return;
          return train(active, (msg) => node.send(msg as NodeMessage));
        })
        .catch((err: unknown) => {
          starting = false;
          node.error(RED._('edge-train.errors.training', { error: errorText(err) }));
          status.error(err);
        });
    };

    onInput(node, status, async (msg, send) => {
      const active = await ready;
      const command = commandOf(msg, COMMANDS);
      if (command === 'train' && federated) {
        await federated.trainNow(send);
        return;
      }
      if (command === 'train') {
        await train(active, send, { _msgid: msg._msgid } as NodeMessage);
        return;
      }
      if (command === 'cancel') {
        active.cancel();
        return;
      }
      if (command === 'export') {
        send({ ...msg, topic: 'dataset', payload: await active.exportDataset() });
        return;
      }
      if (command === 'clear') {
        await active.clearDataset();
        idleStatus();
        return;
      }
      const stats = msg.topic === 'stats' ? msg.payload : msg.normalisation;
      if (stats !== undefined && stats !== null && typeof stats === 'object') {
        await active.setNormalisation(stats);
        if (msg.topic === 'stats') return;
      }
      await active.addSample(msg.payload, RED.util.getMessageProperty(msg, trigger!.labelProperty));
      if (federated) federated.sampleAdded();
      else idleStatus();
    });

    onClose(node, async (removed) => {
      closed = true;
      status.cancel();
      await federated?.close();
      const active = trainer ?? (await ready.catch(() => undefined));
      await active?.close();
      await removeStateDir(datasetDir, removed);
    });
  }

  RED.nodes.registerType('edge-train', EdgeTrain);
};
