/**
 * edge-sensor: reads an I2C device, a GPIO input, a simulated device or a CSV replay, on an
 * interval and/or on input, and sends msg.payload (named numbers; GPIO 0/1), msg.topic,
 * msg.timestamp, msg.units. A failing device is retried with backoff until it answers again
 * (lib/sensors SensorPoller); this file is the wiring.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import {
  type FaultSpec,
  type SensorReading,
  SensorError,
  SensorPoller,
  createSensorSource,
  hex,
  isSensorError,
  parseFault,
  readingSummary,
  resolveCsvPath,
  scanForDevices,
} from '../../lib/sensors';
import { errorText, onClose, onInput, parseOrFail } from '../shared/node-utils';
import { STATUS_MAX_CHARS, Status, shortText } from '../shared/status';
import { userDirOf } from '../shared/user-dir';
import { type EdgeSensorFields, parseEdgeSensorFields } from './settings';

type EdgeSensorDef = NodeDef & EdgeSensorFields;

export = function (RED: NodeAPI): void {
  function EdgeSensorNode(this: Node, def: EdgeSensorDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: EdgeSensorDef): void {
    const status = new Status(node, RED, 'edge-sensor');
    const parsed = parseOrFail(node, status, () => {
      const settings = parseEdgeSensorFields(def);
      if (settings.source.csv) {
        const root = def.csvRoot?.trim() || userDirOf(RED);
        settings.source.csv.path = resolveCsvPath(settings.source.csv.path, root);
      }
      const source = createSensorSource({ ...settings.source, onWarning: (message) => node.warn(message) });
      return { settings, source };
    });
    if (!parsed) return;
    const { settings, source } = parsed;
    const topic = settings.topic;
    const simulatedTag = settings.source.simulate ? RED._('edge-sensor.status.sim') + ' ' : '';

    function faultTag(): string {
      const faults = source.activeFaults?.() ?? [];
      return faults.length ? ` [${faults.map((f) => f.type).join(', ')}]` : '';
    }

    function showReading(reading: SensorReading): void {
      const faulted = (source.activeFaults?.() ?? []).length > 0;
      // The fault tag goes first so that truncating a long status keeps it.
      const text = `${simulatedTag}${faultTag().trim()} ${readingSummary(reading)}`
        .replace(/\s+/g, ' ')
        .trim();
      status.text(faulted ? 'warning' : 'ok', text);
    }

    function readingMessage(reading: SensorReading, base?: Record<string, unknown>): NodeMessage {
      const msg = (base ?? {}) as NodeMessage & Record<string, unknown>;
      msg.payload = reading.payload;
      msg.topic = topic;
      msg.timestamp = Date.now();
      msg.units = reading.units;
      if (reading.recordedAt !== undefined) msg.recordedAt = reading.recordedAt;
      return msg;
    }

    const poller = new SensorPoller(
      source,
      { intervalMs: settings.intervalMs, emitInitial: settings.emitInitial },
      {
        reading(reading, emit) {
          showReading(reading);
          if (emit) node.send(readingMessage(reading));
        },
        recovered() {
          node.log(RED._('edge-sensor.log.recovered', { source: source.description }));
        },
        failed(err, retryMs, report) {
          if (retryMs !== undefined && !isSensorError(err, 'NO_HARDWARE'))
            status.text('error', retryText(status, err, retryMs), true);
          else status.error(err);
          if (report) {
            const error = err instanceof Error ? err : new Error(errorText(err));
            node.error(error, { topic, timestamp: Date.now() } as NodeMessage);
          }
        },
        ended(err) {
          status.set('waiting', 'status.finished', {}, true);
          node.log(err.message);
        },
      },
    );

    function applyFaults(input: unknown): void {
      if (!source.injectFault) {
        throw new SensorError('BAD_FAULT', RED._('edge-sensor.errors.faultNeedsSim'));
      }
      const faults: FaultSpec[] = (Array.isArray(input) ? input : [input]).map((f) => parseFault(f));
      for (const fault of faults) source.injectFault(fault);
      const tag = faultTag();
      status.text(
        tag ? 'warning' : 'ok',
        simulatedTag + (tag ? tag.trim() : status.t('status.noFault')),
        true,
      );
    }

    onInput(node, status, async (msg, send) => {
      if (msg.fault !== undefined) return applyFaults(msg.fault);
      const reading = await poller.readNow();
      showReading(reading);
      send(readingMessage(reading, msg));
    });

    onClose(node, async () => {
      status.cancel();
      await poller.close();
    });

    if (poller.start()) status.set('waiting', 'status.waiting');
  }

  /** "<cause> – retry in N s", the cause cut so the retry time stays within the shown text. */
  function retryText(status: Status, err: unknown, retryMs: number): string {
    const seconds = Math.max(1, Math.round(retryMs / 1000));
    const suffix = status.t('status.retryIn', { seconds });
    return `${shortText(status.describe(err), STATUS_MAX_CHARS - suffix.length)}${suffix}`;
  }

  RED.nodes.registerType('edge-sensor', EdgeSensorNode);

  // Scan an I2C bus from the edit dialog: ?simulate=true scans the simulated bus of the device.
  RED.httpAdmin.get('/edge-ai/i2c-scan/:bus', RED.auth.needsPermission('edge-sensor.read'), (req, res) => {
    const simulate = req.query.simulate === 'true' || req.query.simulate === '1';
    const bus = String(req.params.bus);
    const query = (name: string) =>
      typeof req.query[name] === 'string' ? (req.query[name] as string) : undefined;
    const request = { bus, simulate, device: query('device'), address: query('address') };
    scanForDevices(request).then(
      (addresses) =>
        res.json({ bus: Number(bus), simulated: simulate, addresses: addresses.map((a) => hex(a)) }),
      (err: unknown) => {
        const code = isSensorError(err, 'NO_HARDWARE') ? 404 : isSensorError(err, 'BAD_CONFIG') ? 400 : 500;
        res.status(code).json({ bus: Number(bus), simulated: simulate, error: errorText(err) });
      },
    );
  });
};
