// The arm64 smoke flow, run by scripts/test-arm64.sh under arm64 Node (emulated with qemu-user):
// a real Node-RED runtime (embedded, no editor) loads the installed package and deploys
// example 01, changed to run fast: a simulated BME280 -> edge-normalise -> edge-anomaly, and
// the comfort model trained on the device (one epoch) then run by edge-infer twice, once on
// onnxruntime-node and once on onnxruntime-web (wasm). Prints what ran and exits 0 when every
// part produced its messages. Timings under emulation say only that it runs, not how fast.
// --quick (the CI form): no training and no wasm; edge-infer runs a small ONNX classifier made
// here on onnxruntime-node, so the check stays around a minute under emulation.
//   node arm64-smoke.cjs <package dir> <node-red dir> <work dir> [--quick]
/* global require */
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const [pkgDir, redDir, workDir, mode] = process.argv.slice(2);
const quick = mode === '--quick';
const userDir = path.join(workDir, 'node-red');
fs.rmSync(userDir, { recursive: true, force: true });
fs.mkdirSync(userDir, { recursive: true });
const started = Date.now();
const seconds = () => ((Date.now() - started) / 1000).toFixed(1);
const log = (text) => console.log(`arm64 smoke [${seconds()} s]: ${text}`);

const flow = JSON.parse(
  fs.readFileSync(path.join(pkgDir, 'examples', '01 - Smart home comfort and alerts.json'), 'utf8'),
);
const byId = new Map(flow.map((n) => [n.id, n]));
const set = (id, values) => Object.assign(byId.get(id), values);
// Fast: 50 readings a second, a short learning period, one training epoch.
set('sh.sensor', { interval: '20' });
set('sh.norm', { learnCount: 20 });
set('sh.anomaly', { learning: 40 });
if (quick) {
  // No training: a comfort classifier (temperature, humidity -> 4 classes) as an ONNX file.
  const { onnx } = require(path.join(pkgDir, 'dist', 'lib', 'models', 'onnx-proto'));
  const F = onnx.TensorProto.DataType.FLOAT;
  const value = (name, dims) => ({
    name,
    type: {
      tensorType: {
        elemType: F,
        shape: { dim: dims.map((d) => (typeof d === 'string' ? { dimParam: d } : { dimValue: d })) },
      },
    },
  });
  const model = onnx.ModelProto.create({
    irVersion: 7,
    producerName: 'arm64-smoke',
    opsetImport: [{ domain: '', version: 13 }],
    graph: {
      name: 'comfort',
      input: [value('x', ['n', 2])],
      output: [value('y', ['n', 4])],
      initializer: [
        { name: 'W', dims: [2, 4], dataType: F, floatData: [-0.3, 0, 0.3, 0, 0, 0, 0, 0.05] },
        { name: 'B', dims: [4], dataType: F, floatData: [6, 0, -7, -3] },
      ],
      node: [
        { opType: 'Gemm', input: ['x', 'W', 'B'], output: ['z'] },
        {
          opType: 'Softmax',
          input: ['z'],
          output: ['y'],
          attribute: [{ name: 'axis', type: onnx.AttributeProto.AttributeType.INT, i: 1 }],
        },
      ],
    },
  });
  fs.writeFileSync(path.join(userDir, 'comfort.onnx'), onnx.ModelProto.encode(model).finish());
  set('sh.makeData', { once: false });
  set('sh.gate', { func: 'return msg;' });
  set('sh.model', {
    source: 'comfort.onnx',
    follow: false,
    labels: 'cold, comfortable, warm, humid',
    runtime: 'onnxruntime-node',
  });
} else {
  set('sh.makeData', { onceDelay: '0.1' });
  set('sh.train', { epochs: 1, reuse: false });
  // The comfort model on each ONNX Runtime: the layers model is exported to ONNX and run there.
  set('sh.model', { runtime: 'onnxruntime-node' });
  flow.push({
    ...byId.get('sh.model'),
    id: 'smoke.modelWeb',
    name: 'comfort-web',
    runtime: 'onnxruntime-web',
  });
  flow.push({
    ...byId.get('sh.infer'),
    id: 'smoke.inferWeb',
    model: 'smoke.modelWeb',
    wires: [['smoke.web']],
  });
  byId.get('sh.gate').wires[0].push('smoke.inferWeb');
}
const probe = (id, tag, from, output = 0) => {
  flow.push({
    id,
    type: 'function',
    z: 'sh.tab',
    name: tag,
    func: `global.get('smoke')(${JSON.stringify(tag)}, msg); return null;`,
    outputs: 1,
    wires: [[]],
  });
  if (from) {
    const wires = byId.get(from).wires;
    while (wires.length <= output) wires.push([]);
    wires[output].push(id);
  }
};
probe('smoke.anomaly', 'anomaly', 'sh.anomaly');
probe('smoke.train', 'train', 'sh.train');
probe('smoke.node', 'infer onnxruntime-node', 'sh.infer');
probe('smoke.web', 'infer onnxruntime-web');

const got = { anomaly: [], train: [], 'infer onnxruntime-node': [], 'infer onnxruntime-web': [] };
const errors = [];
let finish;
const finished = new Promise((resolve) => (finish = resolve));
const runtimes = quick ? ['onnxruntime-node'] : ['onnxruntime-node', 'onnxruntime-web'];
const enough = () =>
  got.anomaly.length >= 60 &&
  (quick || got.train.some((m) => m.topic === 'trained')) &&
  runtimes.every((r) => got[`infer ${r}`].length >= 3);
function smoke(tag, msg) {
  got[tag].push(msg);
  if (got[tag].length === 1) log(`first ${tag} message`);
  if (enough()) finish();
}

(async () => {
  log(`${process.arch} Node ${process.version}; package ${pkgDir}`);
  const RED = require(redDir);
  RED.init(http.createServer(), {
    userDir,
    nodesDir: [pkgDir],
    httpAdminRoot: false,
    httpNodeRoot: false,
    flowFile: 'flows.json',
    credentialSecret: false,
    functionGlobalContext: { smoke },
    logging: {
      console: { level: 'off', metrics: false, audit: false },
      smoke: {
        level: 'error',
        metrics: false,
        audit: false,
        handler: () => (entry) => errors.push(entry.msg),
      },
    },
    externalModules: { autoInstall: false, palette: { allowInstall: false } },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
  });
  await RED.start();
  const types = RED.runtime.nodes ? await RED.runtime.nodes.getNodeList({}) : [];
  const ours = types.filter((t) => t.module === 'node-red-contrib-edge-ai');
  log(`Node-RED ${RED.version()} started; ${ours.length} edge-ai node sets loaded`);
  const failed = ours.filter((t) => t.err);
  if (ours.length === 0 || failed.length > 0) {
    throw new Error(
      `edge-ai nodes did not load: ${failed.map((t) => `${t.name}: ${t.err}`).join('; ') || 'none found'}`,
    );
  }
  await RED.runtime.flows.setFlows({ flows: { flows: flow }, deploymentType: 'full' });
  log('example 01 deployed');
  const timeoutMs = Number(process.env.EDGE_ARM64_SMOKE_TIMEOUT_S || 600) * 1000;
  const timer = setTimeout(finish, timeoutMs);
  await finished;
  clearTimeout(timer);

  const problems = [];
  const scores = got.anomaly.map((m) => m.payload && m.payload.score).filter((s) => typeof s === 'number');
  if (got.anomaly.length < 60) problems.push(`anomaly: ${got.anomaly.length} of 60 messages`);
  if (!scores.every((s) => s >= 0 && s <= 1)) problems.push('anomaly: a score outside [0, 1]');
  const trained = got.train.find((m) => m.topic === 'trained');
  if (quick) log('no training in the quick check');
  else if (!trained) problems.push('train: no trained model');
  else
    log(
      `trained ${trained.payload.model} v${trained.payload.version} (1 epoch) on ${trained.payload.backend}`,
    );
  for (const runtime of runtimes) {
    const msgs = got[`infer ${runtime}`];
    const ran = [...new Set(msgs.map((m) => m.inference && m.inference.runtime))];
    if (msgs.length < 3) problems.push(`infer ${runtime}: ${msgs.length} of 3 messages`);
    else if (ran.length !== 1 || ran[0] !== runtime)
      problems.push(`infer ${runtime}: ran on ${ran.join(', ')}`);
    else log(`edge-infer on ${runtime}: ${msgs[0].payload.label} (${msgs.length} results)`);
  }
  const distinct = [...new Set(errors.map((e) => (typeof e === 'string' ? e : JSON.stringify(e))))];
  for (const e of distinct.slice(0, 5))
    log(`Node-RED logged (${errors.filter((x) => x === e || JSON.stringify(x) === e).length}x): ${e}`);
  await RED.stop();
  if (problems.length > 0) {
    for (const p of problems) log(`FAIL ${p}`);
    process.exit(1);
  }
  log(
    quick
      ? 'passed: sensor -> normalise -> anomaly, edge-infer on onnxruntime-node'
      : 'passed: sensor -> normalise -> anomaly, one training epoch, edge-infer on onnxruntime-node and on wasm',
  );
  process.exit(0);
})().catch((err) => {
  log(`FAIL ${err && err.stack ? err.stack : err}`);
  process.exit(1);
});
