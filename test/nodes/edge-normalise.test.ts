import assert from 'node:assert/strict';
import { existsSync, promises as fs } from 'node:fs';
import path from 'node:path';
import { Scaler, checkNormalisation, type NormalisationStats } from '../../lib/preprocess/scaling';
import { useTempUserDir } from '../helpers/user-dir';
import { collect, helper, nodeModule, withCatalog, type FlowNode } from '../helpers/red';

const normaliseNode = nodeModule('edge-normalise');
const tick = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

type Msg = Record<string, unknown>;
type StatusCall = { args: [{ fill?: string; shape?: string; text?: string }] };
/** The parts of a runtime node these tests use. */
interface TestNode {
  receive(msg: Msg): void;
  on(event: string, listener: (arg: never) => void): void;
}
const node = (id: string) => helper.getNode(id) as unknown as TestNode;
interface Request {
  post(url: string): Request;
  expect(status: number): Promise<{ body: Record<string, unknown> }>;
}

const readings = [
  { temperature: 20.5, humidity: 40, pressure: 1012.1 },
  { temperature: 21.5, humidity: 44, pressure: 1012.9 },
  { temperature: 23, humidity: 41, pressure: 1011.7 },
  { temperature: 22, humidity: 47, pressure: 1013.3 },
  { temperature: 19.5, humidity: 45, pressure: 1012.4 },
  { temperature: 24, humidity: 39, pressure: 1010.8 },
  { temperature: 20, humidity: 43, pressure: 1012.2 },
  { temperature: 21, humidity: 42, pressure: 1011.9 },
];
const asRows = (list: typeof readings) => list.map((r) => [r.temperature, r.humidity, r.pressure]);

/** Reference statistics, computed the plain way (mean first, then squared deviations). */
function twoPass(rows: number[][]): { mean: number[]; std: number[] } {
  const n = rows.length;
  const mean = rows[0].map((_, c) => rows.reduce((s, r) => s + r[c], 0) / n);
  const std = mean.map((m, c) => Math.sqrt(rows.reduce((s, r) => s + (r[c] - m) ** 2, 0) / n));
  return { mean, std };
}

function near(a: number, b: number, tol = 1e-9): void {
  assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);
}

function flow(config: Record<string, unknown>, extra: FlowNode[] = []): FlowNode[] {
  return [
    { id: 'f1', type: 'tab', label: 'normalise' },
    {
      id: 'n1',
      z: 'f1',
      type: 'edge-normalise',
      name: 'norm',
      method: 'zscore',
      range: '0,1',
      source: 'first-n',
      learnCount: 3,
      alpha: 0.05,
      mean: '',
      std: '',
      min: '',
      max: '',
      clip: false,
      zLimit: 3,
      badValues: 'reject',
      emitWhileLearning: true,
      channels: '',
      windowSize: 0,
      windowStride: 1,
      property: 'payload',
      ...config,
      wires: [['out']],
    },
    { id: 'out', z: 'f1', type: 'helper' },
    ...extra,
  ];
}

const catchNodes: FlowNode[] = [
  { id: 'c1', z: 'f1', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
  { id: 'caught', z: 'f1', type: 'helper' },
];

function statusLog(node: { on: (e: string, f: (c: StatusCall) => void) => void }) {
  const calls: StatusCall['args'][0][] = [];
  node.on('call:status', (call) => calls.push(call.args[0]));
  return calls;
}

describe('edge-normalise node', function () {
  const home = useTempUserDir('edge-normalise');

  const stateFile = () => path.join(home.path, 'edge-ai', 'normalise', 'n1.json');

  it('scales readings with statistics learned from the first N, then freezes', async () => {
    await helper.load(normaliseNode, flow({ learnCount: 3 }));
    const n1 = node('n1');
    const statuses = statusLog(n1);
    const first = collect(node('out'), 1);
    n1.receive({ payload: readings[0] });
    await first;
    await tick(300); // the throttled count update arrives
    assert.deepEqual(statuses.at(-1), {
      fill: 'blue',
      shape: 'ring',
      text: 'edge-normalise.status.learning',
    });
    const got = collect(node('out'), 4);
    readings.slice(1, 5).forEach((payload) => n1.receive({ payload }));
    const msgs = [...(await first), ...(await got)];
    assert.deepEqual(
      msgs.map((m) => m.learning),
      [true, true, false, false, false],
    );
    assert.deepEqual(msgs[4].features, ['temperature', 'humidity', 'pressure']);
    const ref = twoPass(asRows(readings.slice(0, 3)));
    const out = msgs[4].payload as Record<string, number>;
    const input = readings[4];
    near(out.temperature, (input.temperature - ref.mean[0]) / ref.std[0]);
    near(out.humidity, (input.humidity - ref.mean[1]) / ref.std[1]);
    near(out.pressure, (input.pressure - ref.mean[2]) / ref.std[2]);
    await tick(20);
    assert.equal(statuses.at(-1)?.fill, 'green');
    assert.equal(statuses.at(-1)?.shape, 'dot');
  });

  it('cuts scaled samples into windows of timesteps x features', async () => {
    await helper.load(
      normaliseNode,
      flow({ source: 'fixed', method: 'minmax', min: '0', max: '10', windowSize: 3, windowStride: 2 }),
    );
    const n1 = node('n1');
    const got = collect(node('out'), 3);
    for (let i = 0; i < 7; i++) n1.receive({ payload: [i, 10 - i] });
    const msgs = await got;
    assert.deepEqual(
      msgs.map((m) => (m.payload as number[][]).map((row) => Math.round(row[0] * 10))),
      [
        [0, 1, 2],
        [2, 3, 4],
        [4, 5, 6],
      ],
      'windows start at samples 0, 2, 4',
    );
    for (const m of msgs) {
      assert.deepEqual(m.features, ['ch0', 'ch1']);
      assert.equal((m.payload as number[][]).length, 3);
      assert.equal((m.payload as number[][])[0].length, 2);
    }
  });

  it('accepts every numeric input shape and answers in the same shape', async () => {
    await helper.load(normaliseNode, flow({ source: 'fixed', mean: '10', std: '2' }));
    const n1 = node('n1');
    const got = collect(node('out'), 5);
    n1.receive({ payload: 14 });
    n1.receive({ reset: true });
    n1.receive({ payload: [12, 8] });
    n1.receive({ reset: true });
    n1.receive({ payload: new Float32Array([10, 16]) });
    n1.receive({ reset: true });
    n1.receive({ payload: { a: 6, b: 10 } });
    n1.receive({ reset: true });
    n1.receive({
      payload: [
        [12, 14],
        [8, 6],
      ],
    });
    const msgs = await got;
    assert.deepEqual(
      msgs.map((m) => m.payload),
      [
        2,
        [1, -1],
        [0, 3],
        { a: -2, b: 0 },
        [
          [1, 2],
          [-1, -2],
        ],
      ],
    );
    assert.deepEqual(
      msgs.map((m) => m.features),
      [['value'], ['ch0', 'ch1'], ['ch0', 'ch1'], ['a', 'b'], ['ch0', 'ch1']],
    );
  });

  it('sends one message per window, in order, for a 2-D input', async () => {
    await helper.load(
      normaliseNode,
      flow({ source: 'fixed', mean: '0', std: '1', windowSize: 2, windowStride: 2 }),
    );
    const got = collect(node('out'), 3);
    node('n1').receive({ payload: [[1], [2], [3], [4], [5], [6]], topic: 'batch' });
    const msgs = await got;
    assert.deepEqual(
      msgs.map((m) => m.payload),
      [
        [[1], [2]],
        [[3], [4]],
        [[5], [6]],
      ],
    );
    assert.ok(msgs.every((m) => m.topic === 'batch'));
  });

  it('writes to the configured output property and leaves msg.payload alone', async () => {
    await helper.load(
      normaliseNode,
      flow({ source: 'fixed', mean: '1', std: '1', property: 'scaled.values' }),
    );
    const got = collect(node('out'), 1);
    node('n1').receive({ payload: [3] });
    const [msg] = await got;
    assert.deepEqual(msg.payload, [3]);
    assert.deepEqual((msg.scaled as Msg).values, [2]);
  });

  it('routes bad input to a Catch node with the original message and keeps running', async () => {
    await helper.load(withCatalog('edge-normalise'), flow({ learnCount: 1 }, catchNodes));
    const n1 = node('n1');
    const statuses = statusLog(n1);
    const caught = collect(node('caught'), 3);
    n1.receive({ payload: 'not a number', topic: 'a' });
    n1.receive({ payload: { t: 1, h: 2 }, topic: 'b' });
    n1.receive({ payload: { t: NaN, h: 2 }, topic: 'c' });
    n1.receive({ payload: { t: 1, h: 2, extra: 3 }, topic: 'd' });
    const errs = await caught;
    assert.deepEqual(
      errs.map((m) => m.topic),
      ['a', 'c', 'd'],
    );
    assert.equal(errs[0].payload, 'not a number');
    assert.deepEqual(errs[1].payload, { t: NaN, h: 2 });
    const said = [
      /^Error: bad input: expected a number, an array of numbers or an object of named numbers, got string$/,
      /^Error: bad input: channel "t" is not a finite number$/,
      /^Error: bad input: unexpected channel "extra" \(channels are t, h; reset to learn new ones\)$/,
    ];
    errs.forEach((m, i) => {
      const error = m.error as { message: string; source: { id: string } };
      assert.equal(error.source.id, 'n1');
      assert.match(error.message, said[i]);
    });
    await tick(20);
    assert.equal(statuses.at(-1)?.fill, 'red');
    const ok = collect(node('out'), 1);
    n1.receive({ payload: { t: 3, h: 4 } });
    assert.deepEqual((await ok)[0].features, ['t', 'h']);
  });

  it('skips bad samples without error or output when told to', async () => {
    await helper.load(normaliseNode, flow({ badValues: 'skip', learnCount: 1 }, catchNodes));
    const n1 = node('n1');
    let errors = 0;
    node('caught').on('input', () => (errors += 1));
    const got = collect(node('out'), 2);
    n1.receive({ payload: [1, 2], topic: 'good1' });
    n1.receive({ payload: [Infinity, 2], topic: 'bad' });
    n1.receive({ payload: [3, 4], topic: 'good2' });
    const msgs = await got;
    assert.deepEqual(
      msgs.map((m) => m.topic),
      ['good1', 'good2'],
    );
    await tick(20);
    assert.equal(errors, 0);
  });

  it('reads out the statistics by msg.command or msg.topic "stats" in the export format', async () => {
    await helper.load(normaliseNode, flow({ learnCount: 4, clip: true, zLimit: 4 }));
    const n1 = node('n1');
    const got = collect(node('out'), 6);
    readings.slice(0, 4).forEach((payload) => n1.receive({ payload }));
    n1.receive({ command: 'stats' });
    n1.receive({ topic: 'stats', payload: 'ignored' });
    const msgs = await got;
    const [a, b] = msgs.slice(4);
    assert.equal(a.topic, 'stats');
    assert.deepEqual(a.payload, b.payload);
    const stats = checkNormalisation(a.payload);
    const ref = twoPass(asRows(readings.slice(0, 4)));
    assert.equal(stats.method, 'zscore');
    assert.equal(stats.count, 4);
    assert.deepEqual(stats.channels, ['temperature', 'humidity', 'pressure']);
    assert.deepEqual(stats.clip, [-4, 4]);
    stats.mean.forEach((m, i) => near(m, ref.mean[i]));
    stats.std.forEach((s, i) => near(s, ref.std[i]));
    // Whoever stores these statistics with a model reproduces the node's scaling exactly.
    const scaler = new Scaler(JSON.parse(JSON.stringify(stats)) as NormalisationStats);
    assert.deepEqual(
      msgs[3].payload,
      scaler
        .scaleInput(readings[3])[0]
        .reduce((o, v, i) => ({ ...o, [stats.channels[i]]: v }), {} as Record<string, number>),
    );
  });

  it('sends the statistics when the editor button posts to the admin endpoint', async () => {
    await helper.load(normaliseNode, flow({ learnCount: 2 }));
    const n1 = node('n1');
    const got = collect(node('out'), 3);
    n1.receive({ payload: [1, 10] });
    n1.receive({ payload: [3, 30] });
    await tick(10);
    const res = await (helper.request() as Request).post('/edge-normalise/n1/stats').expect(200);
    assert.equal(res.body.count, 2);
    const msgs = await got;
    assert.equal(msgs[2].topic, 'stats');
    assert.deepEqual((msgs[2].payload as NormalisationStats).mean, [2, 20]);
    await (helper.request() as Request).post('/edge-normalise/nope/stats').expect(404);
  });

  it('forgets learned statistics on msg.reset', async () => {
    await helper.load(normaliseNode, flow({ learnCount: 2 }));
    const n1 = node('n1');
    const got = collect(node('out'), 5);
    n1.receive({ payload: { a: 1 } });
    n1.receive({ payload: { a: 2 } });
    n1.receive({ reset: true, payload: 12345 });
    n1.receive({ command: 'stats' });
    n1.receive({ payload: { b: 7 } });
    n1.receive({ command: 'stats' });
    const msgs = await got;
    const afterReset = msgs[2].payload as NormalisationStats;
    assert.equal(afterReset.count, 0);
    assert.deepEqual(afterReset.channels, []);
    assert.deepEqual(msgs[3].features, ['b'], 'new channels are learned after a reset');
    assert.equal(msgs[3].learning, true);
    assert.equal((msgs[4].payload as NormalisationStats).count, 1);
  });

  it('keeps learned statistics across a runtime restart (same node id and user dir)', async () => {
    const config = flow({ learnCount: 8 });
    await helper.load(normaliseNode, config);
    let got = collect(node('out'), 5);
    readings.slice(0, 5).forEach((payload) => node('n1').receive({ payload }));
    await got;
    await helper.unload();
    const saved = JSON.parse(await fs.readFile(stateFile(), 'utf8'));
    assert.equal(saved.stats.count, 5);

    await helper.load(normaliseNode, config);
    const n1 = node('n1');
    got = collect(node('out'), 4);
    readings.slice(5).forEach((payload) => n1.receive({ payload }));
    n1.receive({ command: 'stats' });
    const msgs = await got;
    assert.deepEqual(
      msgs.slice(0, 3).map((m) => m.learning),
      [true, true, false],
      'learning resumes at sample 6 and freezes at 8',
    );
    const stats = msgs[3].payload as NormalisationStats;
    const ref = twoPass(asRows(readings));
    assert.equal(stats.count, 8);
    stats.mean.forEach((m, i) => near(m, ref.mean[i]));
    stats.std.forEach((s, i) => near(s, ref.std[i]));
  });

  it('writes its state on close rather than on every message', async () => {
    await helper.load(normaliseNode, flow({ source: 'welford' }));
    const got = collect(node('out'), 3);
    [1, 2, 3].forEach((v) => node('n1').receive({ payload: [v] }));
    await got;
    await tick(50);
    assert.equal(existsSync(stateFile()), false, 'the first write waits for the throttle interval');
    await helper.unload();
    const saved = JSON.parse(await fs.readFile(stateFile(), 'utf8'));
    assert.equal(saved.stats.count, 3);
    assert.deepEqual(saved.stats.mean, [2]);
    assert.deepEqual(
      (await fs.readdir(path.dirname(stateFile()))).filter((f) => f.includes('.tmp-')),
      [],
    );
  });

  it('starts fresh, with a warning, from a corrupt state file', async () => {
    await fs.mkdir(path.dirname(stateFile()), { recursive: true });
    await fs.writeFile(stateFile(), '{"format": "edge-normal');
    await helper.load(normaliseNode, flow({ learnCount: 1 }));
    const warnings = helper.log().args.filter((a) => (a[0] as Msg).level === 30 && (a[0] as Msg).id === 'n1');
    assert.equal(warnings.length, 1);
    const got = collect(node('out'), 1);
    node('n1').receive({ payload: [5] });
    assert.deepEqual((await got)[0].payload, [0]);
  });

  it('uses statistics loaded from a model (msg.command "load-stats") and keeps them', async () => {
    const config = flow({});
    await helper.load(normaliseNode, config);
    const meta = {
      format: 'tfjs-layers',
      normalisation: {
        method: 'minmax',
        channels: ['t', 'h'],
        min: [0, 0],
        max: [40, 100],
        range: [-1, 1],
        count: 99,
      },
    };
    node('n1').receive({ command: 'load-stats', payload: meta });
    await tick(10);
    await helper.unload();
    await helper.load(normaliseNode, config);
    const got = collect(node('out'), 1);
    node('n1').receive({ payload: { h: 75, t: 10 } });
    const [msg] = await got;
    assert.deepEqual(msg.payload, { t: -0.5, h: 0.5 });
    assert.equal(msg.learning, false);
  });

  it('reports an invalid configuration and fails each message to Catch', async () => {
    await helper.load(
      withCatalog('edge-normalise'),
      flow({ source: 'fixed', method: 'zscore', mean: '1,2', std: '' }, catchNodes),
    );
    const n1 = node('n1');
    const caught = collect(node('caught'), 1);
    n1.receive({ payload: [1, 2] });
    const [msg] = await caught;
    assert.deepEqual(msg.payload, [1, 2]);
    assert.match(String((msg.error as { message?: string }).message), /std/);
    const res = await (helper.request() as Request).post('/edge-normalise/n1/stats').expect(500);
    assert.match(String(res.body.error), /std/);
  });
});
