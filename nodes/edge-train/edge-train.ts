import os from 'node:os';
import path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { ModelStore } from '../../lib/models/store/store';
import { isArchitecture, type Task } from '../../lib/train/architectures';
import { DeviceTrainer, type ClassWeighting, type DeviceTrainerConfig } from '../../lib/train/device-trainer';
import { CancelledError, type BackendChoice, type OptimizerName } from '../../lib/train/trainer';
import {
  errorText,
  listSetting,
  numberSetting,
  onClose,
  onInput,
  setErrorStatus,
  type Send,
} from '../shared/node-utils';

interface EdgeTrainDef extends NodeDef {
  modelName: string;
  source: string;
  architecture: string;
  baseModel: string;
  freeze: string | number;
  task: string;
  units: string;
  filters: string;
  kernelSize: string | number;
  dropout: string | number;
  latent: string | number;
  inputShape: string;
  classes: string;
  labelProperty: string;
  optimizer: string;
  learningRate: string | number;
  momentum: string | number;
  learningRateDecay: string | number;
  batchSize: string | number;
  epochs: string | number;
  validationSplit: string | number;
  patience: string | number;
  classWeights: string;
  augmentShift: string | number;
  trigger: string;
  interval: string | number;
  everySamples: string | number;
  minSamples: string | number;
  capacity: string | number;
  policy: string;
  backend: string;
  normaliser: string;
}

type Command = 'train' | 'cancel' | 'export' | 'clear';
const COMMANDS: readonly Command[] = ['train', 'cancel', 'export', 'clear'];

function wholeList(value: unknown, label: string): number[] | undefined {
  const list = listSetting(value).map(Number);
  if (list.some((n) => !Number.isInteger(n) || n < 1))
    throw new RangeError(`${label}: expected whole numbers above 0`);
  return list.length > 0 ? list : undefined;
}

function parseClassWeights(value: string): ClassWeighting {
  const text = (value || 'none').trim();
  if (text === 'none' || text === 'balanced') return text;
  const parsed = JSON.parse(text) as unknown;
  if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw new RangeError('class weights: "none", "balanced" or a JSON object such as {"fault": 5}');
  }
  return parsed as Record<string, number>;
}

/** The trainer's configuration from the editor fields; throws on what cannot work. */
function parseConfig(config: EdgeTrainDef, node: Node, userDir: string): DeviceTrainerConfig {
  const fineTune = config.source === 'transfer';
  const architecture = fineTune ? undefined : config.architecture || 'dense-classifier';
  if (architecture !== undefined && !isArchitecture(architecture))
    throw new RangeError(`unknown architecture "${architecture}"`);
  const optimizer = (config.optimizer || 'adam') as OptimizerName;
  if (!['adam', 'sgd', 'rmsprop'].includes(optimizer))
    throw new RangeError(`unknown optimizer "${optimizer}"`);
  const policy = config.policy === 'reservoir' ? 'reservoir' : 'ring';
  const backend = (['wasm', 'cpu'].includes(config.backend) ? config.backend : 'auto') as BackendChoice;
  return {
    modelName: (config.modelName || '').trim(),
    store: ModelStore.forUserDir(userDir),
    datasetDir: path.join(userDir, 'edge-ai', 'datasets', node.id),
    capacity: numberSetting(config.capacity, 10000),
    policy,
    architecture,
    task: fineTune ? ((config.task || 'classification') as Task) : undefined,
    baseModel: fineTune
      ? { name: (config.baseModel || '').trim(), freeze: numberSetting(config.freeze, 0) }
      : undefined,
    inputShape: wholeList(config.inputShape, 'input shape'),
    classes: listSetting(config.classes).length > 0 ? listSetting(config.classes) : undefined,
    classWeights: parseClassWeights(config.classWeights),
    minSamples: numberSetting(config.minSamples, 10),
    training: {
      sizes: {
        units: wholeList(config.units, 'units'),
        filters: wholeList(config.filters, 'filters'),
        kernelSize: numberSetting(config.kernelSize, 3),
        dropout: numberSetting(config.dropout, 0),
        latent:
          config.latent === '' || config.latent === undefined ? undefined : numberSetting(config.latent, 8),
      },
      optimizer,
      learningRate: numberSetting(config.learningRate, 0.001),
      momentum: numberSetting(config.momentum, 0.9),
      learningRateDecay: numberSetting(config.learningRateDecay, 1),
      batchSize: numberSetting(config.batchSize, 32),
      epochs: numberSetting(config.epochs, 10),
      validationSplit: numberSetting(config.validationSplit, 0.2),
      earlyStoppingPatience: numberSetting(config.patience, 0),
      augmentShift: numberSetting(config.augmentShift, 0),
      backend,
    },
  };
}

/** Reads a dotted message property such as "label" or "payload.target". */
function readProperty(msg: Record<string, unknown>, property: string): unknown {
  return property.split('.').reduce<unknown>((value, key) => {
    return value !== null && typeof value === 'object' ? (value as Record<string, unknown>)[key] : undefined;
  }, msg);
}

function commandOf(msg: Record<string, unknown>): Command | undefined {
  if (typeof msg.command === 'string' && (COMMANDS as readonly string[]).includes(msg.command)) {
    return msg.command as Command;
  }
  for (const command of COMMANDS) if (msg[command] === true) return command;
  if (typeof msg.topic === 'string' && (COMMANDS as readonly string[]).includes(msg.topic))
    return msg.topic as Command;
  return undefined;
}

const round = (value: number | null | undefined, digits = 4): number | null =>
  typeof value === 'number' && Number.isFinite(value) ? Number(value.toFixed(digits)) : null;

export = function register(RED: NodeAPI): void {
  function EdgeTrain(this: Node, config: EdgeTrainDef): void {
    RED.nodes.createNode(this, config);
    start(this, config);
  }

  function start(node: Node, config: EdgeTrainDef): void {
    // RED.settings.userDir is always set by a Node-RED runtime; only bare test runtimes lack it.
    const userDir = RED.settings.userDir || path.join(os.homedir(), '.node-red');
    const labelProperty = (config.labelProperty || 'label').replace(/^msg\./, '');
    const trigger = config.trigger || 'message';
    const everySamples = Math.max(1, numberSetting(config.everySamples, 100));
    let trainer: DeviceTrainer | undefined;
    let closed = false;
    let timer: NodeJS.Timeout | undefined;

    const idleStatus = (): void => {
      if (!trainer || trainer.training) return;
      node.status({
        fill: 'blue',
        shape: 'ring',
        text: RED._('edge-train.status.samples', { count: trainer.dataset.count }),
      });
    };

    const ready: Promise<DeviceTrainer> = (async () => {
      const parsed = parseConfig(config, node, userDir);
      const opened = await DeviceTrainer.open(parsed);
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
      },
      (err: unknown) => {
        node.error(RED._('edge-train.errors.config', { error: errorText(err) }));
        setErrorStatus(node, err);
      },
    );

    /** Statistics of the edge-normalise node named in the settings, if any. */
    const normaliserStats = (): unknown => {
      if (!config.normaliser) return undefined;
      const source = RED.nodes.getNode(config.normaliser) as (Node & { exportStats?: () => unknown }) | null;
      return source && typeof source.exportStats === 'function' ? source.exportStats() : undefined;
    };

    /** One training run; progress and the final message go out with `send`. */
    const train = async (active: DeviceTrainer, send: Send, base: NodeMessage = {}): Promise<void> => {
      const stats = normaliserStats();
      if (stats !== undefined) await active.setNormalisation(stats);
      node.status({ fill: 'yellow', shape: 'ring', text: RED._('edge-train.status.starting') });
      try {
        const outcome = await active.train((p) => {
          node.status({
            fill: 'yellow',
            shape: 'dot',
            text: RED._('edge-train.status.epoch', {
              epoch: p.epoch,
              epochs: p.epochs,
              loss: round(p.loss) ?? '-',
            }),
          });
          send({
            ...base,
            topic: 'progress',
            payload: {
              epoch: p.epoch,
              epochs: p.epochs,
              loss: round(p.loss, 6),
              valLoss: round(p.valLoss, 6),
              metrics: p.metrics,
            },
          });
        });
        const accuracy = outcome.metrics.valAccuracy ?? outcome.metrics.accuracy;
        node.status({
          fill: 'green',
          shape: 'dot',
          text:
            accuracy !== undefined
              ? RED._('edge-train.status.trainedAccuracy', {
                  version: outcome.version,
                  accuracy: (accuracy * 100).toFixed(1),
                })
              : RED._('edge-train.status.trained', {
                  version: outcome.version,
                  loss: round(outcome.metrics.loss) ?? '-',
                }),
        });
        send({
          ...base,
          topic: 'trained',
          payload: {
            model: outcome.model,
            version: outcome.version,
            metrics: outcome.metrics,
            history: outcome.history,
            samples: outcome.samples,
            stoppedBy: outcome.stoppedBy,
            backend: outcome.backend,
            durationMs: outcome.durationMs,
          },
        });
      } catch (err) {
        if (err instanceof CancelledError) {
          if (!closed)
            node.status({ fill: 'grey', shape: 'ring', text: RED._('edge-train.status.cancelled') });
          return;
        }
        throw err;
      }
    };

    /** Training started by the schedule or the sample count: errors go to the log and status. */
    const trainInBackground = (): void => {
      if (!trainer || trainer.training || closed) return;
      const active = trainer;
      train(active, (msg) => node.send(msg as NodeMessage)).catch((err: unknown) => {
        node.error(RED._('edge-train.errors.training', { error: errorText(err) }));
        setErrorStatus(node, err);
      });
    };

    if (trigger === 'interval') {
      const minutes = numberSetting(config.interval, 60);
      if (minutes > 0) timer = setInterval(trainInBackground, minutes * 60_000);
    }

    onInput(node, async (msg, send) => {
      const active = await ready;
      const command = commandOf(msg);
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
      await active.addSample(msg.payload, readProperty(msg, labelProperty));
      idleStatus();
      if (trigger === 'samples' && active.samplesSinceTraining >= everySamples) trainInBackground();
    });

    onClose(node, async () => {
      closed = true;
      if (timer) clearInterval(timer);
      const active = trainer ?? (await ready.catch(() => undefined));
      await active?.close();
    });
  }

  RED.nodes.registerType('edge-train', EdgeTrain);
};
