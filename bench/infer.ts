/**
 * Inference benchmark (`npm run bench:infer`): the three reference models built with
 * tfjs-layers (random weights), on every runtime available, and through a real edge-infer node
 * in a Node-RED runtime (micro-batching vs one predict per message). Prints tables.
 *
 * - MNIST CNN (Keras docs): Conv2D 32 3x3 relu, MaxPool 2, Conv2D 64 3x3 relu, MaxPool 2,
 *   Flatten, Dense 64 relu, Dense 10 softmax; input 28x28x1.
 * - LSTM(64) over 50 timesteps x 6 features + Dense(1).
 * - Dense autoencoder 60-32-8-32-60.
 *
 * ONNX Runtime rows for these layers models need the layers -> ONNX exporter; when it cannot
 * express a model the row says "n/a" with its reason.
 */
import { promises as fs } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { readModelFiles, type TfjsModelFiles } from '../lib/models/store/model-files';
import { exportLayersModelToOnnx } from '../lib/models/convert/onnx-export';
import { quantizeOnnxInt8Calibrated } from '../lib/models/compress/onnx-quantize';
import { quantizeArtifacts } from '../lib/models/compress/quantize';
import { ortAvailable, OrtRunner, type OrtRuntimeName } from '../lib/models/runtime/ort-runner';
import type { ModelRunner } from '../lib/models/runtime/runner';
import { maxAbsDifference, probeInput } from '../lib/models/runtime/select';
import { fileSaveHandler, tf, useBackend, type TfBackendName } from '../lib/models/runtime/tfjs';
import { TfjsRunner } from '../lib/models/runtime/tfjs-runner';

const BUDGET_MS = Number(process.env.BENCH_BUDGET_MS ?? 1500);

interface Reference {
  name: string;
  key: string;
  build(): tfl.LayersModel;
}

const MODELS: Reference[] = [
  {
    name: 'MNIST CNN',
    key: 'cnn',
    build: () =>
      tfl.sequential({
        layers: [
          tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, activation: 'relu' }),
          tfl.layers.maxPooling2d({ poolSize: 2 }),
          tfl.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }),
          tfl.layers.maxPooling2d({ poolSize: 2 }),
          tfl.layers.flatten(),
          tfl.layers.dense({ units: 64, activation: 'relu' }),
          tfl.layers.dense({ units: 10, activation: 'softmax' }),
        ],
      }),
  },
  {
    name: 'LSTM(64) 50x6',
    key: 'lstm',
    build: () =>
      tfl.sequential({
        layers: [tfl.layers.lstm({ inputShape: [50, 6], units: 64 }), tfl.layers.dense({ units: 1 })],
      }),
  },
  {
    name: 'Dense AE 60-32-8-32-60',
    key: 'ae',
    build: () =>
      tfl.sequential({
        layers: [
          tfl.layers.dense({ inputShape: [60], units: 32, activation: 'relu' }),
          tfl.layers.dense({ units: 8, activation: 'relu' }),
          tfl.layers.dense({ units: 32, activation: 'relu' }),
          tfl.layers.dense({ units: 60 }),
        ],
      }),
  },
];

interface Timing {
  median: number;
  p99: number;
  runs: number;
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Times `fn` repeatedly within the budget (at least `min` runs after `warmup`). */
async function time(fn: () => Promise<unknown>, warmup: number, min: number, max: number): Promise<Timing> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  const start = performance.now();
  while (times.length < max && (times.length < min || performance.now() - start < BUDGET_MS)) {
    const t0 = performance.now();
    await fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return { median: quantile(times, 0.5), p99: quantile(times, 0.99), runs: times.length };
}

interface Row {
  model: string;
  runtime: string;
  b1?: Timing;
  b64?: Timing;
  note?: string;
}

async function measure(runner: ModelRunner): Promise<{ b1: Timing; b64: Timing }> {
  const per = runner.inputShape.reduce((a, b) => a * b, 1);
  const one = probeInput(per, 1);
  const batch = probeInput(per * 64, 2);
  const b1 = await time(() => runner.predict(one, 1), 5, 20, 5000);
  const b64 = await time(() => runner.predict(batch, 64), 2, 3, 500);
  return { b1, b64 };
}

function short(text: string, max = 70): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

async function benchRuntimes(
  files: Map<string, TfjsModelFiles>,
): Promise<{ rows: Row[]; exportable: Set<string> }> {
  const rows: Row[] = [];
  const exportable = new Set<string>();
  for (const backend of ['cpu', 'wasm'] as TfBackendName[]) {
    for (const model of MODELS) {
      const runner = await TfjsRunner.fromArtifacts('tfjs-layers', files.get(model.key)!.artifacts, {
        backends: [backend],
      });
      rows.push({ model: model.name, runtime: runner.runtime, ...(await measure(runner)) });
      await runner.dispose();
    }
  }
  // uint8 weights (converter format): TF.js dequantizes them when loading, so it computes in float.
  for (const model of MODELS) {
    const quantized = quantizeArtifacts(files.get(model.key)!.artifacts, 'uint8');
    const runner = await TfjsRunner.fromArtifacts('tfjs-layers', quantized, { backends: ['wasm'] });
    rows.push({ model: model.name, runtime: `${runner.runtime} uint8`, ...(await measure(runner)) });
    await runner.dispose();
  }
  for (const runtime of ['onnxruntime-web', 'onnxruntime-node'] as OrtRuntimeName[]) {
    for (const model of MODELS) {
      if (!ortAvailable(runtime)) {
        rows.push({ model: model.name, runtime, note: 'n/a (not installed or does not load here)' });
        continue;
      }
      const reference = await TfjsRunner.fromArtifacts('tfjs-layers', files.get(model.key)!.artifacts, {
        backends: ['wasm', 'cpu'],
      });
      let onnx: Uint8Array;
      try {
        onnx = exportLayersModelToOnnx(reference.layersModel as tfl.LayersModel);
      } catch (err) {
        rows.push({ model: model.name, runtime, note: `n/a (${short((err as Error).message)})` });
        await reference.dispose();
        continue;
      }
      const runner = await OrtRunner.create(onnx, runtime);
      const probe = probeInput(runner.inputShape.reduce((a, b) => a * b, 1) * 4, 3);
      const diff = maxAbsDifference(await reference.predict(probe, 4), await runner.predict(probe, 4));
      await reference.dispose();
      exportable.add(model.key);
      rows.push({
        model: model.name,
        runtime,
        ...(await measure(runner)),
        note: `max abs diff to TF.js ${diff.toExponential(1)}`,
      });

      // int8: dynamic MatMul/LSTM, static (calibrated) Conv, as edge-model-loader writes it.
      const per = runner.inputShape.reduce((a, b) => a * b, 1);
      const calibration = [0, 1, 2, 3].map((seed) => ({
        data: probeInput(per * 8, 10 + seed),
        dims: [8, ...runner.inputShape],
      }));
      const { model: int8 } = await quantizeOnnxInt8Calibrated(onnx, calibration, { runtime });
      const int8Runner = await OrtRunner.create(int8, runtime);
      const int8Diff = maxAbsDifference(await runner.predict(probe, 4), await int8Runner.predict(probe, 4));
      rows.push({
        model: model.name,
        runtime: `${runtime} int8`,
        ...(await measure(int8Runner)),
        note: `${onnx.length} -> ${int8.length} B; max abs diff to float ${int8Diff.toExponential(1)}`,
      });
      await int8Runner.dispose();
      await runner.dispose();
    }
  }
  return { rows, exportable };
}

interface FlowResult {
  runtime: string;
  batchedRate: number;
  perMessageRate: number;
  latency: Timing;
}

interface RuntimeNode {
  on(event: string, f: (msg: Record<string, unknown>) => void): void;
  removeListener(event: string, f: (msg: Record<string, unknown>) => void): void;
  send(msg: unknown): void;
  handle?: { ready(ms: number): Promise<{ runtime: string }> };
}

interface NodeRed {
  init(server: http.Server, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  nodes: { getNode(id: string): unknown };
  events: { once(event: string, f: () => void): void };
  runtime: { flows: { setFlows(opts: unknown): Promise<unknown> } };
}

/** Tiny source and sink node types so the benchmark can feed and watch a deployed flow. */
const BENCH_NODES = `module.exports = function (RED) {
  function BenchSource(config) { RED.nodes.createNode(this, config); }
  RED.nodes.registerType('bench-source', BenchSource);
  function BenchSink(config) { RED.nodes.createNode(this, config); this.on('input', (msg, send, done) => done()); }
  RED.nodes.registerType('bench-sink', BenchSink);
};
`;
const BENCH_HTML = `<script type="text/javascript">
  RED.nodes.registerType('bench-source', { category: 'common', defaults: {}, inputs: 0, outputs: 1 });
  RED.nodes.registerType('bench-sink', { category: 'common', defaults: {}, inputs: 1, outputs: 0 });
</script>
`;

/**
 * Starts an embedded Node-RED runtime with edge-model / edge-infer installed as a package in
 * its user directory (links to the built nodes), as a user would have them.
 */
async function startNodeRed(userDir: string): Promise<NodeRed> {
  const pkg = path.join(userDir, 'node_modules', 'edge-ai-bench');
  await fs.mkdir(pkg, { recursive: true });
  for (const type of ['edge-model', 'edge-infer']) {
    await fs.symlink(path.join(__dirname, '..', 'nodes', type), path.join(pkg, type));
  }
  await fs.writeFile(path.join(pkg, 'bench-io.js'), BENCH_NODES);
  await fs.writeFile(path.join(pkg, 'bench-io.html'), BENCH_HTML);
  await fs.writeFile(
    path.join(pkg, 'package.json'),
    JSON.stringify({
      name: 'edge-ai-bench',
      version: '1.0.0',
      keywords: ['node-red'],
      'node-red': {
        nodes: {
          'edge-model': 'edge-model/edge-model.js',
          'edge-infer': 'edge-infer/edge-infer.js',
          'bench-io': 'bench-io.js',
        },
      },
    }),
  );
  const RED = require('node-red') as NodeRed;
  RED.init(http.createServer(), {
    userDir,
    flowFile: 'flows.json',
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    telemetry: { enabled: false },
    diagnostics: { enabled: false },
    logging: { console: { level: process.env.BENCH_LOG ?? 'warn', metrics: false, audit: false } },
  });
  // The runtime starts the (empty) flow file on its own; deploy only after that.
  const started = new Promise<void>((resolve) => RED.events.once('flows:started', () => resolve()));
  await RED.start();
  await started;
  return RED;
}

async function benchNodeRed(RED: NodeRed, model: Reference, runtime = 'auto'): Promise<FlowResult> {
  const flowWith = (maxBatch: number) => [
    { id: 'tab', type: 'tab', label: 'bench' },
    { id: 'src', z: 'tab', type: 'bench-source', wires: [['infer']] },
    {
      id: 'model',
      type: 'edge-model',
      name: model.key,
      source: `models/${model.key}`,
      runtime,
      warmup: 5,
    },
    {
      id: 'infer',
      z: 'tab',
      type: 'edge-infer',
      model: 'model',
      mode: 'raw',
      maxBatch,
      maxQueue: 100000,
      wires: [['out']],
    },
    { id: 'out', z: 'tab', type: 'bench-sink', wires: [] },
  ];
  const deploy = async (maxBatch: number): Promise<{ runtime: string }> => {
    const started = new Promise<void>((resolve) => RED.events.once('flows:started', () => resolve()));
    await RED.runtime.flows.setFlows({ flows: { flows: flowWith(maxBatch) }, deploymentType: 'full' });
    await started;
    return (get('model').handle as NonNullable<RuntimeNode['handle']>).ready(60000);
  };
  const get = (id: string) => RED.nodes.getNode(id) as RuntimeNode;
  // One sample of the model's input, as a flat array (edge-infer reshapes it).
  const size = { cnn: 784, lstm: 300, ae: 60 }[model.key] ?? 1;
  const sample = Array.from(probeInput(size, 4));

  /** Sends `count` messages as fast as the source can; returns messages per second. */
  const rate = async (count: number): Promise<number> => {
    const out = get('out');
    let received = 0;
    const done = new Promise<void>((resolve) => {
      const listener = (): void => {
        if (++received === count) {
          out.removeListener('input', listener);
          resolve();
        }
      };
      out.on('input', listener);
    });
    const start = performance.now();
    for (let k = 0; k < count; k++) {
      get('src').send({ payload: sample });
      if (k % 256 === 255) await new Promise((r) => setImmediate(r));
    }
    await done;
    return count / ((performance.now() - start) / 1000);
  };

  const info = await deploy(64);
  await rate(200); // warm-up
  const batchedRate = await rate(3000);
  // Batch-1 latency: one message at a time, wall time from send to the sink.
  const latency = await time(
    () =>
      new Promise<void>((resolve) => {
        const out = get('out');
        const listener = (): void => {
          out.removeListener('input', listener);
          resolve();
        };
        out.on('input', listener);
        get('src').send({ payload: sample });
      }),
    20,
    50,
    3000,
  );
  await deploy(1);
  await rate(50);
  const perMessageRate = await rate(info.runtime === 'tfjs-cpu' ? 100 : 400);
  return { runtime: info.runtime, batchedRate, perMessageRate, latency };
}

function fmt(v: number | undefined, digits = 2): string {
  if (v === undefined) return '';
  if (v >= 100) return v.toFixed(0);
  if (v >= 10) return v.toFixed(1);
  return v.toFixed(digits);
}

function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (c ?? '').padEnd(widths[i])).join(' | ')} |`;
  return [line(header), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map(line)].join('\n');
}

async function main(): Promise<void> {
  const started = performance.now();
  const userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-bench-infer-'));
  try {
    await useBackend(['cpu']);
    const files = new Map<string, TfjsModelFiles>();
    for (const model of MODELS) {
      const dir = path.join(userDir, 'models', model.key);
      await fs.mkdir(dir, { recursive: true });
      const built = model.build();
      await built.save(fileSaveHandler(dir));
      built.dispose();
      files.set(model.key, (await readModelFiles(dir, { root: userDir })) as TfjsModelFiles);
    }
    console.log(
      `Inference benchmark: ${os.cpus().length} cores, ${os.cpus()[0]?.model ?? ''}, Node ${process.version}`,
    );
    console.log(`Each figure: median (and p99) over as many runs as fit in ${BUDGET_MS} ms.\n`);

    const { rows } = await benchRuntimes(files);
    console.log(
      table(
        [
          'model',
          'runtime',
          'batch 1 median ms',
          'batch 1 p99 ms',
          'batch 64 ms',
          'batch 64 samples/s',
          'note',
        ],
        rows.map((r) => [
          r.model,
          r.runtime,
          fmt(r.b1?.median, 3),
          fmt(r.b1?.p99, 3),
          fmt(r.b64?.median),
          r.b64 ? fmt(64000 / r.b64.median) : '',
          r.note ?? '',
        ]),
      ),
    );
    console.log(
      '\nuint8 rows: converter-format uint8 weights; TF.js dequantizes them at load time and computes in float.',
    );
    console.log('int8 rows: ONNX Runtime computes in int8 (DynamicQuantizeMatMul/LSTM, QLinearConv).\n');

    const flows: string[][] = [];
    const lstmCpu = rows.find((r) => r.model === 'LSTM(64) 50x6' && r.runtime === 'tfjs-cpu');
    const lstmOrtNode = rows.find((r) => r.model === 'LSTM(64) 50x6' && r.runtime === 'onnxruntime-node');
    let lstmFlow: FlowResult | undefined;
    let lstmTfjsFlow: FlowResult | undefined;
    const RED = await startNodeRed(userDir);
    // Every model on "auto", and the LSTM also on TF.js, where batching matters most.
    const runs: [Reference, string][] = [
      ...MODELS.map((m): [Reference, string] => [m, 'auto']),
      [MODELS[1], 'tfjs'],
    ];
    for (const [model, runtime] of runs) {
      const result = await benchNodeRed(RED, model, runtime);
      if (model.key === 'lstm' && runtime === 'auto') lstmFlow = result;
      if (model.key === 'lstm' && runtime === 'tfjs') lstmTfjsFlow = result;
      flows.push([
        model.name,
        result.runtime,
        fmt(result.batchedRate),
        fmt(result.perMessageRate),
        `${fmt(result.batchedRate / result.perMessageRate, 1)}x`,
        fmt(result.latency.median, 3),
        fmt(result.latency.p99, 3),
      ]);
    }
    await RED.stop();
    console.log(
      'Through edge-infer in an embedded Node-RED runtime (messages sent by an upstream node; edge-model runtime "auto", last row "tfjs"):',
    );
    console.log(
      table(
        [
          'model',
          'runtime',
          'msg/s micro-batched (64)',
          'msg/s one predict per msg',
          'speed-up',
          'latency median ms',
          'latency p99 ms',
        ],
        flows,
      ),
    );
    if (lstmFlow && lstmCpu?.b1) {
      const cpuRate = 1000 / lstmCpu.b1.median;
      const ratio = lstmFlow.batchedRate / cpuRate;
      console.log(
        `\nTarget 1 (LSTM): edge-infer ${fmt(lstmFlow.batchedRate)} msg/s vs per-message TF.js cpu predict ` +
          `${fmt(cpuRate)} msg/s = ${fmt(ratio, 1)}x (target >= 20x): ${ratio >= 20 ? 'met' : 'not met'}`,
      );
      // The ratio above mixes two changes (runtime and batching); these separate them.
      const sameRuntime = (flow: FlowResult) =>
        `${fmt(flow.batchedRate / flow.perMessageRate, 1)}x on ${flow.runtime} ` +
        `(${fmt(flow.batchedRate)} vs ${fmt(flow.perMessageRate)} msg/s)`;
      console.log(
        `  of which batching alone, same runtime, through edge-infer: ${sameRuntime(lstmFlow)}` +
          (lstmTfjsFlow ? `; ${sameRuntime(lstmTfjsFlow)}` : ''),
      );
      if (lstmFlow.runtime !== 'tfjs-cpu')
        console.log(
          `  and the runtime alone, one predict per message: ${lstmFlow.runtime} ${fmt(lstmFlow.perMessageRate)} msg/s ` +
            `vs ${lstmTfjsFlow?.runtime ?? 'TF.js'} ${fmt(lstmTfjsFlow?.perMessageRate)} msg/s through edge-infer`,
        );
    }
    if (lstmFlow) {
      if (lstmFlow.runtime !== 'onnxruntime-node') {
        console.log(
          `Target 2 (LSTM): n/a - edge-infer ran on ${lstmFlow.runtime}, not onnxruntime-node, so it is not compared with bare onnxruntime-node`,
        );
      } else if (lstmOrtNode?.b1) {
        const ratio = lstmFlow.latency.median / lstmOrtNode.b1.median;
        console.log(
          `Target 2 (LSTM): edge-infer (${lstmFlow.runtime}) batch-1 latency ${fmt(lstmFlow.latency.median, 3)} ms vs bare onnxruntime-node ` +
            `${fmt(lstmOrtNode.b1.median, 3)} ms = ${fmt(ratio, 1)}x (target <= 2x): ${ratio <= 2 ? 'met' : 'not met'}`,
        );
      } else {
        console.log(
          `Target 2 (LSTM): n/a - no bare onnxruntime-node figure (${lstmOrtNode?.note ?? 'not measured'})`,
        );
      }
    }
    console.log(`\n(${((performance.now() - started) / 1000).toFixed(0)} s)`);
  } finally {
    tf.disposeVariables();
    await fs.rm(userDir, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(err);
    process.exit(1);
  },
);
