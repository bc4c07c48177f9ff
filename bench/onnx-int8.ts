// Float vs int8 ONNX models of the three reference models (random weights): export accuracy
// against TF.js, int8 accuracy, size and latency, per ONNX Runtime package.
// Usage: npm run bench:onnx-int8
import * as tfl from '@tensorflow/tfjs-layers';
import { exportLayersModelToOnnx } from '../lib/models/convert/onnx-export';
import { quantizeOnnxInt8Calibrated } from '../lib/models/compress/onnx-quantize';
import {
  availableOrtRuntimes,
  createOrtSession,
  type OrtRuntimeName,
} from '../lib/models/runtime/ort-session';
import { useBackend } from '../lib/models/runtime/tfjs';
import {
  maxAbsDiff,
  predictTfjs,
  randomInput,
  randomizeWeights,
  referenceModels,
} from '../test/helpers/onnx-models';

async function medianMs(
  bytes: Uint8Array,
  runtime: OrtRuntimeName,
  input: { data: Float32Array; dims: number[] },
  runs: number,
) {
  const session = await createOrtSession(bytes, runtime);
  try {
    for (let i = 0; i < 5; i++) await session.run(input.data, input.dims);
    const times: number[] = [];
    for (let i = 0; i < runs; i++) {
      const t0 = performance.now();
      await session.run(input.data, input.dims);
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    return times[Math.floor(runs / 2)];
  } finally {
    await session.release();
  }
}

async function output(
  bytes: Uint8Array,
  runtime: OrtRuntimeName,
  input: { data: Float32Array; dims: number[] },
) {
  const session = await createOrtSession(bytes, runtime);
  try {
    return (await session.run(input.data, input.dims)).data;
  } finally {
    await session.release();
  }
}

async function main() {
  await useBackend(['cpu']);
  const models: [string, () => tfl.LayersModel, number][] = [
    ['MNIST CNN', referenceModels.mnistCnn, 0.1],
    ['LSTM(64) hardSigmoid', () => referenceModels.lstm(undefined, 'glorotUniform'), 0.2],
    ['LSTM(64) sigmoid', () => referenceModels.lstm('sigmoid', 'glorotUniform'), 0.2],
    ['autoencoder 60-32-8-32-60', referenceModels.autoencoder, 0.2],
  ];
  const rows: string[][] = [];
  for (const [name, build, scale] of models) {
    const model = build();
    randomizeWeights(model, scale);
    const float = exportLayersModelToOnnx(model);
    const { model: int8, report } = await quantizeOnnxInt8Calibrated(float, [randomInput(model, 32)]);
    const probe = randomInput(model, 64);
    const reference = predictTfjs(model, probe);
    const refMax = reference.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    for (const runtime of availableOrtRuntimes()) {
      const floatOut = await output(float, runtime, probe);
      const int8Out = await output(int8, runtime, probe);
      const one = randomInput(model, 1);
      const [f1, q1, f64, q64] = [
        await medianMs(float, runtime, one, 200),
        await medianMs(int8, runtime, one, 200),
        await medianMs(float, runtime, probe, 30),
        await medianMs(int8, runtime, probe, 30),
      ];
      rows.push([
        name,
        runtime,
        maxAbsDiff(reference, floatOut).toExponential(1),
        maxAbsDiff(floatOut, int8Out).toExponential(1),
        (maxAbsDiff(floatOut, int8Out) / refMax).toFixed(4),
        `${(report.bytesBefore / 1024).toFixed(1)} -> ${(report.bytesAfter / 1024).toFixed(1)} KiB (${report.sizeRatio.toFixed(2)})`,
        `${f1.toFixed(3)} / ${q1.toFixed(3)} (${(q1 / f1).toFixed(2)})`,
        `${f64.toFixed(2)} / ${q64.toFixed(2)} (${(q64 / f64).toFixed(2)})`,
      ]);
    }
    model.dispose();
  }
  const header = [
    'model',
    'runtime',
    'float vs TF.js',
    'int8 vs float',
    'int8 rel.',
    'size float -> int8',
    'batch 1 ms float / int8',
    'batch 64 ms float / int8',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const r of rows) console.log(line(r));
  console.log(
    '\nmax abs differences over 64 random inputs; "int8 rel." = int8 vs float / max |output|; medians.',
  );
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
