import assert from 'node:assert/strict';
import { promises as fs, readFileSync, readdirSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { helper, nodeModule, type FlowNode } from '../helpers/red';
import { nodeRedPackageDir } from '../helpers/node-red-path';
import { FleetConnection } from '../../lib/fleet/connection';
import { freePort } from '../helpers/mqtt-brokers';

/** The package root (this file runs from dist/test/nodes/). */
const ROOT = path.resolve(__dirname, '..', '..', '..');
const EXAMPLES = path.join(ROOT, 'examples');

/** The core nodes of the Node-RED under test (Node-RED 4 here, or 5 in the Node 22 run). */
function coreNodesDir(): string {
  const nodesPackage = require.resolve('@node-red/nodes/package.json', { paths: [nodeRedPackageDir()] });
  return path.join(path.dirname(nodesPackage), 'core');
}
const exampleFiles = readdirSync(EXAMPLES)
  .filter((f) => f.endsWith('.json'))
  .sort();

/** The package's node types, as package.json registers them with Node-RED. */
const PACKAGE_TYPES = Object.keys(
  (JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { 'node-red': { nodes: object } })[
    'node-red'
  ].nodes,
);

/** Core node types the examples may use, and the core module that registers each. */
const CORE_MODULES: Record<string, string> = {
  tab: '',
  comment: 'common/90-comment.js',
  inject: 'common/20-inject.js',
  debug: 'common/21-debug.js',
  catch: 'common/25-catch.js',
  status: 'common/25-status.js',
  'link in': 'common/60-link.js',
  'link out': 'common/60-link.js',
  junction: 'common/05-junction.js',
  function: 'function/10-function.js',
  switch: 'function/10-switch.js',
  change: 'function/15-change.js',
  template: 'function/80-template.js',
  delay: 'function/89-delay.js',
  trigger: 'function/89-trigger.js',
  rbe: 'function/rbe.js',
  'mqtt out': 'network/10-mqtt.js',
  'mqtt-broker': 'network/10-mqtt.js',
  'mqtt in': 'network/10-mqtt.js',
};

/** Dashboard nodes: configuration nodes are dropped, widgets become helper nodes in the runtime tests. */
const DASHBOARD_CONFIG = ['ui-base', 'ui-page', 'ui-group', 'ui-theme'];
const isDashboard = (type: string) => type.startsWith('ui-');

function readExample(file: string): FlowNode[] {
  return JSON.parse(readFileSync(path.join(EXAMPLES, file), 'utf8')) as FlowNode[];
}

type Msg = Record<string, unknown>;

/**
 * Loads an example into the test runtime: dashboard widgets become helper nodes with the same id
 * (so what the dashboard would show can be observed), `patch` shortens timings, and every node in
 * `probes` gets a helper node wired to its output (probe id = `probe:<node id>:<output>`).
 */
async function loadExample(
  file: string,
  patch: (byId: Map<string, FlowNode>) => void,
  probes: Array<[string, number]> = [],
): Promise<void> {
  const flow = readExample(file).filter((n) => !DASHBOARD_CONFIG.includes(n.type));
  const converted = flow.map((n) =>
    isDashboard(n.type) ? ({ id: n.id, z: n.z, type: 'helper', wires: [] } as FlowNode) : n,
  );
  const byId = new Map(converted.map((n) => [n.id, n]));
  patch(byId);
  for (const [id, output] of probes) {
    const node = byId.get(id);
    assert.ok(node, `no node ${id} in ${file}`);
    const probeId = `probe:${id}:${output}`;
    const wires = node.wires as string[][];
    while (wires.length <= output) wires.push([]);
    wires[output].push(probeId);
    converted.push({ id: probeId, z: node.z, type: 'helper', wires: [] } as FlowNode);
  }
  const modules = new Set<unknown>();
  for (const n of converted) {
    if (PACKAGE_TYPES.includes(n.type)) modules.add(nodeModule(n.type));
    else if (CORE_MODULES[n.type]) modules.add(require(path.join(coreNodesDir(), CORE_MODULES[n.type])));
  }
  await helper.load([...modules], converted);
}

/** Collects what a node receives until `done(messages)` says enough, or fails after `ms`. */
function until(id: string, done: (got: Msg[]) => boolean, ms: number): Promise<Msg[]> {
  const node = helper.getNode(id);
  assert.ok(node, `no node ${id} in the loaded flow`);
  return new Promise((resolve, reject) => {
    const got: Msg[] = [];
    const timer = setTimeout(() => {
      const last = got.length ? JSON.stringify(got[got.length - 1].payload).slice(0, 300) : 'none';
      reject(
        new Error(`${id}: condition not met after ${ms} ms (${got.length} messages, last payload ${last})`),
      );
    }, ms);
    node.on('input', (msg: Msg) => {
      got.push(msg);
      if (done(got)) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}

function set(byId: Map<string, FlowNode>, id: string, values: Record<string, unknown>): void {
  const node = byId.get(id);
  assert.ok(node, `no node ${id}`);
  Object.assign(node, values);
}

describe('example flows', function () {
  it('there are the six documented examples', () => {
    for (const prefix of ['01 - ', '02 - ', '03 - ', '04 - ', '05 - ', '06 - ']) {
      assert.ok(
        exampleFiles.some((f) => f.startsWith(prefix)),
        `no example ${prefix}*.json in ${exampleFiles.join(', ')}`,
      );
    }
  });

  it('every node is a package, core or dashboard node, wired to nodes that exist', () => {
    for (const file of exampleFiles) {
      const flow = readExample(file);
      const ids = new Set(flow.map((n) => n.id));
      assert.equal(ids.size, flow.length, `${file}: duplicate node ids`);
      for (const n of flow) {
        const known = PACKAGE_TYPES.includes(n.type) || n.type in CORE_MODULES || isDashboard(n.type);
        assert.ok(known, `${file}: unknown node type ${n.type} (${n.id})`);
        if (n.z !== undefined) assert.ok(ids.has(n.z as string), `${file}: ${n.id} is on a missing tab`);
        for (const out of (n.wires as string[][] | undefined) ?? []) {
          for (const target of out)
            assert.ok(ids.has(target), `${file}: ${n.id} is wired to missing ${target}`);
        }
      }
    }
  });

  it('every node type of the package is used by an example (Import > Examples shows each one at work)', () => {
    const used = new Set(exampleFiles.flatMap((file) => readExample(file).map((n) => n.type)));
    assert.deepEqual(
      PACKAGE_TYPES.filter((type) => !used.has(type)),
      [],
    );
  });

  it('every example is documented with comment nodes', () => {
    for (const file of exampleFiles) {
      const comments = readExample(file).filter((n) => n.type === 'comment');
      assert.ok(comments.length >= 1, `${file} has no comment node`);
    }
  });

  it('the demo flow that npm start deploys exists and has a dashboard', () => {
    const script = readFileSync(path.join(ROOT, 'scripts', 'start-demo.mjs'), 'utf8');
    const name = /'examples',\s*'([^']+\.json)'/.exec(script)?.[1];
    assert.ok(name, 'start-demo.mjs names no examples/*.json');
    assert.ok(exampleFiles.includes(name), `${name} is not in examples/`);
    const types = readExample(name).map((n) => n.type);
    for (const type of [
      'ui-base',
      'ui-page',
      'ui-group',
      'ui-chart',
      'edge-sensor',
      'edge-anomaly',
      'debug',
    ]) {
      assert.ok(types.includes(type), `the demo has no ${type} node`);
    }
  });
});

describe('example flows in a Node-RED runtime', function () {
  this.timeout(60000);
  let userDir: string;
  let settings: Record<string, unknown>;
  let previousUserDir: unknown;

  beforeEach(async () => {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-examples-'));
    settings = helper.settings();
    previousUserDir = settings.userDir;
    settings.userDir = userDir;
  });
  afterEach(async () => {
    await helper.unload();
    if (previousUserDir === undefined) delete settings.userDir;
    else settings.userDir = previousUserDir;
    await fs.rm(userDir, { recursive: true, force: true });
  });

  it('01 smart home: anomaly notification and action, comfort model trained and classifying, reused on redeploy', async () => {
    const patch01 = (byId: Map<string, FlowNode>) => {
      // 50 readings/s, spikes from the start, a short learning period, fewer epochs; the
      // humidity drift 50 times faster too (the detector adapts per reading).
      set(byId, 'sh.sensor', { interval: '20', simFaultAfter: '0', simFaultProbability: '0.3' });
      set(byId, 'sh.anomaly', { learning: 60 });
      const drift = '{"type":"drift","channel":"humidity","perMinute":150}';
      set(byId, 'sh.drift', { onceDelay: '3', props: [{ p: 'fault', v: drift, vt: 'json' }] });
      set(byId, 'sh.makeData', { onceDelay: '0.1' });
      set(byId, 'sh.train', { epochs: 10 });
    };
    await loadExample('01 - Smart home comfort and alerts.json', patch01, [
      ['sh.anomaly', 0],
      ['sh.notify', 0],
      ['sh.notify', 1],
      ['sh.comfortText', 0],
    ]);
    const results = until('probe:sh.anomaly:0', (got) => got.length >= 100, 30000);
    const notification = until('probe:sh.notify:0', (got) => got.length >= 1, 30000);
    const gpio = until('probe:sh.notify:1', (got) => got.length >= 1, 30000);
    const trained = until('sh.debugTrain', (got) => got.some((m) => m.topic === 'trained'), 30000);
    const comfort = until('probe:sh.comfortText:0', (got) => got.length >= 3, 40000);
    // The debug node prints when the label changes, not every reading.
    const printed = until('sh.debugComfort', (got) => got.length >= 1, 40000);

    for (const m of await results) {
      const r = m.payload as Msg;
      assert.deepEqual(Object.keys(r).sort(), ['isAnomaly', 'learning', 'score', 'threshold']);
      assert.ok((r.score as number) >= 0 && (r.score as number) <= 1);
    }
    const [note] = await notification;
    assert.equal(note.topic, 'home/livingroom/alert');
    assert.match(String(note.payload), /^Living room: unusual/);
    assert.equal((await gpio)[0].payload, 1);
    const done = (await trained).find((m) => m.topic === 'trained')!.payload as Msg;
    assert.equal(done.model, 'comfort');
    for (const m of await comfort) {
      const r = m.comfort as { label: string; confidence: number; probabilities: number[] };
      assert.ok(['cold', 'comfortable', 'warm', 'humid'].includes(r.label), r.label);
      assert.equal(r.probabilities.length, 4);
      assert.match(String(m.payload), /^Room is /);
      assert.equal((m.inference as Msg).model, 'comfort');
    }
    const labels = (await comfort).map((m) => (m.comfort as { label: string }).label);
    const shown = (await printed).map((m) => (m.comfort as { label: string }).label);
    assert.equal(shown[0], labels[0]);
    assert.ok(
      shown.every((label, i) => i === 0 || label !== shown[i - 1]),
      `printed on change: ${shown}`,
    );

    // Redeploy: the saved model is reused (no training, no new version) and classifies again.
    await helper.unload();
    await loadExample('01 - Smart home comfort and alerts.json', patch01, [['sh.comfortText', 0]]);
    const again = until('sh.debugTrain', (got) => got.length >= 1, 30000);
    const classified = until('probe:sh.comfortText:0', (got) => got.length >= 1, 30000);
    const [reused] = await again;
    assert.equal(reused.topic, 'reused');
    assert.deepEqual(reused.payload, {
      ...(reused.payload as Msg),
      model: 'comfort',
      version: done.version,
      reused: true,
    });
    await classified;
    const versions = await fs.readdir(path.join(userDir, 'edge-ai', 'models', 'comfort'));
    assert.deepEqual(versions, [String(done.version)]);
  });

  it('02 predictive maintenance: charts the signal, learns, scores and alerts on bearing wear', async () => {
    await loadExample('02 - Predictive maintenance dashboard.json', (byId) => {
      // 50 readings/s, a short learning period, and fast bearing wear once learning is over.
      set(byId, 'pm.sensor', { interval: '20', simFaultAfter: '8', simFaultAmount: '6' });
      set(byId, 'pm.norm', { learnCount: 40 });
      set(byId, 'pm.anomaly', { learning: 200, learningUnit: 'samples', epochs: 5 });
    });
    const signal = until('pm.chartSignal', (got) => got.length >= 9, 5000);
    const scores = until(
      'pm.chartScore',
      (got) => got.some((m) => m.topic === 'anomaly score' && (m.payload as number) > 0.5),
      40000,
    );
    const alert = until('pm.notify', (got) => got.length >= 1, 40000);
    const status = until('pm.text', (got) => got.some((m) => /^Normal/.test(String(m.payload))), 40000);

    const points = await signal;
    assert.deepEqual(new Set(points.map((m) => m.topic)).size, 3, 'three signal series');
    for (const m of points) assert.ok(Number.isFinite(m.payload), `signal point ${String(m.payload)}`);

    const normal = await status;
    assert.ok(
      normal.some((m) => /^Learning/.test(String(m.payload))),
      'the status shows the learning period',
    );

    const scored = await scores;
    for (const m of scored.filter((s) => s.topic === 'anomaly score')) {
      const score = m.payload as number;
      assert.ok(score >= 0 && score <= 1, `score ${score} in [0, 1]`);
    }
    assert.ok(
      scored.filter((s) => s.topic === 'anomaly score').some((m) => (m.payload as number) < 0.5),
      'healthy running scores low before the wear',
    );
    const [notification] = await alert;
    assert.match(String(notification.payload), /Bearing wear detected/);
  });

  it('03 MNIST: trains the CNN, quantizes it to uint8 with a size and accuracy report, infers', async () => {
    await loadExample('03 - MNIST train quantize infer.json', (byId) => {
      // 300 training digits, 2 epochs.
      const digits = byId.get('mn.digits')!;
      digits.func = String(digits.func).replace(
        'PER_DIGIT_TRAIN = 100, PER_DIGIT_TEST = 20',
        'PER_DIGIT_TRAIN = 30, PER_DIGIT_TEST = 10',
      );
      set(byId, 'mn.start', { onceDelay: '0.1' });
      set(byId, 'mn.train', { everySamples: 300, minSamples: 300, capacity: 300, epochs: 2 });
    });
    const progress = until('mn.debugTrain', (got) => got.some((m) => m.topic === 'trained'), 50000);
    const report = until('mn.debugReport', (got) => got.length >= 1, 55000);
    const inferred = until('mn.debugInfer', (got) => got.length >= 1, 55000);

    const trainMsgs = await progress;
    const epochs = trainMsgs.filter((m) => m.topic === 'progress').map((m) => (m.payload as Msg).epoch);
    assert.ok(epochs.length >= 1, 'progress after every epoch');
    const [{ report: r }] = (await report) as Array<{ report: Msg }>;
    const size = r.sizeBytes as { before: number; after: number; ratio: number };
    assert.ok(
      size.after < size.before / 3,
      `uint8 weights are about 4x smaller: ${size.before} -> ${size.after}`,
    );
    const accuracy = r.accuracy as { before: number; after: number };
    assert.ok(accuracy.before > 0.2, `trained model beats chance on held-out digits: ${accuracy.before}`);
    assert.ok(
      Math.abs(accuracy.after - accuracy.before) <= 0.1,
      `uint8 keeps the accuracy: ${JSON.stringify(accuracy)}`,
    );
    const [{ payload }] = await inferred;
    const result = payload as { digits: number; accuracy: number; model: string };
    assert.equal(result.digits, 100);
    assert.equal(result.model, 'digits-cnn');
    assert.ok(result.accuracy > 0.2, `edge-infer accuracy ${result.accuracy}`);
  });

  it('04 CSV replay: the shipped recording replays through normalise and anomaly and finds the wear', async () => {
    await loadExample('04 - CSV replay.json', (byId) => set(byId, 'csv.sensor', { interval: '2' }), [
      ['csv.anomaly', 0],
    ]);
    // 1200 rows: 200 learn the scale, 250 learn normal running, wear from row 600.
    const got = await until('probe:csv.anomaly:0', (msgs) => msgs.length >= 1000, 30000);
    const results = got.map((m) => m.payload as { score: number; isAnomaly: boolean; learning: boolean });
    for (const r of results) assert.ok(r.score >= 0 && r.score <= 1, `score ${r.score}`);
    assert.ok(results[0].learning && !results[300].learning, 'learns, then scores');
    assert.ok(
      got.every((m) => typeof m.recordedAt === 'number'),
      'rows keep their recorded time',
    );
    const healthy = results.slice(260, 390);
    const worn = results.slice(900, 1000);
    assert.ok(
      healthy.filter((r) => r.isAnomaly).length < healthy.length * 0.1,
      'healthy rows are mostly judged normal',
    );
    assert.ok(worn.filter((r) => r.isAnomaly).length > worn.length * 0.8, 'worn rows are judged anomalous');
  });

  it('05 train a classifier: progress after every epoch, then the trained model', async () => {
    await loadExample(
      '05 - Train a classifier on the device.json',
      (byId) => {
        set(byId, 'e5inject', { repeat: '0.01', onceDelay: '0.1' });
        set(byId, 'e5train', { everySamples: 60, minSamples: 60, epochs: 2, capacity: 200 });
      },
      [['e5train', 0]],
    );
    const got = await until('probe:e5train:0', (msgs) => msgs.some((m) => m.topic === 'trained'), 40000);
    const progress = got.filter((m) => m.topic === 'progress').map((m) => m.payload as Msg);
    assert.ok(progress.length >= 1, 'progress messages');
    for (const p of progress) {
      assert.equal(p.epochs, 2);
      assert.ok(Number.isFinite(p.loss), `loss ${String(p.loss)}`);
    }
    const trained = got.find((m) => m.topic === 'trained')!.payload as Msg;
    assert.equal(trained.model, 'vibration-cnn');
    assert.equal(trained.version, 1);
  });

  it('06 federated learning: the device sends updates, the aggregator closes rounds, the global model classifies', async () => {
    await loadExample('06 - Federated learning on a fleet.json', (byId) => {
      // A free port for the embedded broker, samples 10 times faster, short local training.
      set(byId, 'e6.fleet', { embeddedPort: 0 });
      set(byId, 'e6.inject', { repeat: '0.02', onceDelay: '0.1' });
      set(byId, 'e6.train', { minSamples: 30, epochs: 1 });
      set(byId, 'e6.inferTick', { repeat: '0.5', onceDelay: '0.5' });
    });
    const rounds = until('e6.rounds', (got) => got.length >= 2, 50000);
    const updates = until('e6.updates', (got) => got.filter((m) => m.topic === 'update').length >= 2, 50000);
    const classified = until(
      'e6.classified',
      (got) => got.some((m) => ((m.inference as Msg | undefined)?.version as number) >= 2),
      55000,
    );
    const closed = (await rounds).map((m) => m.payload as Msg);
    assert.deepEqual(
      closed.map((r) => [r.round, r.version, r.reports]),
      [
        [1, 2, 1],
        [2, 3, 1],
      ],
    );
    for (const r of closed) assert.ok((r.samples as number) >= 30, `samples ${String(r.samples)}`);
    const sent = (await updates).filter((m) => m.topic === 'update').map((m) => m.payload as Msg);
    assert.deepEqual(
      sent.map((u) => [u.round, u.encoding]),
      [
        [1, 'uint8'],
        [2, 'uint8'],
      ],
    );
    for (const m of await classified) {
      const r = m.payload as { label: string; probabilities: number[] };
      assert.ok(['normal', 'fault'].includes(r.label), r.label);
      assert.equal((m.inference as Msg).model, 'vibration-fed');
    }
    // The device's own model, from this machine's store to the fleet through edge-fleet-rollout.
    const rolledOut = until('e6.rolledOut', (got) => got.length >= 1, 20000);
    helper.getNode('e6.rolloutInject').receive({});
    const published = (await rolledOut)[0].payload as Msg;
    assert.equal(published.name, 'vibration-local');
    assert.ok((published.version as number) >= 1, JSON.stringify(published));
    assert.ok(
      (published.chunks as number) >= 1 && (published.bytes as number) > 0,
      JSON.stringify(published),
    );
  });

  it('07 fleet telemetry: three devices on the embedded broker, listed with model version, score and episodes', async () => {
    const port = await freePort();
    await loadExample(
      '07 - Fleet telemetry dashboard.json',
      (byId) => {
        // A free port for the embedded broker; 50 readings/s, a short learning period, faults soon.
        for (const id of ['ft.fleet1', 'ft.fleet2', 'ft.fleet3']) set(byId, id, { embeddedPort: port });
        set(byId, 'ft.broker', { port: String(port) });
        for (const i of [1, 2, 3]) {
          set(byId, `ft.sensor${i}`, { interval: '20' });
          set(byId, `ft.anomaly${i}`, { learning: 100, learningUnit: 'samples' });
          set(byId, `ft.tel${i}`, { interval: 0.5 });
        }
        set(byId, 'ft.sensor2', { simFaultAfter: '3', simFaultAmount: '30' });
        set(byId, 'ft.sensor3', { simFaultAfter: '2', simFaultProbability: '0.2' });
      },
      [['ft.rows', 0]],
    );
    type Row = Record<string, unknown>;
    // The function node's objects come from its own sandbox: compared as plain data.
    const rowsOf = (m: Msg) => JSON.parse(JSON.stringify(m.payload)) as Row[];
    const table = until(
      'probe:ft.rows:0',
      (got) => {
        const rows = rowsOf(got[got.length - 1]);
        return (
          rows.length === 3 &&
          rows.every((r) => r.online === 'yes' && typeof r.score === 'number') &&
          rows.some((r) => r.lastEpisode !== '-')
        );
      },
      40000,
    );
    const alerts = until('ft.notify', (got) => got.length >= 1, 40000);
    const rows = rowsOf((await table).slice(-1)[0]);
    assert.deepEqual(
      rows.map((r) => r.device),
      ['pump-1', 'pump-2', 'room-1'],
    );
    for (const r of rows) {
      assert.ok((r.score as number) >= 0 && (r.score as number) <= 1, `score ${String(r.score)}`);
      assert.ok((r.rate as number) > 0, `${String(r.device)} reports its message rate`);
    }
    const [alert] = await alerts;
    assert.match(String(alert.payload), /^(pump-2|room-1): anomaly episode started/);

    // A device whose edge-model follows fleet:<name> reports the version it runs: the table shows it.
    const device = new FleetConnection({
      url: `mqtt://127.0.0.1:${port}`,
      fleet: 'demo',
      deviceId: 'tester',
    });
    try {
      await device.waitConnected();
      await device.publish(
        device.topics.deviceModel('pump-1', 'vibration'),
        JSON.stringify({ device: 'pump-1', name: 'vibration', version: 3 }),
        { retain: true },
      );
      const withModel = await until(
        'probe:ft.rows:0',
        (got) => rowsOf(got[got.length - 1]).some((r) => r.device === 'pump-1' && r.model === 'vibration v3'),
        10000,
      );
      assert.ok(withModel.length >= 1);
    } finally {
      await device.close();
    }
  });
});
