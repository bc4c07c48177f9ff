/**
 * Where does a training step's time go? Runs training steps of the classic MNIST CNN and of an
 * LSTM(64) forecaster on the wasm backend (one thread) under tf.profile and prints, per kernel,
 * the milliseconds per step and the share of the step (forward and gradient kernels alike), side
 * by side in one run: with the compiled heap kernels (3x3 stride-1 convolutions by Winograd and
 * by the direct kernel) and with the composed / JavaScript paths they replace (alternating rounds,
 * medians), plus the unprofiled step time of each.
 *
 * Usage: npm run bench:train-profile [-- --steps 5 --batch 64 --rounds 3]
 */
import os from 'node:os';
import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from '../lib/models/runtime/tfjs';
import { buildModel, lossFor, type ArchitectureName } from '../lib/train/architectures';
import { prepareBackend } from '../lib/train/trainer';
import { useHeapKernels, useWinograd } from '../lib/train/wasm-gradients';
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

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

function step(model: tfl.LayersModel, optimizer: tf.Optimizer, x: tf.Tensor, y: tf.Tensor, loss: string) {
  const lossFn = loss === 'categoricalCrossentropy' ? tfl.metrics.categoricalCrossentropy : tfl.metrics.MSE;
  const cost = optimizer.minimize(
    () => tf.mean(lossFn(y, model.apply(x, { training: true }) as tf.Tensor)) as tf.Scalar,
    true,
  );
  cost?.dispose();
}

async function profile(c: Case, steps: number, batch: number, rounds: number): Promise<void> {
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
  const sides = [
    { name: 'composed / JS', heap: false, winograd: false },
    { name: 'heap, direct', heap: true, winograd: false },
    { name: 'heap, Winograd', heap: true, winograd: true },
  ];
  const run = () => step(model, optimizer, x, y, loss);
  for (const side of sides) {
    useHeapKernels(side.heap);
    useWinograd(side.winograd);
    for (let i = 0; i < 2; i++) run();
  }
  // Per side: per-kernel milliseconds per step and unprofiled step times, one list entry a round.
  const kernels = sides.map(() => new Map<string, number[]>());
  const walls = sides.map((): number[] => []);
  for (let round = 0; round < rounds; round++) {
    for (const [s, side] of sides.entries()) {
      useHeapKernels(side.heap);
      useWinograd(side.winograd);
      const started = performance.now();
      for (let i = 0; i < steps; i++) run();
      await tf.ready();
      walls[s].push((performance.now() - started) / steps);
      const totals = new Map<string, number>();
      for (let i = 0; i < steps; i++) {
        const info = await tf.profile(run);
        for (const k of info.kernels) {
          const ms = typeof k.kernelTimeMs === 'number' ? k.kernelTimeMs : 0;
          totals.set(k.name, (totals.get(k.name) ?? 0) + ms / steps);
        }
      }
      for (const [name, ms] of totals) kernels[s].set(name, [...(kernels[s].get(name) ?? []), ms]);
    }
  }
  useHeapKernels(true);
  useWinograd(true);
  const of = (s: number, name: string): number => median(kernels[s].get(name) ?? [0]);
  const peak = (name: string): number => Math.max(...sides.map((_, s) => of(s, name)));
  const names = [...new Set(kernels.flatMap((k) => [...k.keys()]))].sort((p, q) => peak(q) - peak(p));
  const total = (s: number): number => names.reduce((sum, name) => sum + of(s, name), 0);
  const last = sides.length - 1;
  console.log(
    `\n${c.title}, batch ${batch}, wasm, one thread; medians of ${rounds} rounds of ${steps} steps`,
  );
  console.log(
    `load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}`,
  );
  console.log(
    `step (unprofiled): ${sides
      .map((side, s) => `${median(walls[s]).toFixed(1)} ms ${side.name}`)
      .join(', ')} (${(median(walls[0]) / median(walls[last])).toFixed(2)}x)\n`,
  );
  const cell = (text: string): string => text.padStart(15);
  console.log(
    `${'kernel'.padEnd(30)}|${sides.map((side) => ` ${cell(`${side.name} ms`)} |`).join('')} share (last)`,
  );
  console.log(`${'-'.repeat(30)}|${sides.map(() => `${'-'.repeat(17)}|`).join('')}-------------`);
  for (const name of names.slice(0, 18)) {
    console.log(
      `${name.padEnd(30)}|${sides.map((_, s) => ` ${cell(of(s, name).toFixed(2))} |`).join('')} ${(
        (of(last, name) / total(last)) *
        100
      )
        .toFixed(1)
        .padStart(10)} %`,
    );
  }
  console.log(
    `${'all kernels'.padEnd(30)}|${sides.map((_, s) => ` ${cell(total(s).toFixed(2))} |`).join('')}`,
  );
  tf.dispose([x, y]);
  model.dispose();
  optimizer.dispose();
}

async function main(): Promise<void> {
  const backend = await prepareBackend('wasm');
  if (backend !== 'wasm') throw new Error(`the wasm backend did not start (got ${backend})`);
  const steps = numberArg('steps', 5);
  const batch = numberArg('batch', 64);
  const rounds = numberArg('rounds', 3);
  for (const c of CASES) await profile(c, steps, batch, rounds);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
