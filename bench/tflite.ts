// TFLite files converted to ONNX: batch-1 latency on ONNX Runtime against the float twin (the same
// file converted with its weights dequantized, float compute) and against TFLite's own interpreter
// (tfjs-tflite, WebAssembly, from .tflite-ref/), and the largest difference from that interpreter.
// The int8 rows also time the earlier conversion (int8 activations, quantize/dequantize nodes at
// the inputs and outputs, ONNX Runtime's fused integer kernels), side by side in the same rounds.
// Every latency is the median of BLOCKS x RUNS batch-1 calls, one call of each variant per round
// (the order rotating); an int8/float ratio is the median of the blocks' ratios, also given as
// min-max over the blocks, so a burst of load on the machine shows as spread rather than as a
// different figure.
// A second table times hand-built chains of dense layers (float Gemm+Relu against the same layers
// as QDQ int8 that ONNX Runtime fuses into QGemm) directly on ONNX Runtime: the cost per layer
// of each, which is what decides the ratio of a model made of a few tiny layers.
// Usage: npm run bench:tflite [-- <dir or .tflite files>] (default ../shared/models/tflite)
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { convertTfliteToOnnx, type TfliteConversion } from '../lib/models/convert/tflite';
import {
  availableOrtRuntimes,
  createOrtSession,
  loadOrt,
  type OrtSession,
} from '../lib/models/runtime/ort-session';
import { OrtRunner } from '../lib/models/runtime/ort-runner';
import { quantizeReal } from '../lib/models/runtime/io-quantization';
import { mixedQdqModel, qdqSessionOptions, type QdqKernels } from '../lib/models/runtime/qdq-kernels';
import type * as OrtTypes from 'onnxruntime-web';
import { onnx } from '../lib/models/onnx-proto';
import { attr, GraphBuilder, OnnxType, tensorValueInfo } from '../lib/models/convert/onnx-graph';
import {
  closeReference,
  loadReference,
  randomInputs,
  tfliteReferenceUnavailable,
  type TfliteTyped,
} from '../test/helpers/tflite-reference';

const RUNS = 100;
const BLOCKS = 10;

type Typed = TfliteTyped;

/** Real-valued inputs equal to the raw ones after the model's input quantization. */
function realInputs(conv: TfliteConversion, raw: Typed[]): Float32Array[] {
  return conv.inputs.map((io, k) => {
    const q = io.quantization;
    return q ? Float32Array.from(raw[k], (v) => (v - q.zeroPoint) * q.scale) : Float32Array.from(raw[k]);
  });
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
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Overall medians (ms) of each function and its medians per block. */
interface SideBySide {
  ms: number[];
  blocks: number[][];
}

/**
 * Times functions side by side: BLOCKS blocks of RUNS rounds, one call of each per round with the
 * order rotating from round to round, so that load on the machine falls on all of them alike.
 */
async function sideBySide(fns: (() => Promise<unknown>)[], runs = RUNS): Promise<SideBySide> {
  for (let i = 0; i < 20; i++) for (const f of fns) await f();
  const all: number[][] = fns.map(() => []);
  const blocks: number[][] = [];
  for (let b = 0; b < BLOCKS; b++) {
    const times: number[][] = fns.map(() => []);
    for (let i = 0; i < runs; i++) {
      for (let j = 0; j < fns.length; j++) {
        const k = (i + j) % fns.length;
        const t0 = performance.now();
        await fns[k]();
        times[k].push(performance.now() - t0);
      }
    }
    blocks.push(times.map(median));
    times.forEach((t, k) => all[k].push(...t));
  }
  return { ms: all.map(median), blocks };
}

/** The ratios a/b of the blocks' medians. */
function ratiosOf(r: SideBySide, a: number, b: number): number[] {
  return r.blocks.map((m) => m[a] / m[b]);
}

/**
 * The ratio a/b: the median of the blocks' ratios. Each block's medians come from the same
 * stretch of time, so when the load on the machine changes between blocks this stays the ratio
 * of like with like, where the ratio of the overall medians can mix a quiet block's run of one
 * with a busy block's run of the other.
 */
function pairedRatio(r: SideBySide, a: number, b: number): number {
  return median(ratiosOf(r, a, b));
}

/** "min-max" of a/b over the blocks. */
function blockRatios(r: SideBySide, a: number, b: number): string {
  const ratios = ratiosOf(r, a, b);
  return `${Math.min(...ratios).toFixed(2)}-${Math.max(...ratios).toFixed(2)}`;
}

/** Batch-1 runs of runners on their feeds through OrtRunner (the path edge-infer takes). */
function timeRunners(list: Timed[]): Promise<SideBySide> {
  return sideBySide(list.map((t) => () => t.runner.run(t.feeds, 1)));
}

/** The same as timeRunners on bare sessions (session.run only, no runner around it). */
async function timeSessions(
  list: { conv: TfliteConversion; kernels?: QdqKernels }[],
  real: Float32Array[],
): Promise<SideBySide> {
  const opened: { session: OrtSession; feeds: Record<string, OrtTypes.Tensor> }[] = [];
  try {
    for (const { conv, kernels } of list) {
      const session = await createOrtSession(
        kernels === 'mixed' ? (mixedQdqModel(conv.onnx) ?? conv.onnx) : conv.onnx,
        'auto',
        qdqSessionOptions(kernels ?? 'integer', {
          graphOptimizationLevel: 'all',
          executionMode: 'sequential',
        }),
      );
      const ort = loadOrt(session.runtime)!;
      const feeds: Record<string, OrtTypes.Tensor> = {};
      conv.inputs.forEach((io, k) => {
        const q = conv.ioQuantization?.[io.onnxName];
        feeds[io.onnxName] = q
          ? new ort.Tensor(q.type, quantizeReal(real[k], q), io.shape)
          : new ort.Tensor('float32', real[k], io.shape);
      });
      opened.push({ session, feeds });
    }
    return await sideBySide(opened.map((s) => () => s.session.session.run(s.feeds)));
  } finally {
    for (const s of opened) await s.session.release();
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
  return { runner, feeds };
}

/** Random inputs compared with TFLite's interpreter, per file. */
const CHECKS = 10;

/**
 * Largest difference of the runner's outputs from TFLite's interpreter over CHECKS random inputs:
 * quantized outputs in quantization steps (and real units), float outputs in real units. Each
 * input gets a fresh interpreter: TFLite's LSTM state tensors carry over from one run to the next.
 */
async function diffFromReference(
  bytes: Uint8Array,
  conv: TfliteConversion,
  rawConv: TfliteConversion,
  runner: OrtRunner,
): Promise<string> {
  const worst = conv.outputs.map(() => 0);
  for (let seed = 1; seed <= CHECKS; seed++) {
    const ref = await loadReference(bytes);
    if (!ref) return '';
    const raw = randomInputs(rawConv, seed);
    let want: number[][];
    try {
      want = await ref.run(raw);
    } finally {
      await ref.close();
    }
    const real = realInputs(conv, raw);
    const got = await runner.run(
      Object.fromEntries(conv.inputs.map((io, k) => [runner.inputs[k].name, real[k]])),
      1,
    );
    conv.outputs.forEach((io, k) => {
      const q = io.quantization;
      const out = got[runner.outputs[k].name];
      want[k].forEach((v, i) => {
        const d = Math.abs((q ? (v - q.zeroPoint) * q.scale : v) - out[i]);
        worst[k] = Math.max(worst[k], q ? d / q.scale : d);
      });
    });
  }
  return conv.outputs
    .map((io, k) =>
      io.quantization
        ? `${worst[k].toFixed(2)} steps (${(worst[k] * io.quantization.scale).toExponential(2)})`
        : worst[k].toExponential(2),
    )
    .join('; ');
}

async function main(): Promise<void> {
  const reason = tfliteReferenceUnavailable();
  if (reason) console.log(`reference columns empty: ${reason}`);
  console.log(
    `ONNX Runtime packages here: ${availableOrtRuntimes().join(', ')}; medians of ${BLOCKS} x ${RUNS} runs, ` +
      `batch 1, through OrtRunner; ratio: median of the ${BLOCKS} blocks' ratios, by block: their min-max; ` +
      `max |diff|: the runner's outputs against TFLite's interpreter on ${CHECKS} random inputs`,
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
      'ratio by block',
      'session.run ms (earlier / now / twin)',
      'ratio earlier -> now',
      'session ratio by block',
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
      rows.push([path.basename(file), 'error', (err as Error).message, ...new Array<string>(12).fill('')]);
      continue;
    }
    const rawConv = convertTfliteToOnnx(bytes, { io: 'raw' });
    const raw = randomInputs(rawConv, 1);
    const real = realInputs(conv, raw);
    const quantized = conv.quantization !== 'float';
    const list = [await timed(conv.onnx, conv, real)];
    const kernels = list[0].runner.qdqKernels;
    const diff = reason ? '' : await diffFromReference(bytes, conv, rawConv, list[0].runner);
    let bare = '';
    let bareRatio = '';
    let bareBlocks = '';
    if (quantized) {
      const earlier = convertTfliteToOnnx(bytes, { activations: 'int8' });
      list.push(await timed(earlier.onnx, earlier, real, 'integer'));
      const twin = convertTfliteToOnnx(bytes, { dequantize: true });
      list.push(await timed(twin.onnx, twin, real));
      const sessions = await timeSessions(
        [{ conv, kernels }, { conv: earlier, kernels: 'integer' }, { conv: twin }],
        real,
      );
      const [now, before, float] = sessions.ms;
      bare = [before, now, float].map((v) => v.toFixed(4)).join(' / ');
      bareRatio = `${pairedRatio(sessions, 1, 2).toFixed(2)} -> ${pairedRatio(sessions, 0, 2).toFixed(2)}`;
      bareBlocks = blockRatios(sessions, 0, 2);
    }
    const timing = await timeRunners(list);
    const [ms, earlierMs, twinMs] = timing.ms;
    for (const t of list) await t.runner.dispose();
    let refMs = '';
    const ref = reason ? undefined : await loadReference(bytes);
    if (ref) {
      refMs = (await ref.time(raw, RUNS)).toFixed(4);
      await ref.close();
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
      quantized ? pairedRatio(timing, 1, 2).toFixed(2) : '',
      quantized ? pairedRatio(timing, 0, 2).toFixed(2) : '',
      quantized ? blockRatios(timing, 0, 2) : '',
      bare,
      bareRatio,
      bareBlocks,
      kernels ?? '',
      refMs,
      diff,
    ]);
  }
  await closeReference();
  printTable(rows);
  if (availableOrtRuntimes().length) await denseChains();
}

function printTable(rows: string[][]): void {
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c])).join(' | '));
}

/**
 * A chain of `layers` dense layers of `width` units with ReLU on a [1, width] input, as float
 * (Gemm + Relu, which ONNX Runtime fuses into FusedGemm) or as the int8 form the TFLite converter
 * writes (uint8 activations, int8 weights, int32 bias, DequantizeLinear -> Gemm -> Relu ->
 * QuantizeLinear, which ONNX Runtime fuses into one QGemm per layer).
 */
function denseChain(layers: number, width: number, int8: boolean): Uint8Array {
  const g = new GraphBuilder();
  g.reserve('x', 'y');
  const scale = (base: string, v: number) => g.floats(base, [v], []);
  const u8 = (base: string, v: number) => g.initializer(base, OnnxType.UINT8, [], Uint8Array.of(v));
  let v = int8 ? g.op('DequantizeLinear', ['x', scale('x_scale', 0.02), u8('x_zero_point', 0)]) : 'x';
  for (let l = 0; l < layers; l++) {
    const w = Int8Array.from({ length: width * width }, (_, i) => ((i * 37 + l * 11) % 255) - 127);
    const b = Int32Array.from({ length: width }, (_, i) => i * 10 - 50);
    const weights = int8
      ? g.op('DequantizeLinear', [
          g.initializer(`w${l}`, OnnxType.INT8, [width, width], w),
          scale(`w${l}_scale`, 0.01),
          g.initializer(`w${l}_zero_point`, OnnxType.INT8, [], Int8Array.of(0)),
        ])
      : g.floats(
          `w${l}`,
          Float32Array.from(w, (x) => x * 0.01),
          [width, width],
        );
    const bias = int8
      ? g.op('DequantizeLinear', [
          g.initializer(`b${l}`, OnnxType.INT32, [width], b),
          scale(`b${l}_scale`, 0.0002),
          g.initializer(`b${l}_zero_point`, OnnxType.INT32, [], Int32Array.of(0)),
        ])
      : g.floats(
          `b${l}`,
          Float32Array.from(b, (x) => x * 0.0002),
          [width],
        );
    v = g.op('Relu', [g.op('Gemm', [v, weights, bias], [attr.int('transB', 1)])]);
    if (int8) {
      const s = scale(`y${l}_scale`, 0.05);
      v = g.op('QuantizeLinear', [v, s, u8(`y${l}_zero_point`, 0)]);
      if (l < layers - 1) v = g.op('DequantizeLinear', [v, s, u8(`y${l}_zp`, 0)]);
    }
  }
  g.node('Identity', [v], { outputs: ['y'] });
  const type = int8 ? OnnxType.UINT8 : OnnxType.FLOAT;
  const model = onnx.ModelProto.create({
    irVersion: 10,
    opsetImport: [{ domain: '', version: 21 }],
    graph: {
      name: 'dense_chain',
      node: g.nodes,
      initializer: g.initializers,
      input: [tensorValueInfo('x', type, [1, width])],
      output: [tensorValueInfo('y', type, [1, width])],
    },
  });
  return onnx.ModelProto.encode(model).finish();
}

/**
 * The same ops as a converted int8 dense model, built by hand and run on ONNX Runtime directly
 * (no converter, no runner): batch-1 session.run of 1, 3 and 9 layers, float and int8, side by
 * side, and the cost of one more layer (slope from 1 to 9 layers). When the int8 layer costs more
 * than the float one whatever the width, the ratio of a model of a few tiny layers comes from
 * ONNX Runtime's fixed cost per QGemm node, not from the converted graph.
 */
async function denseChains(): Promise<void> {
  const depths = [1, 3, 9];
  const rows: string[][] = [
    [
      'width',
      ...depths.flatMap((l) => [`${l} float µs`, `${l} int8 µs`, `${l} ratio`]),
      'µs per layer float / int8',
    ],
  ];
  for (const width of [16, 64]) {
    const opened: { session: OrtSession; feeds: Record<string, OrtTypes.Tensor> }[] = [];
    try {
      for (const layers of depths) {
        for (const int8 of [false, true]) {
          const session = await createOrtSession(denseChain(layers, width, int8), 'auto', {
            graphOptimizationLevel: 'all',
            executionMode: 'sequential',
          });
          opened.push({ session, feeds: {} });
          const ort = loadOrt(session.runtime)!;
          opened[opened.length - 1].feeds.x = int8
            ? new ort.Tensor(
                'uint8',
                Uint8Array.from({ length: width }, (_, i) => (i * 3) % 256),
                [1, width],
              )
            : new ort.Tensor(
                'float32',
                Float32Array.from({ length: width }, (_, i) => i * 0.06),
                [1, width],
              );
        }
      }
      const timing = await sideBySide(opened.map((s) => () => s.session.session.run(s.feeds)));
      const us = timing.ms.map((v) => v * 1000);
      const row = [String(width)];
      depths.forEach((_, d) =>
        row.push(
          us[2 * d].toFixed(2),
          us[2 * d + 1].toFixed(2),
          pairedRatio(timing, 2 * d + 1, 2 * d).toFixed(2),
        ),
      );
      const last = 2 * (depths.length - 1);
      const span = depths[depths.length - 1] - depths[0];
      row.push(`${((us[last] - us[0]) / span).toFixed(2)} / ${((us[last + 1] - us[1]) / span).toFixed(2)}`);
      rows.push(row);
    } finally {
      for (const s of opened) await s.session.release();
    }
  }
  console.log(
    `\nDense chains built by hand, session.run on ${availableOrtRuntimes()[0]} (medians of ${BLOCKS} x ${RUNS})`,
  );
  printTable(rows);
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
