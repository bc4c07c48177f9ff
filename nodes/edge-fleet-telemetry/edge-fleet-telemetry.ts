import type { Node, NodeAPI, NodeDef } from 'node-red';
import { InputError } from '../../lib/errors';
import type { FleetConnection } from '../../lib/fleet/connection';
import { FleetTelemetry, type AnomalyDetails, type TelemetryNodeRef } from '../../lib/fleet/telemetry';
import { getFleetNode } from '../shared/fleet-config';
import { failStart, onClose, onInput, parseOrFail } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import { Status } from '../shared/status';

type TelemetryDef = NodeDef & Record<string, unknown>;

/** Status updates at most this often: the node sits behind fast sensors. */
const STATUS_INTERVAL_MS = 1000;

const isRecord = (v: unknown): v is Record<string, unknown> =>
  typeof v === 'object' && v !== null && !Array.isArray(v);

function nodeRefOf(source: unknown): TelemetryNodeRef | undefined {
  if (!isRecord(source) || typeof source.id !== 'string') return undefined;
  return {
    id: source.id,
    type: typeof source.type === 'string' ? source.type : undefined,
    name: typeof source.name === 'string' ? source.name : undefined,
  };
}

export = function (RED: NodeAPI): void {
  function EdgeFleetTelemetry(this: Node, config: TelemetryDef): void {
    RED.nodes.createNode(this, config);
    setup(this, config);
  }

  function setup(node: Node, config: TelemetryDef): void {
    const status = new Status(node, RED, 'edge-fleet-telemetry', { intervalMs: STATUS_INTERVAL_MS });
    const fleet = getFleetNode(RED, config.fleet);
    if (!fleet) {
      failStart(node, status, new Error(RED._('edge-fleet-telemetry.errors.no-fleet')));
      return;
    }
    const options = parseOrFail(node, status, () => {
      const s = new Settings(config);
      return {
        source: s.text('source', 'anomaly'),
        intervalMs: s.number('interval', 5, { min: 0.1 }) * 1000,
        episodesPerMinute: s.number('episodesPerMinute', 30, { above: 0 }),
      };
    });
    if (!options) return;

    let telemetry: FleetTelemetry | undefined;
    let connection: FleetConnection | undefined;
    let closed = false;
    let startError: unknown;
    const show = (): void => {
      if (!telemetry || !connection) return;
      if (!connection.connected) {
        if (connection.lastError) status.error(connection.lastError);
        else status.set('waiting', 'status.offline', { pending: telemetry.pendingEpisodes });
        return;
      }
      const state = telemetry.snapshot();
      const anomaly = state.anomaly;
      if (anomaly?.episode) status.set('alert', 'status.episode', { score: anomaly.score.toFixed(2) });
      else if (anomaly)
        status.set('ok', 'status.score', { score: anomaly.score.toFixed(2), rate: state.rate.toFixed(1) });
      else status.set('ok', 'status.rate', { rate: state.rate.toFixed(1) });
    };
    const onOffline = (): void => show();
    const onConnectError = (): void => show();

    status.set('waiting', 'status.connecting');
    const starting = fleet
      .connection()
      .then(async (c) => {
        if (closed) return;
        connection = c;
        telemetry = new FleetTelemetry(c, options);
        telemetry.on('published', () => show());
        c.on('offline', onOffline);
        c.on('connect-error', onConnectError);
        c.on('connect', onOffline);
        // Not awaited: a subscription waits for the broker, messages must not.
        telemetry.start().then(show, (err: unknown) => node.warn(status.describe(err)));
        show();
      })
      .catch((err: unknown) => {
        startError = err;
        status.error(err);
        node.error(status.describe(err));
      });

    onInput(node, status, async (msg) => {
      await starting;
      if (startError) throw startError;
      if (!telemetry) return;
      // A Status node's message: a node's status changed. Telemetry nodes' own statuses are left
      // out (two of them would report each other's every publish).
      if (isRecord(msg.status) && nodeRefOf(msg.status.source)) {
        const ref = nodeRefOf(msg.status.source) as TelemetryNodeRef;
        if (ref.type !== 'edge-fleet-telemetry') telemetry.status(ref, msg.status);
        return;
      }
      // A Catch node's message: a node reported an error.
      if (isRecord(msg.error)) {
        telemetry.error(String(msg.error.message ?? 'error'), nodeRefOf(msg.error.source));
        return;
      }
      const payload = msg.payload;
      if (isRecord(payload) && 'score' in payload) {
        const { score, isAnomaly } = payload;
        if (typeof score !== 'number' || !Number.isFinite(score) || typeof isAnomaly !== 'boolean') {
          throw new InputError(
            'msg.payload.score must be a finite number and msg.payload.isAnomaly a boolean (edge-anomaly output)',
          );
        }
        const timestamp =
          typeof msg.timestamp === 'number' && Number.isFinite(msg.timestamp) ? msg.timestamp : Date.now();
        telemetry.anomaly(
          {
            score,
            isAnomaly,
            threshold: typeof payload.threshold === 'number' ? payload.threshold : undefined,
            learning: typeof payload.learning === 'boolean' ? payload.learning : undefined,
          },
          isRecord(msg.anomaly) ? (msg.anomaly as AnomalyDetails) : {},
          timestamp,
        );
        if (payload.isAnomaly || (msg.anomaly as AnomalyDetails | undefined)?.event) show();
        return;
      }
      telemetry.message();
    });

    onClose(node, async () => {
      closed = true;
      status.cancel();
      await starting;
      connection?.off('offline', onOffline);
      connection?.off('connect-error', onConnectError);
      connection?.off('connect', onOffline);
      await telemetry?.close();
    });
  }

  RED.nodes.registerType('edge-fleet-telemetry', EdgeFleetTelemetry);
};
