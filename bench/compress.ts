/**
 * Compression of the three reference models (Keras-doc MNIST CNN, LSTM(64) over 50x6 + Dense(1),
 * dense autoencoder 60-32-8-32-60): weight file size, output difference on a random probe,
 * latency, how long the compression takes, and how long the event loop of the calling
 * thread was blocked meanwhile (the work runs in a worker thread).
 *
 * Usage: npm run bench:compress
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import * as tfl from '@tensorflow/tfjs-layers';
import { compressStoredModel, type CompressOptions } from '../lib/models/compress/compress';
import { ModelStore } from '../lib/models/store/store';
import { fileSaveHandler, useBackend } from '../lib/models/runtime/tfjs';

function mnistCnn(): tfl.LayersModel {
  return tfl.sequential({
    layers: [
      tfl.layers.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, activation: 'relu' }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }),
      tfl.layers.maxPooling2d({ poolSize: 2 }),
      tfl.layers.flatten(),
      tfl.layers.dense({ units: 64, activation: 'relu' }),
      tfl.layers.dense({ units: 10, activation: 'softmax' }),
    ],
  });
}

function lstm(): tfl.LayersModel {
  return tfl.sequential({
    layers: [
      // glorotUniform: the default orthogonal initializer needs tfjs-core's chained ops.
      tfl.layers.lstm({
        inputShape: [50, 6],
        units: 64,
        recurrentActivation: 'sigmoid',
        recurrentInitializer: 'glorotUniform',
      }),
      tfl.layers.dense({ units: 1 }),
    ],
  });
}

function autoencoder(): tfl.LayersModel {
  return tfl.sequential({
    layers: [
      tfl.layers.dense({ inputShape: [60], units: 32, activation: 'relu' }),
      tfl.layers.dense({ units: 8, activation: 'relu' }),
      tfl.layers.dense({ units: 32, activation: 'relu' }),
      tfl.layers.dense({ units: 60 }),
    ],
  });
}

const MODELS: [string, () => tfl.LayersModel][] = [
  ['mnist-cnn', mnistCnn],
  ['lstm-50x6', lstm],
  ['autoencoder', autoencoder],
];

const METHODS: [string, CompressOptions][] = [
  ['uint8', { quantize: 'uint8' }],
  ['uint16', { quantize: 'uint16' }],
  ['float16', { quantize: 'float16' }],
  ['prune 0.5', { prune: 0.5 }],
  ['prune 0.5 + uint8', { prune: 0.5, quantize: 'uint8' }],
  ['prune 0.8 per-layer + uint8', { prune: 0.8, pruneScope: 'per-layer', quantize: 'uint8' }],
];

function fmt(n: number | null | undefined, digits = 2): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return '-';
  if (n !== 0 && Math.abs(n) < 10 ** -digits) return n.toExponential(1);
  return n.toFixed(digits);
}

async function main(): Promise<void> {
  await useBackend(['wasm', 'cpu']);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-bench-compress-'));
  const store = new ModelStore(root);
  const rows: string[][] = [];
  try {
    for (const [name, build] of MODELS) {
      const model = build();
      await store.save(name, { format: 'tfjs-layers', entry: 'model.json' }, async (dir) => {
        await model.save(fileSaveHandler(dir));
      });
      model.dispose();
      for (const [label, options] of METHODS) {
        const delay = monitorEventLoopDelay({ resolution: 10 });
        delay.enable();
        const start = performance.now();
        const { report } = await compressStoredModel(store, {
          name,
          version: 1,
          saveAs: `${name}-c`,
          latencyRuns: 15,
          ...options,
        });
        const took = performance.now() - start;
        delay.disable();
        rows.push([
          name,
          label,
          String(report.sizeBytes.before),
          String(report.sizeBytes.after),
          fmt(report.sizeBytes.ratio),
          fmt(report.sparsity.kernels, 3),
          fmt(report.maxAbsDiff, 4),
          fmt(report.latencyMs.before),
          fmt(report.latencyMs.after),
          report.latencyMs.runtime.after,
          fmt(took, 0),
          fmt(delay.max / 1e6, 1),
        ]);
      }
    }
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
  const header = [
    'model',
    'method',
    'bytes before',
    'bytes after',
    'ratio',
    'kernel sparsity',
    'max |dy|',
    'p50 ms before',
    'p50 ms after',
    'runtime',
    'compress ms',
    'max loop delay ms',
  ];
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(
    `Compression of the reference models (random init weights; probe: 32 random samples; latency: median of 15 batch-1 runs in the worker; ${os.cpus().length} cores)`,
  );
  console.log(line(header));
  console.log(`|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`);
  for (const row of rows) console.log(line(row));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
