// TFLite files converted to ONNX: batch-1 latency on ONNX Runtime against the float twin (the same
// file converted with its weights dequantized, float compute) and against TFLite's own interpreter
// (tfjs-tflite, WebAssembly, from .tflite-ref/), and the largest difference from that interpreter.
// The int8 rows also time the earlier conversion (int8 activations, quantize/dequantize nodes at
// the inputs and outputs, ONNX Runtime's fused integer kernels), side by side in the same rounds.
// Usage: npm run bench:tflite [-- <dir or .tflite files>] (default ../shared/models/tflite)
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { convertTfliteToOnnx, type TfliteConversion } from '../lib/models/convert/tflite';
import { availableOrtRuntimes, createOrtSession, loadOrt } from '../lib/models/runtime/ort-session';
import { OrtRunner } from '../lib/models/runtime/ort-runner';
import { quantizeReal } from '../lib/models/runtime/io-quantization';
import { qdqSessionOptions, type QdqKernels } from '../lib/models/runtime/qdq-kernels';
import type * as OrtTypes from 'onnxruntime-web';
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

interface Timed {
  runner: OrtRunner;
  feeds: Record<string, Float32Array>;
  times: number[];
}

/**
 * Batch-1 medians of runners on their feeds through OrtRunner (the path edge-infer takes), one
 * run of each per round so that load on the machine falls on all of them alike.
 */
async function timeSideBySide(list: Timed[], runs: number): Promise<number[]> {
  for (let i = 0; i < 20; i++) for (const t of list) await t.runner.run(t.feeds, 1);
  for (let i = 0; i < runs; i++) {
    for (const t of list) {
      const t0 = performance.now();
      await t.runner.run(t.feeds, 1);
      t.times.push(performance.now() - t0);
    }
  }
  return list.map((t) => [...t.times].sort((a, b) => a - b)[Math.floor(runs / 2)]);
}

/** The same as timeSideBySide on bare sessions (session.run only, no runner around it). */
async function timeSessions(
  list: { conv: TfliteConversion; kernels?: QdqKernels }[],
  real: Float32Array[],
  runs: number,
): Promise<number[]> {
  const sessions = [];
  for (const { conv, kernels } of list) {
    const session = await createOrtSession(
      conv.onnx,
      'auto',
      qdqSessionOptions(kernels ?? 'integer', { graphOptimizationLevel: 'all', executionMode: 'sequential' }),
    );
    const ort = loadOrt(session.runtime)!;
    const feeds: Record<string, OrtTypes.Tensor> = {};
    conv.inputs.forEach((io, k) => {
      const q = conv.ioQuantization?.[io.onnxName];
      feeds[io.onnxName] = q
        ? new ort.Tensor(q.type, quantizeReal(real[k], q), io.shape)
        : new ort.Tensor('float32', real[k], io.shape);
    });
    sessions.push({ session, feeds, times: [] as number[] });
  }
  try {
    for (let i = 0; i < 20; i++) for (const s of sessions) await s.session.session.run(s.feeds);
    for (let i = 0; i < runs; i++) {
      for (const s of sessions) {
        const t0 = performance.now();
        await s.session.session.run(s.feeds);
        s.times.push(performance.now() - t0);
      }
    }
    return sessions.map((s) => [...s.times].sort((a, b) => a - b)[Math.floor(runs / 2)]);
  } finally {
    for (const s of sessions) await s.session.release();
  }
}

async function timed(
  onnxBytes: Uint8Array,
  conv: TfliteConversion,
  real: Float32Array[],
  kernels?: 'integer',
) {
  const runner = await OrtRunner.create(
    onnxBytes,
    availableOrtRuntimes()[0],
    kernels ? { qdqKernels: kernels } : {},
  );
  const feeds = Object.fromEntries(conv.inputs.map((io, k) => [runner.inputs[k].name, real[k]]));
  return { runner, feeds, times: [] as number[] };
}

async function main(): Promise<void> {
  const reason = tfliteReferenceUnavailable();
  if (reason) console.log(`reference columns empty: ${reason}`);
  console.log(
    `ONNX Runtime packages here: ${availableOrtRuntimes().join(', ')}; medians of ${RUNS} runs, batch 1, through OrtRunner`,
  );
  const rows: string[][] = [
    [
      'file',
      'kind',
      'ops',
      'earlier ms',
      'ORT ms',
      'float twin ms',
      'earlier ratio',
      'ratio',
      'session.run ms (earlier / now / twin)',
      'ratio earlier -> now',
      'kernels',
      'tflite ref ms',
      'max |diff| vs ref',
    ],
  ];
  for (const file of await files(process.argv.slice(2))) {
    const bytes = new Uint8Array(await fs.readFile(file));
    let conv: TfliteConversion;
    try {
      conv = convertTfliteToOnnx(bytes, { io: 'quantized' });
    } catch (err) {
      rows.push([path.basename(file), 'error', (err as Error).message, ...new Array<string>(10).fill('')]);
      continue;
    }
    const rawConv = convertTfliteToOnnx(bytes, { io: 'raw' });
    const raw = randomInputs(rawConv, 1);
    const real = realInputs(conv, raw);
    const exact = await ortRun(rawConv, raw, 1);
    const quantized = conv.quantization !== 'float';
    const list = [await timed(conv.onnx, conv, real)];
    const kernels = list[0].runner.qdqKernels;
    let bare = '';
    let bareRatio = '';
    if (quantized) {
      const earlier = convertTfliteToOnnx(bytes, { activations: 'int8' });
      list.push(await timed(earlier.onnx, earlier, real, 'integer'));
      const twin = convertTfliteToOnnx(bytes, { dequantize: true });
      list.push(await timed(twin.onnx, twin, real));
      const [now, before, float] = await timeSessions(
        [{ conv, kernels }, { conv: earlier, kernels: 'integer' }, { conv: twin }],
        real,
        RUNS,
      );
      bare = [before, now, float].map((v) => v.toFixed(4)).join(' / ');
      bareRatio = `${(before / float).toFixed(2)} -> ${(now / float).toFixed(2)}`;
    }
    const [ms, earlierMs, twinMs] = await timeSideBySide(list, RUNS);
    for (const t of list) await t.runner.dispose();
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
      quantized ? earlierMs.toFixed(4) : '',
      ms.toFixed(4),
      quantized ? twinMs.toFixed(4) : '(is float)',
      quantized ? (earlierMs / twinMs).toFixed(2) : '',
      quantized ? (ms / twinMs).toFixed(2) : '',
      bare,
      bareRatio,
      kernels ?? '',
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
