/**
 * edge-train's federated mode: the fleet's rounds start the training. When a new global version
 * of the fleet model arrives (signed, checked and stored by the edge-fleet node's roll-out
 * machinery) and this device is asked to train on it, the node trains that model on its own
 * dataset in its worker thread and publishes only the weight update with its sample count.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import { UPDATE_ENCODINGS, type UpdateEncoding } from '../../lib/fleet/federated';
import type { FederatedClient, FederatedRound } from '../../lib/fleet/federated-client';
import { ModelStore } from '../../lib/models/store/store';
import {
  DEFAULT_LABEL_SKEW,
  LABEL_SKEW_METHODS,
  LABEL_SKEW_STRENGTH,
  type LabelSkewCorrection,
} from '../../lib/train/logit-adjust';
import {
  outcomePayload,
  progressPayload,
  roundMetric,
  type DeviceTrainer,
} from '../../lib/train/device-trainer';
import { getFleetNode } from '../shared/fleet-config';
import { errorText, type Send } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import type { Status } from '../shared/status';

export interface FederatedTraining {
  /** The trainer is open: rounds can train from now on. */
  attach(trainer: DeviceTrainer): void;
  /** A 'train' command: trains for the current round now (if not reported yet). */
  trainNow(send: Send): Promise<void>;
  /** A sample was stored: a round waiting for samples may start. */
  sampleAdded(): void;
  close(): Promise<void>;
}

const REPORTED_METRICS = ['accuracy', 'loss', 'valAccuracy', 'valLoss', 'mae'];

export function startFederated(
  RED: NodeAPI,
  node: Node,
  config: NodeDef & Record<string, unknown>,
  status: Status,
  isClosed: () => boolean,
): FederatedTraining {
  const s = new Settings(config);
  const name = s.text('fleetModel');
  let encoding: UpdateEncoding = 'uint8';
  let clipNorm = 0;
  let noise = 0;
  let labelSkew: LabelSkewCorrection | undefined;
  let proximal = 0;
  let trainer: DeviceTrainer | undefined;
  let client: FederatedClient | undefined;
  let pending: FederatedRound | undefined;
  let running: Promise<void> | undefined;

  const background = (): void => {
    void runRound((msg) => node.send(msg as NodeMessage)).catch((err: unknown) => {
      if (isClosed()) return;
      node.error(RED._('edge-train.errors.training', { error: errorText(err) }));
      status.error(err);
    });
  };

  const ready: Promise<FederatedClient> = (async () => {
    encoding = s.choice('encoding', UPDATE_ENCODINGS, 'uint8');
    clipNorm = s.number('clipNorm', 0, { min: 0 });
    noise = s.number('noise', 0, { min: 0 });
    const method = s.choice('labelSkew', LABEL_SKEW_METHODS, DEFAULT_LABEL_SKEW);
    if (method !== 'none') {
      const strength = s.number(
        'labelSkewStrength',
        LABEL_SKEW_STRENGTH[method],
        method === 'restricted-softmax' ? { min: 0, max: 1 } : { min: 0 },
      );
      labelSkew = { method, strength };
    }
    proximal = s.number('proximal', 0, { min: 0 });
    ModelStore.checkName(name);
    const fleet = getFleetNode(RED, config.fleet);
    if (!fleet) throw new Error(RED._('edge-train.errors.no-fleet'));
    const created = await fleet.federatedClient(name);
    created.on('round', (round: FederatedRound) => {
      pending = round;
      background();
    });
    created.on('skipped', (round: FederatedRound) =>
      status.set('waiting', 'status.notSelected', { round: round.round }, true),
    );
    created.on('refused', (err: Error) => {
      node.error(status.describe(err));
      status.error(err);
    });
    created.on('failed', (err: Error) => node.error(errorText(err)));
    if (isClosed()) return created;
    await created.start();
    client = created;
    status.set('waiting', 'status.roundAwaited', { name }, true);
    return created;
  })();
  ready.catch((err: unknown) => {
    if (isClosed()) return;
    node.error(status.describe(err));
    status.error(err);
  });

  /** Trains for the pending round and sends the update; one at a time. */
  async function runRound(send: Send): Promise<void> {
    if (running) return running;
    const round = pending;
    const active = trainer;
    if (!round || !active || !client || client.hasReported(round.round) || isClosed()) return;
    const have = active.dataset.count;
    if (have < active.config.minSamples) {
      status.set(
        'waiting',
        'status.roundWaiting',
        { round: round.round, count: have, need: active.config.minSamples },
        true,
      );
      return;
    }
    const federatedClient = client;
    running = (async () => {
      status.set('working', 'status.roundTraining', { round: round.round }, true);
      const labels = Array.isArray(round.stored.meta.labels)
        ? (round.stored.meta.labels as string[])
        : undefined;
      const outcome = await active.train(
        (p) => {
          status.set('working', 'status.roundEpoch', {
            round: round.round,
            epoch: p.epoch,
            epochs: p.epochs,
            loss: roundMetric(p.loss) ?? '-',
          });
          send({ topic: 'progress', payload: { ...progressPayload(p), round: round.round } });
        },
        {
          base: { name, version: round.stored.meta.version },
          labels,
          learningRateScale: round.learningRateScale,
          labelSkew,
          proximal,
        },
      );
      if (federatedClient.current && federatedClient.current.round !== round.round) {
        // A newer global version arrived while training: this update would come too late.
        status.set('waiting', 'status.late', { round: round.round }, true);
        return;
      }
      const metrics: Record<string, number> = {};
      for (const key of REPORTED_METRICS) {
        const v = outcome.metrics[key];
        if (typeof v === 'number' && Number.isFinite(v)) metrics[key] = v;
      }
      const sent = await federatedClient.sendUpdate(round, outcome.stored, outcome.samples, {
        encoding,
        clipNorm,
        noise,
        metrics,
      });
      status.set(
        'ok',
        'status.updateSent',
        { round: round.round, samples: outcome.samples, kb: (sent.bytes / 1024).toFixed(0) },
        true,
      );
      send({
        topic: 'update',
        payload: {
          ...outcomePayload(outcome),
          fleetModel: name,
          round: round.round,
          bytes: sent.bytes,
          encoding,
          learningRateScale: round.learningRateScale,
          labelSkew: labelSkew ?? null,
          proximal,
          norm: sent.header.norm,
          clipNorm: sent.header.clipNorm,
          noiseStd: sent.header.noiseStd,
        },
      });
    })();
    try {
      await running;
    } finally {
      running = undefined;
    }
    // A newer round may have arrived meanwhile.
    if (pending && pending.round !== round.round && !isClosed()) background();
  }

  return {
    attach(opened: DeviceTrainer): void {
      trainer = opened;
      if (pending) background();
    },
    async trainNow(send: Send): Promise<void> {
      const c = await ready;
      if (!pending) throw new Error(RED._('edge-train.errors.no-round', { name }));
      if (c.hasReported(pending.round)) {
        status.set('ok', 'status.alreadySent', { round: pending.round }, true);
        return;
      }
      if (running) {
        await running;
        return;
      }
      await runRound(send);
    },
    sampleAdded(): void {
      if (!trainer) return;
      if (pending && client && !client.hasReported(pending.round) && !running) {
        if (trainer.dataset.count >= trainer.config.minSamples) background();
        else
          status.set('waiting', 'status.roundWaiting', {
            round: pending.round,
            count: trainer.dataset.count,
            need: trainer.config.minSamples,
          });
        return;
      }
      if (!running) status.set('waiting', 'status.samples', { count: trainer.dataset.count });
    },
    async close(): Promise<void> {
      const c = client ?? (await ready.catch(() => undefined));
      await c?.close();
    },
  };
}
