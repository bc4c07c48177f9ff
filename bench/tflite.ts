// TFLite files converted to ONNX: batch-1 latency on ONNX Runtime against the float twin (the same
// file converted with its weights dequantized, float compute) and against TFLite's own interpreter
// (tfjs-tflite, WebAssembly, from .tflite-ref/), and the largest difference from that interpreter.
// Usage: npm run bench:tflite [-- <dir or .tflite files>] (default ../shared/models/tflite)
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { convertTfliteToOnnx, type TfliteConversion } from '../lib/models/convert/tflite';
import { availableOrtRuntimes, createOrtSession, loadOrt } from '../lib/models/runtime/ort-session';
import {
  closeReference,
  loadReference,
  randomInputs,
  tfliteReferenceUnavailable,
  type TfliteTyped,
} from '../test/helpers/tflite-reference';

const RUNS = 200;

type Typed = TfliteTyped;

/** Real-valued inputs equal to the raw ones after the model's input quantization. */
function realInputs(conv: TfliteConversion, raw: Typed[]): Float32Array[] {
  return conv.inputs.map((io, k) => {
    const q = io.quantization;
    return q ? Float32Array.from(raw[k], (v) => (v - q.zeroPoint) * q.scale) : Float32Array.from(raw[k]);
  });
}

async function ortRun(conv: TfliteConversion, inputs: Typed[], runs: number) {
  const session = await createOrtSession(conv.onnx, 'auto', { graphOptimizationLevel: 'all' });
  try {
    const ort = loadOrt(session.runtime)!;
    const feeds = Object.fromEntries(
      conv.inputs.map((io, k) => {
        const data = inputs[k];
        const type = data instanceof Float32Array ? 'float32' : (io.type as 'int8');
        return [io.onnxName, new ort.Tensor(type, data, io.shape)];
      }),
    );
    const first = await session.session.run(feeds);
    const outputs = conv.outputs.map((io) =>
      Array.from(first[io.onnxName].data as ArrayLike<number>, Number),
    );
    for (let i = 0; i < 20; i++) await session.session.run(feeds);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await session.session.run(feeds);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return { runtime: session.runtime, outputs, ms: times[Math.floor(runs / 2)] };
  } finally {
    await session.release();
  }
}

async function files(args: string[]): Promise<string[]> {
  const targets = args.length
    ? args
    : [path.resolve(__dirname, '..', '..', '..', 'shared', 'models', 'tflite')];
  const out: string[] = [];
  for (const t of targets) {
    if ((await fs.stat(t)).isDirectory()) {
      for (const n of (await fs.readdir(t)).sort()) if (n.endsWith('.tflite')) out.push(path.join(t, n));
    } else out.push(t);
  }
  return out;
}

async function main(): Promise<void> {
  const reason = tfliteReferenceUnavailable();
  if (reason) console.log(`reference columns empty: ${reason}`);
  console.log(
    `ONNX Runtime packages here: ${availableOrtRuntimes().join(', ')}; medians of ${RUNS} runs, batch 1`,
  );
  const rows: string[][] = [
    ['file', 'kind', 'ops', 'ORT ms', 'float twin ms', 'ratio', 'tflite ref ms', 'max |diff| vs ref'],
  ];
  for (const file of await files(process.argv.slice(2))) {
    const bytes = new Uint8Array(await fs.readFile(file));
    let conv: TfliteConversion;
    try {
      conv = convertTfliteToOnnx(bytes);
    } catch (err) {
      rows.push([path.basename(file), 'error', (err as Error).message, '', '', '', '', '']);
      continue;
    }
    const rawConv = convertTfliteToOnnx(bytes, { io: 'raw' });
    const raw = randomInputs(rawConv, 1);
    const real = realInputs(conv, raw);
    const converted = await ortRun(conv, real, RUNS);
    const exact = await ortRun(rawConv, raw, 1);
    const quantized = conv.quantization !== 'float';
    const twin = quantized
      ? await ortRun(convertTfliteToOnnx(bytes, { dequantize: true }), real, RUNS)
      : converted;
    let refMs = '';
    let diff = '';
    const ref = reason ? undefined : await loadReference(bytes);
    if (ref) {
      const want = await ref.run(raw);
      refMs = (await ref.time(raw, RUNS)).toFixed(4);
      await ref.close();
      const parts = conv.outputs.map((io, k) => {
        const d = want[k].reduce((m, v, i) => Math.max(m, Math.abs(v - exact.outputs[k][i])), 0);
        return io.quantization
          ? `${d} steps (${(d * io.quantization.scale).toExponential(2)})`
          : d.toExponential(2);
      });
      diff = parts.join('; ');
    }
    const ops = Object.entries(conv.opCounts)
      .map(([op, n]) => (n > 1 ? `${op}x${n}` : op))
      .join(' ');
    rows.push([
      path.basename(file),
      conv.quantization,
      ops,
      converted.ms.toFixed(4),
      quantized ? twin.ms.toFixed(4) : '(is float)',
      quantized ? (converted.ms / twin.ms).toFixed(2) : '',
      refMs,
      diff,
    ]);
  }
  await closeReference();
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c])).join(' | '));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
