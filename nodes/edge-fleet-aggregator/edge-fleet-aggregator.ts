import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import type { EdgeAiError } from '../../lib/errors';
import {
  DEFAULT_LEARNING_RATE_DECAY,
  aggregatorStore,
  saveInitialModel,
  type FederatedAggregator,
  type RoundInfo,
  type RoundSummary,
} from '../../lib/fleet/federated-aggregator';
import { ModelStore } from '../../lib/models/store/store';
import { ARCHITECTURES, type ArchitectureName } from '../../lib/train/architectures';
import { commandOf } from '../shared/command';
import { getFleetNode } from '../shared/fleet-config';
import { errorText, failStart, onClose, onInput } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import { nodeStateDir, removeStateDir } from '../shared/state';
import { Status } from '../shared/status';
import { modelStoreOf } from '../shared/user-dir';

type AggregatorDef = NodeDef & Record<string, unknown>;

const COMMANDS = ['close'] as const;
const whole = { integer: true, min: 1 };
const optional = (list: number[]): number[] | undefined => (list.length > 0 ? list : undefined);

export = function (RED: NodeAPI): void {
  function EdgeFleetAggregator(this: Node, config: AggregatorDef): void {
    RED.nodes.createNode(this, config);
    setup(this, config);
  }

  function setup(node: Node, config: AggregatorDef): void {
    const status = new Status(node, RED, 'edge-fleet-aggregator');
    const s = new Settings(config);
    const fleet = getFleetNode(RED, config.fleet);
    if (!fleet) {
      failStart(node, status, new Error(RED._('edge-fleet-aggregator.errors.no-fleet')));
      return;
    }
    const stateDir = nodeStateDir(RED, node, 'fleet-aggregator');
    let closed = false;
    let accuracy: string | undefined;

    const show = (info: RoundInfo | undefined, minReports: number): void => {
      if (!info) return;
      const asked = info.selected?.length;
      const wanted = Math.min(minReports, asked ?? Infinity);
      status.set(
        info.reports > 0 ? 'working' : 'waiting',
        accuracy ? 'status.roundAccuracy' : 'status.round',
        {
          round: info.round,
          reports: info.reports,
          wanted,
          accuracy,
        },
      );
    };

    const ready: Promise<FederatedAggregator> = (async () => {
      const name = s.text('model');
      ModelStore.checkName(name);
      const minReports = s.number('minReports', 3, { integer: true, min: 1 });
      const roundMs = s.number('roundSeconds', 300, { above: 0 }) * 1000;
      const fraction = s.number('fraction', 1, { above: 0, max: 1 });
      const serverMomentum = s.number('serverMomentum', 0, { min: 0, max: 0.999 });
      const serverLearningRate = s.number('serverLearningRate', 1, { above: 0 });
      const learningRateDecay = s.number('learningRateDecay', DEFAULT_LEARNING_RATE_DECAY, {
        above: 0,
        max: 1,
      });
      const store = aggregatorStore(stateDir);
      if (!(await store.get(name))) {
        const start = s.text('startFrom');
        if (start) {
          // A model of the Node-RED store (e.g. trained by edge-train) becomes the first global version.
          const from = await modelStoreOf(RED).get(start);
          if (!from) throw new Error(RED._('edge-fleet-aggregator.errors.no-start-model', { name: start }));
          const { name: _n, version: _v, files: _f, created: _c, ...info } = from.meta;
          void [_n, _v, _f, _c];
          await store.save(name, info, async (dir) => {
            for (const f of from.meta.files) {
              await fs.mkdir(path.dirname(path.join(dir, f.path)), { recursive: true });
              await fs.copyFile(path.join(from.dir, f.path), path.join(dir, f.path));
            }
          });
        } else {
          const architecture = s.choice(
            'architecture',
            Object.keys(ARCHITECTURES) as ArchitectureName[],
            'dense-classifier',
          );
          const classes = s.list('classes');
          await saveInitialModel(store, name, {
            architecture,
            inputShape: s.numbers('inputShape', whole),
            labels: classes.length > 0 ? classes : undefined,
            outputSize: classes.length > 0 ? undefined : s.number('outputs', 1, { integer: true, min: 1 }),
            sizes: {
              units: optional(s.numbers('units', whole)),
              filters: optional(s.numbers('filters', whole)),
            },
            seed: 1,
          });
        }
      }
      const aggregator = await fleet.aggregator({
        name,
        store,
        stateFile: path.join(stateDir, 'round.json'),
        minReports,
        roundMs,
        fraction,
        serverMomentum,
        serverLearningRate,
        learningRateDecay,
      });
      aggregator.on('round', (info: RoundInfo) => show(info, minReports));
      aggregator.on('accepted', () => show(aggregator.info, minReports));
      aggregator.on('extended', (info: RoundInfo) => show(info, minReports));
      aggregator.on('ignored', (device: string, reason: string) =>
        node.log(RED._('edge-fleet-aggregator.log.ignored', { device, reason })),
      );
      aggregator.on('refused', (err: EdgeAiError, device: string) =>
        node.warn(RED._('edge-fleet-aggregator.warnings.refused', { device, error: status.describe(err) })),
      );
      aggregator.on('failed', (err: Error) => node.error(errorText(err)));
      aggregator.on('closed', (summary: RoundSummary) => {
        if (typeof summary.metrics.accuracy === 'number')
          accuracy = (summary.metrics.accuracy * 100).toFixed(1);
        node.send({ topic: 'round', payload: summary } as NodeMessage);
      });
      if (closed) return aggregator;
      await aggregator.start();
      return aggregator;
    })();
    ready.catch((err: unknown) => {
      if (closed) return;
      node.error(status.describe(err));
      status.error(err);
    });

    onInput(node, status, async (msg) => {
      const aggregator = await ready;
      if (commandOf(msg, COMMANDS) !== 'close') return;
      const summary = await aggregator.closeNow();
      if (!summary) status.set('waiting', 'status.nothingToClose', { round: aggregator.info?.round }, true);
    });

    onClose(node, async (removed) => {
      closed = true;
      status.cancel();
      const aggregator = await ready.catch(() => undefined);
      await aggregator?.close();
      await removeStateDir(stateDir, removed);
    });
  }

  RED.nodes.registerType('edge-fleet-aggregator', EdgeFleetAggregator);
};
