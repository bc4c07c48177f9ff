/**
 * uint8 weight ranges compared on trained classifiers: the converter's range per tensor (zero
 * exact) against the best measured per tensor of converter / plain / per-channel ranges. Output
 * error and top-class agreement are measured on the models' own data (the representative probe),
 * side by side in one run.
 *
 * Usage: npm run bench:uint8
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { compressStoredModel } from '../lib/models/compress/compress';
import { fileSaveHandler, tf, useBackend } from '../lib/models/runtime/tfjs';
import { ModelStore } from '../lib/models/store/store';
import { seededRandom } from '../lib/util/random';

interface Task {
  name: string;
  build(): tfl.LayersModel;
  x: number[][] | number[][][];
  y: number[];
  shape: number[];
}

function clusters(
  count: number,
  features: number,
  classes: number,
  seed: number,
): { x: number[][]; y: number[] } {
  const u = seededRandom(seed);
  const centres = Array.from({ length: classes }, () => Array.from({ length: features }, () => u() * 4 - 2));
  // Features on very different scales, as raw sensor channels are.
  const scales = Array.from({ length: features }, (_, i) => 0.2 + (i % 5) * 2);
  const x: number[][] = [];
  const y: number[] = [];
  for (let i = 0; i < count; i++) {
    const c = i % classes;
    x.push(centres[c].map((m, f) => (m + (u() - 0.5) * 2.5) * scales[f]));
    y.push(c);
  }
  return { x, y };
}

function sequences(
  count: number,
  steps: number,
  classes: number,
  seed: number,
): { x: number[][][]; y: number[] } {
  const u = seededRandom(seed);
  const x: number[][][] = [];
  const y: number[] = [];
  for (let i = 0; i < count; i++) {
    const c = i % classes;
    const freq = 0.3 + c * 0.35;
    const phase = u() * 6.28;
    x.push(
      Array.from({ length: steps }, (_, t) => [
        Math.sin(freq * t + phase) + (u() - 0.5) * 0.6,
        Math.cos(freq * 0.5 * t + phase) * (1 + c * 0.3) + (u() - 0.5) * 0.6,
        (u() - 0.5) * 0.2 + c * 0.1,
      ]),
    );
    y.push(c);
  }
  return { x, y };
}

async function main(): Promise<void> {
  await useBackend(['wasm', 'cpu']);
  const mlp = clusters(600, 20, 5, 3);
  const seq = sequences(300, 20, 4, 5);
  const tasks: Task[] = [
    {
      name: 'MLP 20-64-32-5',
      shape: [20],
      ...mlp,
      build: () =>
        tfl.sequential({
          layers: [
            tfl.layers.dense({ inputShape: [20], units: 64, activation: 'relu' }),
            tfl.layers.dense({ units: 32, activation: 'relu' }),
            tfl.layers.dense({ units: 5, activation: 'softmax' }),
          ],
        }),
    },
    {
      name: 'BiLSTM(16) 20x3-4',
      shape: [20, 3],
      ...seq,
      build: () =>
        tfl.sequential({
          layers: [
            tfl.layers.bidirectional({
              inputShape: [20, 3],
              layer: tfl.layers.lstm({
                units: 16,
                recurrentActivation: 'sigmoid',
                recurrentInitializer: 'glorotUniform',
              }) as tfl.RNN,
            }),
            tfl.layers.dense({ units: 4, activation: 'softmax' }),
          ],
        }),
    },
  ];
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-bench-uint8-'));
  const store = new ModelStore(root);
  const rows: string[][] = [
    [
      'model',
      'scheme',
      'ranges chosen',
      'max |dy|',
      'mean |dy|',
      'top-class agreement',
      'accuracy before/after',
    ],
  ];
  try {
    for (const task of tasks) {
      const model = task.build();
      model.compile({ optimizer: tf.train.adam(0.01), loss: 'sparseCategoricalCrossentropy' });
      const xs = tf.tensor(task.x as number[][], [task.x.length, ...task.shape]);
      const ys = tf.tensor1d(task.y, 'float32');
      await model.fit(xs, ys, { epochs: 30, batchSize: 32, verbose: 0 });
      tf.dispose([xs, ys]);
      const name = task.name.replace(/[^A-Za-z0-9]+/g, '-').replace(/-$/, '');
      await store.save(name, { format: 'tfjs-layers', entry: 'model.json' }, async (dir) => {
        await model.save(fileSaveHandler(dir));
      });
      model.dispose();
      for (const scheme of ['converter', 'best'] as const) {
        const { report, stored } = await compressStoredModel(
          store,
          {
            name,
            version: 1,
            quantize: 'uint8',
            scheme,
            saveAs: `${name}-${scheme}`,
            calibration: { x: task.x, y: task.y },
          },
          { worker: false },
        );
        const q = stored.meta.quantization as { schemes?: Record<string, number> } | undefined;
        rows.push([
          task.name,
          scheme,
          q?.schemes
            ? Object.entries(q.schemes)
                .map(([k, n]) => `${k} ${n}`)
                .join(', ')
            : 'converter (all)',
          report.maxAbsDiff.toExponential(2),
          report.meanAbsDiff.toExponential(2),
          (report.topClassAgreement ?? NaN).toFixed(4),
          `${report.accuracy?.before.toFixed(3)} / ${report.accuracy?.after.toFixed(3)}`,
        ]);
      }
    }
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
  console.log('uint8 weights, trained classifiers; probe: their own training samples (representative data)');
  const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
  for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c])).join(' | '));
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
