import assert from 'node:assert/strict';
import { FleetConnection } from '../../lib/fleet/connection';
import { fleetTelemetryFilter, type EpisodeEvent, type TelemetryState } from '../../lib/fleet/telemetry';
import { useEmbeddedBroker } from '../../lib/fleet/embedded-broker';
import { freePort, startEmbedded, type TestBroker } from '../helpers/mqtt-brokers';
import { helper, nodeModule, withCatalog, type FlowNode } from '../helpers/red';
import { gaussian, prng } from '../helpers/signals';
import { useTempUserDir } from '../helpers/user-dir';
import { until } from '../helpers/wait';

const nodes = [nodeModule('edge-fleet'), nodeModule('edge-anomaly'), withCatalog('edge-fleet-telemetry')];

type StatusCall = { args: [{ fill?: string; text?: string }] };
interface TestNode {
  receive(msg: Record<string, unknown>): void;
  on(event: string, listener: (arg: never) => void): void;
}
const node = (id: string) => helper.getNode(id) as unknown as TestNode;

/** Two channels of noise; samples [from, to) shifted by +0.8 on "pressure". */
function readings(n: number, from: number, to: number): { pressure: number; flow: number }[] {
  const g = gaussian(prng(3));
  return Array.from({ length: n }, (_, t) => ({
    pressure: 2 + 0.1 * g() + (t >= from && t < to ? 0.8 : 0),
    flow: 30 + g(),
  }));
}

describe('edge-fleet-telemetry node', function () {
  this.timeout(30000);
  useTempUserDir('edge-fleet-telemetry');
  let broker: TestBroker;
  let seq = 0;
  const open: { close(): Promise<void> }[] = [];

  before(async () => {
    broker = await startEmbedded();
  });
  afterEach(async () => {
    await helper.unload();
    for (const o of open.splice(0).reverse()) await o.close();
  });
  after(async () => broker.stop());

  function flow(fleet: string): FlowNode[] {
    return [
      { id: 'tab', type: 'tab', label: 'device' },
      { id: 'f', type: 'edge-fleet', broker: broker.url, fleet, deviceId: 'pi1' },
      {
        id: 'n1',
        z: 'tab',
        type: 'edge-anomaly',
        method: 'auto',
        window: 10,
        alpha: 0.1,
        learning: 60,
        learningUnit: 'samples',
        threshold: 0.5,
        hysteresis: 0.2,
        minDuration: 5,
        nanPolicy: 'hold',
        adaptRate: 0,
        persist: false,
        wires: [['t'], []],
      },
      { id: 't', z: 'tab', type: 'edge-fleet-telemetry', fleet: 'f', source: 'pump', interval: 0.3 },
      { id: 's', z: 'tab', type: 'status', scope: null, wires: [['t']] },
      { id: 'c', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['t', 'caught']] },
      { id: 'caught', z: 'tab', type: 'helper' },
    ];
  }

  async function watch(fleet: string, url = broker.url) {
    const c = new FleetConnection({ url, fleet, deviceId: `watcher${seq++}` });
    open.push(c);
    await c.waitConnected();
    const states: TelemetryState[] = [];
    const episodes: EpisodeEvent[] = [];
    await c.subscribe(fleetTelemetryFilter(c.topics), (topic, payload) => {
      const body = JSON.parse(payload.toString()) as TelemetryState & EpisodeEvent;
      if (topic === `${c.topics.base}/devices/pi1/telemetry/pump/state`) states.push(body);
      else if (topic === `${c.topics.base}/devices/pi1/telemetry/pump/episode`) episodes.push(body);
    });
    return { states, episodes };
  }

  it("publishes edge-anomaly's episodes, a bounded state, node statuses and caught errors", async () => {
    const fleet = `ntel${seq++}-${Date.now()}`;
    const seen = await watch(fleet);
    await helper.load(nodes, flow(fleet));
    const statuses: { fill?: string; text?: string }[] = [];
    node('t').on('call:status', ((call: StatusCall) => statuses.push(call.args[0])) as (arg: never) => void);
    const data = readings(200, 120, 160);
    const t0 = Date.now();
    data.forEach((payload, i) => node('n1').receive({ payload, timestamp: t0 + i * 10 }));
    node('n1').receive({ payload: 'not a reading' });

    const events = await until('episode start and end', () =>
      seen.episodes.length >= 2 ? seen.episodes : false,
    );
    assert.deepEqual(
      events.map((e) => e.event),
      ['start', 'end'],
    );
    assert.equal(events[0].channel, 'pressure');
    assert.ok(new Date(events[0].start).getTime() >= t0 + 120 * 10, events[0].start);
    assert.ok((events[1].durationMs ?? 0) >= 300, `episode lasted ${events[1].durationMs} ms`);

    const final = await until('the state after all messages and the error', () =>
      seen.states.find((s) => s.messages === 200 && s.errors === 1),
    );
    assert.equal(final.episodes, 1);
    assert.equal(final.lastEpisode?.event, 'end');
    assert.equal(final.anomaly?.learning, false);
    assert.ok(final.anomaly && final.anomaly.score >= 0 && final.anomaly.score <= 1);
    assert.equal(final.lastError?.node?.type, 'edge-anomaly');
    assert.equal(final.nodes.n1?.type, 'edge-anomaly', 'the status node reported edge-anomaly');
    assert.equal(final.nodes.t, undefined, "the telemetry node's own status is left out");
    // 201 messages in well under a second: a handful of states, not one per message.
    assert.ok(seen.states.length <= 8, `${seen.states.length} states`);
    await until('the status shows the score', () =>
      statuses.some((s) => /^score \d\.\d\d · /.test(s.text ?? '')),
    );
  });

  it('bad input fails with the message to a Catch node, and the flow keeps publishing', async () => {
    const fleet = `ntel${seq++}-${Date.now()}`;
    const seen = await watch(fleet);
    await helper.load(nodes, flow(fleet));
    const caught: Record<string, unknown>[] = [];
    node('caught').on('input', ((m: Record<string, unknown>) => caught.push(m)) as (arg: never) => void);
    node('t').receive({ payload: { score: 'high', isAnomaly: true }, topic: 'bad' });
    const [msg] = await until('the caught error', () => (caught.length ? caught : false));
    assert.equal(msg.topic, 'bad');
    const error = msg.error as { message: string; source: { id: string } };
    assert.equal(error.source.id, 't');
    assert.match(error.message, /msg\.payload\.score must be a finite number/);
    node('t').receive({ payload: { score: 0.2, isAnomaly: false, threshold: 0.5 } });
    const state = await until('a state with the good reading', () => seen.states.find((s) => s.anomaly));
    assert.equal(state.anomaly?.score, 0.2);
  });

  it('with the broker away from the start, messages complete at once; it publishes once the broker is up', async () => {
    const port = await freePort();
    const fleet = `ntel${seq++}-${Date.now()}`;
    await helper.load(nodes, [
      { id: 'f', type: 'edge-fleet', broker: `mqtt://127.0.0.1:${port}`, fleet, deviceId: 'pi1' },
      { id: 't', type: 'edge-fleet-telemetry', fleet: 'f', source: 'pump', interval: 0.2 },
      { id: 'done', type: 'complete', scope: ['t'], uncaught: false, wires: [['completed']] },
      { id: 'completed', type: 'helper' },
    ]);
    const statuses: { fill?: string; text?: string }[] = [];
    node('t').on('call:status', ((call: StatusCall) => statuses.push(call.args[0])) as (arg: never) => void);
    let completed = 0;
    node('completed').on('input', (() => completed++) as (arg: never) => void);
    for (let i = 0; i < 1000; i++) node('t').receive({ payload: { score: 0.1, isAnomaly: false } });
    await until('1000 messages completed with no broker', () => completed === 1000, 5000);
    await until('a red status naming the broker', () =>
      statuses.some((s) => s.fill === 'red' && /127\.0\.0\.1/.test(s.text ?? '')),
    );
    const broker = await useEmbeddedBroker(port);
    try {
      const seen = await watch(fleet, `mqtt://127.0.0.1:${port}`);
      const state = await until('the state once connected', () =>
        seen.states.find((s) => s.messages === 1000),
      );
      assert.equal(state.anomaly?.score, 0.1);
    } finally {
      for (const o of open.splice(0).reverse()) await o.close();
      await helper.unload();
      await broker.release();
    }
  });

  it('without a fleet configuration: a red status and every message fails', async () => {
    await helper.load(nodes, [
      { id: 't', type: 'edge-fleet-telemetry', fleet: '', source: 'pump', wires: [] },
    ]);
    const statuses: { fill?: string; text?: string }[] = [];
    node('t').on('call:status', ((call: StatusCall) => statuses.push(call.args[0])) as (arg: never) => void);
    const errors: unknown[] = [];
    node('t').on('call:error', ((call: unknown) => errors.push(call)) as (arg: never) => void);
    node('t').receive({ payload: { score: 0.1, isAnomaly: false } });
    await until('the error', () => errors.length > 0);
    // The status was set at start (before the listener): the error names the cause.
    assert.match(String((errors[0] as { args: unknown[] }).args[0]), /no fleet configured/);
  });
});
