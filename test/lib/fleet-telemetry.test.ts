import assert from 'node:assert/strict';
import { FleetConnection } from '../../lib/fleet/connection';
import { useEmbeddedBroker, type EmbeddedBroker } from '../../lib/fleet/embedded-broker';
import {
  FleetTelemetry,
  fleetTelemetryFilter,
  type EpisodeEvent,
  type TelemetryState,
} from '../../lib/fleet/telemetry';
import { freePort } from '../helpers/mqtt-brokers';
import { until } from '../helpers/wait';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Seen {
  topic: string;
  retained: boolean;
  body: TelemetryState | EpisodeEvent;
}

describe('fleet telemetry over MQTT (embedded broker)', function () {
  this.timeout(30000);
  let broker: EmbeddedBroker;
  let port: number;
  let seq = 0;
  const open: { close(): Promise<void> }[] = [];

  before(async () => {
    port = await freePort();
    broker = await useEmbeddedBroker(port);
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
  });
  after(async () => broker.release());

  async function connect(fleet: string, deviceId: string, reconnectMs = 2000): Promise<FleetConnection> {
    const c = new FleetConnection({ url: `mqtt://127.0.0.1:${port}`, fleet, deviceId, reconnectMs });
    open.push(c);
    await c.waitConnected();
    return c;
  }

  /** A dashboard's view: every telemetry message of the fleet, in order. */
  async function watch(fleet: string): Promise<Seen[]> {
    const seen: Seen[] = [];
    const c = await connect(fleet, `watcher${seq++}`);
    await c.subscribe(fleetTelemetryFilter(c.topics), (topic, payload, retained) =>
      seen.push({ topic, retained, body: JSON.parse(payload.toString()) as TelemetryState }),
    );
    return seen;
  }

  const states = (seen: Seen[]) =>
    seen.filter((s) => s.topic.endsWith('/state')).map((s) => s.body as TelemetryState);
  const episodes = (seen: Seen[]) =>
    seen.filter((s) => s.topic.endsWith('/episode')).map((s) => s.body as EpisodeEvent);

  it('a 100 Hz stream costs one retained state per interval, with the rate, score and episodes', async () => {
    const fleet = `tel${seq++}`;
    const seen = await watch(fleet);
    const device = await connect(fleet, 'pi1');
    const telemetry = new FleetTelemetry(device, { source: 'pump', intervalMs: 500 });
    open.push(telemetry);
    await telemetry.start();
    const t0 = Date.now();
    // 2.5 s at 100 Hz; an episode from sample 100 to 180 on channel "vibration".
    for (let i = 0; i < 250; i++) {
      const at = t0 + i * 10;
      const inEpisode = i >= 100 && i < 180;
      const details =
        i === 100
          ? { event: 'start' as const, episode: { start: at, samples: 1, peakScore: 0.9 }, top: 'vibration' }
          : i === 180
            ? {
                event: 'end' as const,
                episode: { start: t0 + 1000, end: at, samples: 80, peakScore: 0.97 },
                top: 'vibration',
              }
            : inEpisode
              ? { episode: { start: t0 + 1000, samples: i - 99, peakScore: 0.95 }, top: 'vibration' }
              : { top: 'temperature' };
      telemetry.anomaly(
        { score: inEpisode ? 0.9 : 0.1, isAnomaly: inEpisode, threshold: 0.5, learning: false },
        details,
        at,
      );
      await sleep(10);
    }
    const elapsed = Date.now() - t0;
    await until('the final state', () => states(seen).find((s) => s.messages === 250));
    const published = states(seen);
    assert.ok(
      published.length <= Math.ceil(elapsed / 500) + 2,
      `${published.length} states in ${elapsed} ms: at most one per 500 ms`,
    );
    assert.ok(published.length >= 3, `states while the stream runs: ${published.length}`);
    const busy = published.filter((s) => s.rate > 0).map((s) => s.rate);
    const median = busy.sort((a, b) => a - b)[Math.floor(busy.length / 2)];
    assert.ok(median > 50 && median <= 110, `rate ~100 msg/s (timer-bound), got ${median}`);
    const mid = published.find((s) => s.anomaly?.episode);
    assert.ok(mid, 'a state during the episode shows it');
    assert.equal(mid.anomaly?.episode?.channel, 'vibration');
    assert.equal(mid.anomaly?.isAnomaly, true);

    const events = await until('both episode events', () =>
      episodes(seen).length === 2 ? episodes(seen) : false,
    );
    assert.deepEqual(
      events.map((e) => e.event),
      ['start', 'end'],
    );
    const end = events[1];
    assert.equal(end.device, 'pi1');
    assert.equal(end.source, 'pump');
    assert.equal(end.channel, 'vibration');
    assert.equal(end.durationMs, 800);
    assert.equal(end.samples, 80);
    assert.equal(end.peakScore, 0.97);
    assert.equal(new Date(end.start).getTime(), t0 + 1000);

    const last = published[published.length - 1];
    assert.equal(last.episodes, 1);
    assert.equal(last.lastEpisode?.event, 'end');
    assert.equal(last.anomaly?.episode, null);
    assert.equal(last.anomaly?.channel, 'temperature');
    // The stream stopped: one more state says so.
    await until('rate 0 after the stream stops', () =>
      states(seen).some((s) => s.messages === 250 && s.rate === 0),
    );

    // A dashboard that starts later gets the latest state and the last episode event, retained.
    const late = await watch(fleet);
    await until('retained state and episode', () => late.length >= 2);
    assert.ok(late.every((s) => s.retained));
    assert.equal(states(late)[0].messages, 250);
    assert.equal(episodes(late)[0].event, 'end');
  });

  it('episode events wait while the broker is down and go out on reconnect; a burst is capped', async () => {
    const fleet = `tel${seq++}`;
    const device = await connect(fleet, 'pi2', 200);
    const telemetry = new FleetTelemetry(device, { source: 'fan', intervalMs: 200, episodesPerMinute: 6 });
    open.push(telemetry);
    await telemetry.start();
    await broker.release();
    await until('the device sees the broker gone', () => !device.connected);
    const at = Date.now();
    telemetry.anomaly(
      { score: 0.8, isAnomaly: true, threshold: 0.5 },
      { event: 'start', episode: { start: at, samples: 1, peakScore: 0.8 }, top: 'rpm' },
      at,
    );
    assert.equal(telemetry.pendingEpisodes, 1);
    broker = await useEmbeddedBroker(port);
    const seen = await watch(fleet);
    await until('the queued episode, after reconnect', () => episodes(seen).length === 1, 15000);
    assert.equal(episodes(seen)[0].channel, 'rpm');
    assert.equal(telemetry.pendingEpisodes, 0);

    // A flapping detector: 30 episode events at once; a bucket of 10 (one already used) goes out.
    for (let i = 0; i < 30; i++) {
      telemetry.anomaly(
        { score: 0.8, isAnomaly: i % 2 === 0, threshold: 0.5 },
        {
          event: i % 2 === 0 ? 'end' : 'start',
          episode: { start: at, end: at + i, samples: 1, peakScore: 0.8 },
        },
        at + i,
      );
    }
    await until('the capped burst', () => states(seen).some((s) => s.dropped.episodes > 0));
    await sleep(300);
    assert.equal(episodes(seen).length, 10, 'the first event and 9 more of the burst');
    const last = states(seen)[states(seen).length - 1];
    assert.equal(last.dropped.episodes, 21);
  });

  it('the state carries the fleet model versions the device reports, node statuses and errors', async () => {
    const fleet = `tel${seq++}`;
    const seen = await watch(fleet);
    const device = await connect(fleet, 'pi3');
    const telemetry = new FleetTelemetry(device, { source: 'line', intervalMs: 100, maxNodes: 2 });
    open.push(telemetry);
    await telemetry.start();
    await device.publish(
      device.topics.deviceModel('pi3', 'sensor'),
      JSON.stringify({ device: 'pi3', name: 'sensor', version: 4, storeVersion: 2, runtime: 'tfjs-cpu' }),
      { retain: true },
    );
    telemetry.status({ id: 'a', type: 'edge-infer' }, { fill: 'green', shape: 'dot', text: 'ok' });
    telemetry.status({ id: 'b', type: 'edge-sensor', name: 'pump' }, { fill: 'red', text: 'bus error' });
    telemetry.status({ id: 'c', type: 'edge-model' }, { fill: 'green', text: 'v4' });
    telemetry.error('I2C read failed', { id: 'b', type: 'edge-sensor', name: 'pump' });
    const state = await until('the state with all of it', () =>
      states(seen).find((s) => s.models.sensor && s.errors === 1 && s.nodes.c),
    );
    assert.deepEqual(state.models.sensor, { version: 4, storeVersion: 2, runtime: 'tfjs-cpu' });
    assert.deepEqual(Object.keys(state.nodes), ['b', 'c'], 'the oldest status change goes when full');
    assert.equal(state.nodes.b.text, 'bus error');
    assert.equal(state.lastError?.message, 'I2C read failed');
    assert.equal(state.lastError?.node?.name, 'pump');
    // The report is cleared (an empty retained message): the model leaves the state.
    await device.publish(device.topics.deviceModel('pi3', 'sensor'), '', { retain: true });
    await until('the model gone from the state', () => {
      const all = states(seen);
      return all.length && !all[all.length - 1].models.sensor;
    });
  });

  it('refuses a source name that is not one topic level', async () => {
    const device = await connect(`tel${seq++}`, 'pi4');
    assert.throws(
      () => new FleetTelemetry(device, { source: 'a/b' }),
      (err: Error & { code?: string }) =>
        err.code === 'setting-invalid' && /telemetry source/.test(err.message),
    );
  });
});
