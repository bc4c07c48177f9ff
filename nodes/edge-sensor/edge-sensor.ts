/**
 * edge-sensor: reads an I2C device, a GPIO input, a simulated device or a CSV replay, on an
 * interval and/or on input, and sends msg.payload (named numbers; GPIO 0/1), msg.topic,
 * msg.timestamp, msg.units. A failing device is retried with backoff until it answers again.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage } from 'node-red';
import {
  Backoff,
  type FaultSpec,
  type SensorReading,
  type SensorSource,
  SensorError,
  createSensorSource,
  createSimulatedSource,
  hex,
  isSensorError,
  parseFault,
  scanI2cBus,
  DEFAULT_ADDRESSES,
} from '../../lib/sensors';
import { errorText, failStart, onClose, onInput } from '../shared/node-utils';
import { Status } from '../shared/status';
import { userDirOf } from '../shared/user-dir';
import {
  type EdgeSensorFields,
  type EdgeSensorSettings,
  parseEdgeSensorFields,
  resolveCsvPath,
} from './settings';

type EdgeSensorDef = NodeDef & EdgeSensorFields;

/** Delay before the first read after deploy, so the rest of the flow is started. */
const START_DELAY_MS = 100;

function formatValue(value: number): string {
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 0.01 || abs >= 1e5) ? value.toExponential(2) : String(Number(value.toFixed(2)));
}

/** A short status line: "21.4°C 40.1%RH 1012.8hPa". */
function summary(reading: SensorReading): string {
  if (typeof reading.payload === 'number') return String(reading.payload);
  return Object.entries(reading.payload)
    .map(([key, value]) => `${formatValue(value)}${reading.units[key] || ` ${key}`}`)
    .join(' ');
}

export = function (RED: NodeAPI): void {
  function EdgeSensorNode(this: Node, def: EdgeSensorDef): void {
    RED.nodes.createNode(this, def);
    setup(this, def);
  }

  function setup(node: Node, def: EdgeSensorDef): void {
    const status = new Status(node, RED, 'edge-sensor');
    let settings: EdgeSensorSettings | undefined;
    let source: SensorSource | undefined;
    let setupError: Error | undefined;
    try {
      settings = parseEdgeSensorFields(def);
      if (settings.source.csv) {
        const root = def.csvRoot?.trim() || userDirOf(RED);
        settings.source.csv.path = resolveCsvPath(settings.source.csv.path, root);
      }
      source = createSensorSource({
        ...settings.source,
        onWarning: (message) => node.warn(message),
      });
    } catch (err) {
      setupError = err instanceof Error ? err : new Error(String(err));
    }

    const backoff = new Backoff(1000, 30_000);
    let timer: NodeJS.Timeout | undefined;
    let closed = false;
    let failing = false;
    let reportedError: string | undefined;
    let finished = false;
    const topic = settings?.topic ?? def.device ?? 'edge-sensor';
    const simulatedTag = settings?.source.simulate ? RED._('edge-sensor.status.sim') + ' ' : '';

    function faultTag(): string {
      const faults = source?.activeFaults?.() ?? [];
      return faults.length ? ` [${faults.map((f) => f.type).join(', ')}]` : '';
    }

    function showReading(reading: SensorReading): void {
      const faulted = (source?.activeFaults?.() ?? []).length > 0;
      // The fault tag goes first so that truncating a long status keeps it.
      const text = `${simulatedTag}${faultTag().trim()} ${summary(reading)}`.replace(/\s+/g, ' ').trim();
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

    function succeeded(reading: SensorReading): void {
      if (failing) {
        failing = false;
        reportedError = undefined;
        node.log(RED._('edge-sensor.log.recovered', { source: source?.description ?? '' }));
      }
      backoff.reset();
      showReading(reading);
    }

    function endOfData(err: Error): void {
      finished = true;
      status.set('waiting', 'status.finished', {}, true);
      node.log(err.message);
    }

    /** Status and (once per distinct error) node.error for a failure outside an input message. */
    function failed(err: unknown, retryMs?: number): void {
      failing = true;
      const text = errorText(err);
      const noHardware = isSensorError(err, 'NO_HARDWARE');
      if (retryMs !== undefined && !noHardware)
        status.set(
          'error',
          'status.retrying',
          { error: status.describe(err), seconds: Math.round(retryMs / 1000) },
          true,
        );
      else status.error(err);
      if (text !== reportedError) {
        reportedError = text;
        node.error(err instanceof Error ? err : new Error(text), {
          topic,
          timestamp: Date.now(),
        } as NodeMessage);
      }
    }

    function schedule(delayMs: number, emit: boolean): void {
      clearTimeout(timer);
      if (closed) return;
      timer = setTimeout(() => void tick(emit), delayMs);
    }

    /** One read outside an input message: on the interval, at start, or as a retry. */
    async function tick(emit: boolean): Promise<void> {
      timer = undefined;
      if (closed || !source || finished) return;
      const started = Date.now();
      const interval = settings!.intervalMs;
      try {
        const reading = await source.read();
        if (closed) return;
        succeeded(reading);
        if (emit) node.send(readingMessage(reading));
        if (interval > 0) schedule(Math.max(0, interval - (Date.now() - started)), true);
      } catch (err) {
        if (closed) return;
        if (isSensorError(err, 'END_OF_DATA')) return endOfData(err);
        const retryMs = backoff.next();
        failed(err, retryMs);
        // Periodic reads send what they read; a start-up probe re-sends only for GPIO's initial level.
        schedule(retryMs, interval > 0 || emit);
      }
    }

    function applyFaults(input: unknown): void {
      if (!source?.injectFault) {
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

    if (setupError || !source || !settings) {
      failStart(node, status, setupError ?? new Error('edge-sensor is not configured'));
      return;
    }
    const active = source;

    onInput(node, status, async (msg, send) => {
      if (msg.fault !== undefined) {
        applyFaults(msg.fault);
        return;
      }
      try {
        const reading = await active.read();
        succeeded(reading);
        send(readingMessage(reading, msg));
      } catch (err) {
        failing = true;
        if (isSensorError(err, 'END_OF_DATA')) finished = true;
        throw err;
      }
    });

    onClose(node, async () => {
      closed = true;
      clearTimeout(timer);
      timer = undefined;
      status.cancel();
      await active.close();
    });

    const device = settings.source.device;
    if (source.start) {
      source.start((err, reading) => {
        if (closed) return;
        if (err) {
          if (isSensorError(err, 'END_OF_DATA')) return endOfData(err);
          const retryMs = backoff.next();
          failed(err, retryMs);
          if (!timer) schedule(retryMs, settings!.emitInitial);
          return;
        }
        if (reading) {
          succeeded(reading);
          node.send(readingMessage(reading));
        }
      });
    }
    if (settings.intervalMs > 0) {
      schedule(START_DELAY_MS, true);
    } else if (device !== 'csv') {
      // Input-only: probe once so the status tells at once whether the device is there.
      schedule(START_DELAY_MS, settings.emitInitial);
      status.set('waiting', 'status.waiting');
    } else if (!source.start) {
      status.set('waiting', 'status.waiting');
    }
  }

  RED.nodes.registerType('edge-sensor', EdgeSensorNode);

  // Scan an I2C bus from the edit dialog: ?simulate=true scans the simulated bus of the device.
  RED.httpAdmin.get('/edge-ai/i2c-scan/:bus', RED.auth.needsPermission('edge-sensor.read'), (req, res) => {
    const busNumber = Number(req.params.bus);
    const simulate = req.query.simulate === 'true' || req.query.simulate === '1';
    const device = String(req.query.device ?? 'bme280') as keyof typeof DEFAULT_ADDRESSES;
    const scan = async (): Promise<number[]> => {
      if (!Number.isInteger(busNumber) || busNumber < 0) {
        throw new SensorError('BAD_CONFIG', `I2C bus ${req.params.bus} is not a whole number >= 0`);
      }
      if (!simulate) return scanI2cBus(busNumber);
      if (!(device in DEFAULT_ADDRESSES))
        throw new SensorError('BAD_CONFIG', `${device} is not an I2C device`);
      const address = Number(req.query.address) || DEFAULT_ADDRESSES[device];
      const sim = createSimulatedSource(device, { bus: busNumber, address });
      try {
        return await sim.bus!.scan();
      } finally {
        await sim.close();
      }
    };
    scan().then(
      (addresses) =>
        res.json({ bus: busNumber, simulated: simulate, addresses: addresses.map((a) => hex(a)) }),
      (err: unknown) => {
        const status = isSensorError(err, 'NO_HARDWARE') ? 404 : isSensorError(err, 'BAD_CONFIG') ? 400 : 500;
        res.status(status).json({ bus: busNumber, simulated: simulate, error: errorText(err) });
      },
    );
  });
};
