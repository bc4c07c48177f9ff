/**
 * Where does a training step's time go? Runs training steps of the classic MNIST CNN and of an
 * LSTM(64) forecaster on the wasm backend (one thread) under tf.profile and prints, per kernel,
 * the milliseconds per step and the share of the step (forward and gradient kernels alike).
 *
 * Usage: npm run bench:train-profile [-- --steps 5 --batch 64]
 */
import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from '../lib/models/runtime/tfjs';
import { buildModel, lossFor, type ArchitectureName } from '../lib/train/architectures';
import { prepareBackend } from '../lib/train/trainer';
import { numberArg } from './cli';

interface Case {
  title: string;
  arch: ArchitectureName;
  inputShape: number[];
  outputSize: number;
  sizes: { filters?: number[]; units?: number[] };
}

const CASES: Case[] = [
  {
    title: 'MNIST CNN (conv32-pool-conv64-pool-dense64-dense10)',
    arch: 'mnist-cnn',
    inputShape: [28, 28],
    outputSize: 10,
    sizes: { filters: [32, 64], units: [64] },
  },
  {
    title: 'LSTM(64) forecaster over 50x6 windows',
    arch: 'lstm-forecaster',
    inputShape: [50, 6],
    outputSize: 6,
    sizes: { units: [64] },
  },
];

function step(model: tfl.LayersModel, optimizer: tf.Optimizer, x: tf.Tensor, y: tf.Tensor, loss: string) {
  const lossFn = loss === 'categoricalCrossentropy' ? tfl.metrics.categoricalCrossentropy : tfl.metrics.MSE;
  const cost = optimizer.minimize(
    () => tf.mean(lossFn(y, model.apply(x, { training: true }) as tf.Tensor)) as tf.Scalar,
    true,
  );
  cost?.dispose();
}

async function profile(c: Case, steps: number, batch: number): Promise<void> {
  const model = buildModel(c.arch, {
    inputShape: c.inputShape,
    outputSize: c.outputSize,
    ...c.sizes,
    seed: 1,
  });
  const optimizer = tf.train.adam(0.001);
  const task = c.arch === 'mnist-cnn' ? 'classification' : 'regression';
  const x = tf.randomUniform([batch, ...c.inputShape]);
  const y =
    task === 'classification'
      ? tf.cast(tf.oneHot(tf.randomUniform([batch], 0, c.outputSize, 'int32'), c.outputSize), 'float32')
      : tf.randomUniform([batch, c.outputSize]);
  const loss = lossFor(task);
  for (let i = 0; i < 2; i++) step(model, optimizer, x, y, loss);
  const totals = new Map<string, { ms: number; calls: number }>();
  const started = performance.now();
  for (let i = 0; i < steps; i++) {
    const info = await tf.profile(() => step(model, optimizer, x, y, loss));
    for (const k of info.kernels) {
      const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
      const t = totals.get(k.name) ?? { ms: 0, calls: 0 };
      t.ms += ms;
      t.calls++;
      totals.set(k.name, t);
    }
  }
  const wall = (performance.now() - started) / steps;
  const sum = [...totals.values()].reduce((a, t) => a + t.ms, 0) / steps;
  console.log(`\n${c.title}, batch ${batch}, wasm, ${steps} profiled steps`);
  console.log(`step: ${wall.toFixed(1)} ms wall (profiled), kernels ${sum.toFixed(1)} ms\n`);
  console.log('kernel                        | ms/step | share  | calls/step');
  console.log('------------------------------|---------|--------|-----------');
  const rows = [...totals.entries()].sort((a, b) => b[1].ms - a[1].ms);
  for (const [name, t] of rows.slice(0, 18)) {
    const ms = t.ms / steps;
    console.log(
      `${name.padEnd(30)}| ${ms.toFixed(2).padStart(7)} | ${((ms / sum) * 100).toFixed(1).padStart(5)}% | ${String(t.calls / steps).padStart(6)}`,
    );
  }
  tf.dispose([x, y]);
  model.dispose();
  optimizer.dispose();
}

async function main(): Promise<void> {
  const backend = await prepareBackend('wasm');
  if (backend !== 'wasm') throw new Error(`the wasm backend did not start (got ${backend})`);
  const steps = numberArg('steps', 5);
  const batch = numberArg('batch', 64);
  for (const c of CASES) await profile(c, steps, batch);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
