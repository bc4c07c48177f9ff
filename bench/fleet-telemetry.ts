/**
 * Fleet telemetry load: N devices (light clients running FleetTelemetry, the code of the
 * edge-fleet-telemetry node) each feeding anomaly results at R Hz for S seconds, with an anomaly
 * episode on every tenth device; a dashboard subscribed to the whole fleet counts what reaches it.
 * Side by side in the same run: the naive way, publishing every result (QoS 0, not retained).
 *
 * Usage: npm run bench:fleet-telemetry [-- --devices 100 --hz 100 --seconds 10 --interval 5 --mosquitto]
 */
import { FleetConnection } from '../lib/fleet/connection';
import { FleetTelemetry, fleetTelemetryFilter } from '../lib/fleet/telemetry';
import { startEmbedded, startMosquitto, type TestBroker } from '../test/helpers/mqtt-brokers';
import { numberArg, printTable } from './cli';

const DEVICES = numberArg('devices', 100);
const HZ = numberArg('hz', 100);
const SECONDS = numberArg('seconds', 10);
const INTERVAL_S = numberArg('interval', 5);

interface Outcome {
  messages: number;
  bytes: number;
  episodes: number;
  feedUs: number;
}

async function run(broker: TestBroker, mode: 'telemetry' | 'every result'): Promise<Outcome> {
  const fleet = `tbench${Date.now()}`;
  const dashboard = new FleetConnection({ url: broker.url, fleet, deviceId: 'dashboard' });
  await dashboard.waitConnected();
  let messages = 0;
  let bytes = 0;
  let episodes = 0;
  await dashboard.subscribe(fleetTelemetryFilter(dashboard.topics), (topic, payload) => {
    messages++;
    bytes += payload.length + topic.length;
    if (topic.endsWith('/episode')) episodes++;
  });
  const devices = await Promise.all(
    Array.from({ length: DEVICES }, async (_, i) => {
      const c = new FleetConnection({ url: broker.url, fleet, deviceId: `d${i}` });
      await c.waitConnected(30000);
      const t = new FleetTelemetry(c, { source: 'pump', intervalMs: INTERVAL_S * 1000 });
      await t.start();
      return { c, t };
    }),
  );
  await new Promise((r) => setTimeout(r, 500));
  messages = 0;
  bytes = 0;
  const ticks = HZ * SECONDS;
  const stepMs = 1000 / HZ;
  const start = performance.now();
  let feedMs = 0;
  for (let k = 0; k < ticks; k++) {
    const now = Date.now();
    const f0 = performance.now();
    devices.forEach(({ c, t }, i) => {
      // Every tenth device has an episode in the middle second of the run.
      const inEpisode = i % 10 === 0 && k >= ticks / 2 && k < ticks / 2 + HZ;
      let event: 'start' | 'end' | undefined;
      if (i % 10 === 0 && k === ticks / 2) event = 'start';
      if (i % 10 === 0 && k === ticks / 2 + HZ) event = 'end';
      const reading = { score: inEpisode ? 0.9 : 0.1, isAnomaly: inEpisode, threshold: 0.5, learning: false };
      const details = {
        top: 'vibration',
        ...(event ? { event, episode: { start: now, end: now, samples: HZ, peakScore: 0.95 } } : {}),
      };
      if (mode === 'telemetry') t.anomaly(reading, details, now);
      else
        c.client.publish(`${c.topics.base}/devices/d${i}/telemetry/pump/result`, JSON.stringify(reading), {
          qos: 0,
        });
    });
    feedMs += performance.now() - f0;
    const next = start + (k + 1) * stepMs;
    const wait = next - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  await new Promise((r) => setTimeout(r, 1000));
  const outcome = { messages, bytes, episodes, feedUs: (feedMs * 1000) / (ticks * DEVICES) };
  for (const { c, t } of devices) {
    await t.close();
    await c.close();
  }
  await dashboard.close();
  return outcome;
}

async function main(): Promise<void> {
  const broker = process.argv.includes('--mosquitto') ? await startMosquitto() : await startEmbedded();
  try {
    const rows: string[][] = [];
    for (const mode of ['telemetry', 'every result'] as const) {
      const o = await run(broker, mode);
      const perDevicePerMin = (o.messages / DEVICES / SECONDS) * 60;
      rows.push([
        mode === 'telemetry' ? `edge-fleet-telemetry (${INTERVAL_S} s)` : 'every result published',
        `${DEVICES * HZ * SECONDS}`,
        `${o.messages}`,
        perDevicePerMin.toFixed(1),
        (((o.bytes / DEVICES / SECONDS) * 60) / 1024).toFixed(1),
        mode === 'telemetry' ? `${o.episodes}` : '-',
        o.feedUs.toFixed(1),
      ]);
    }
    const header = [
      `${DEVICES} devices x ${HZ} Hz x ${SECONDS} s (${broker.kind})`,
      'results',
      'messages at the dashboard',
      'per device per min',
      'kB per device per min',
      'episode events',
      'µs per result',
    ];
    printTable(header, rows);
    const ratio = Number(rows[1][2]) / Math.max(1, Number(rows[0][2]));
    console.log(
      `the dashboard receives ${ratio.toFixed(0)}x fewer messages with edge-fleet-telemetry; ` +
        'results: what the devices produced; every result that does not reach the dashboard was lost on the way',
    );
  } finally {
    await broker.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
