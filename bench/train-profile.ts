/**
 * Where does a training step's time go? Runs training steps of the classic MNIST CNN and of an
 * LSTM(64) forecaster on the wasm backend (one thread) under tf.profile and prints, per kernel,
 * the milliseconds per step and the share of the step (forward and gradient kernels alike), side
 * by side in one run: with the compiled heap kernels (3x3 stride-1 convolutions by Winograd and
 * by the direct kernel) and with the composed / JavaScript paths they replace, and with Adam as
 * TF.js kernels and fused into one pass a variable, and with the dense products and the
 * tiling max pooling gradient (ReLU gradient fused) on the heap or not (alternating rounds,
 * medians), plus the unprofiled step time of each.
 *
 * Usage: npm run bench:train-profile [-- --steps 5 --batch 64 --rounds 3 --ab-rounds 21 --parallel-steps 10 --split-only]
 */
import os from 'node:os';
import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from '../lib/models/runtime/tfjs';
import { buildModel, lossFor, type ArchitectureName } from '../lib/train/architectures';
import { COORDINATOR_PHASES, HELPER_PHASES, ParallelTrainer, type StepProfile } from '../lib/train/parallel';
import { prepareBackend } from '../lib/train/trainer';
import { fusedAdam } from '../lib/train/fused-adam';
import { useHeapKernels, useHeapMatMul, useTiledPoolGrad, useWinograd } from '../lib/train/wasm-gradients';
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
  const optimizers = { fused: fusedAdam(0.001), kernels: tf.train.adam(0.001) };
  const task = c.arch === 'mnist-cnn' ? 'classification' : 'regression';
  const x = tf.randomUniform([batch, ...c.inputShape]);
  const y =
    task === 'classification'
      ? tf.cast(tf.oneHot(tf.randomUniform([batch], 0, c.outputSize, 'int32'), c.outputSize), 'float32')
      : tf.randomUniform([batch, c.outputSize]);
  const loss = lossFor(task);
  const sides = [
    { name: 'composed / JS', heap: false, winograd: false, fused: false, dense: false, pool: false },
    { name: 'heap, direct', heap: true, winograd: false, fused: false, dense: false, pool: false },
    { name: 'Winograd, tf Adam', heap: true, winograd: true, fused: false, dense: false, pool: false },
    { name: 'Winograd, fused Adam', heap: true, winograd: true, fused: true, dense: false, pool: false },
    { name: '+ heap dense, pool', heap: true, winograd: true, fused: true, dense: true, pool: true },
  ];
  let optimizer: tf.Optimizer = optimizers.kernels;
  const run = () => step(model, optimizer, x, y, loss);
  for (const side of sides) {
    useHeapKernels(side.heap);
    useWinograd(side.winograd);
    useHeapMatMul(side.dense);
    useTiledPoolGrad(side.pool);
    optimizer = side.fused ? optimizers.fused : optimizers.kernels;
    for (let i = 0; i < 2; i++) run();
  }
  // Per side: per-kernel milliseconds per step and unprofiled step times, one list entry a round.
  const kernels = sides.map(() => new Map<string, number[]>());
  const walls = sides.map((): number[] => []);
  for (let round = 0; round < rounds; round++) {
    for (const [s, side] of sides.entries()) {
      useHeapKernels(side.heap);
      useWinograd(side.winograd);
      useHeapMatMul(side.dense);
      useTiledPoolGrad(side.pool);
      optimizer = side.fused ? optimizers.fused : optimizers.kernels;
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
  useHeapMatMul(true);
  useTiledPoolGrad(true);
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
      .join(', ')} (${(median(walls[0]) / median(walls[last])).toFixed(2)}x; fused Adam ${(
      median(walls[2]) / median(walls[3])
    ).toFixed(2)}x; heap dense and pool ${(median(walls[3]) / median(walls[4])).toFixed(2)}x)\n`,
  );
  const cell = (text: string): string => text.padStart(24);
  console.log(
    `${'kernel'.padEnd(30)}|${sides.map((side) => ` ${cell(`${side.name} ms`)} |`).join('')} share (last)`,
  );
  console.log(`${'-'.repeat(30)}|${sides.map(() => `${'-'.repeat(26)}|`).join('')}-------------`);
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
  // The optimizer step alone (the same random gradients every step), both sides in each round.
  const variables = model.trainableWeights.map((w) => (w as unknown as { read(): tf.Variable }).read());
  const grads: tf.NamedTensorMap = {};
  for (const v of variables) grads[v.name] = tf.randomNormal(v.shape, 0, 0.01);
  const applyMs = { kernels: [] as number[], fused: [] as number[] };
  for (let round = 0; round < rounds; round++) {
    for (const key of ['kernels', 'fused'] as const) {
      const started = performance.now();
      for (let i = 0; i < 20; i++) (optimizers[key] as tf.Optimizer).applyGradients(grads);
      await tf.ready();
      applyMs[key].push((performance.now() - started) / 20);
    }
  }
  console.log(
    `Adam step alone (${variables.reduce((n, v) => n + v.size, 0)} values): tf.train.adam ${median(
      applyMs.kernels,
    ).toFixed(2)} ms, fused ${median(applyMs.fused).toFixed(2)} ms (${(
      median(applyMs.kernels) / median(applyMs.fused)
    ).toFixed(1)}x)`,
  );
  tf.dispose(Object.values(grads));
  tf.dispose([x, y]);
  model.dispose();
  optimizers.fused.dispose();
  optimizers.kernels.dispose();
}

/**
 * The unprofiled MNIST CNN step without and with the heap dense products and the tiling pooling
 * kernels (everything else on), `rounds` alternating rounds of `steps` steps: medians and minima
 * (the profiled table above adds its own overhead to every kernel call).
 */
async function denseAndPooling(steps: number, batch: number, rounds: number): Promise<void> {
  const c = CASES[0];
  const model = buildModel(c.arch, {
    inputShape: c.inputShape,
    outputSize: c.outputSize,
    ...c.sizes,
    seed: 1,
  });
  const optimizer = fusedAdam(0.001);
  const x = tf.randomUniform([batch, ...c.inputShape]);
  const y = tf.cast(tf.oneHot(tf.randomUniform([batch], 0, c.outputSize, 'int32'), c.outputSize), 'float32');
  const loss = lossFor('classification');
  const sides = [
    { name: 'without', on: false },
    { name: 'with', on: true },
  ];
  const walls = sides.map((): number[] => []);
  for (let round = 0; round < rounds; round++) {
    for (const [s, side] of sides.entries()) {
      useHeapMatMul(side.on);
      useTiledPoolGrad(side.on);
      step(model, optimizer, x, y, loss);
      const started = performance.now();
      for (let i = 0; i < steps; i++) step(model, optimizer, x, y, loss);
      await tf.ready();
      walls[s].push((performance.now() - started) / steps);
    }
  }
  useHeapMatMul(true);
  useTiledPoolGrad(true);
  const min = (v: number[]): number => Math.min(...v);
  console.log(
    `\nMNIST CNN step without / with the heap dense products and tiling pooling kernels, ${rounds} alternating rounds of ${steps} steps (load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}): median ${median(walls[0]).toFixed(1)} / ${median(walls[1]).toFixed(1)} ms (${(
      median(walls[0]) / median(walls[1])
    ).toFixed(2)}x), minimum ${min(walls[0]).toFixed(1)} / ${min(walls[1]).toFixed(1)} ms (${(
      min(walls[0]) / min(walls[1])
    ).toFixed(2)}x)`,
  );
  tf.dispose([x, y]);
  model.dispose();
  optimizer.dispose();
}

/**
 * The data-parallel step split: where each thread's time goes per step of the MNIST CNN at
 * `threads` threads (this thread: writing weights and batch to shared memory, its own shard,
 * waiting for the helpers, summing their gradients, the optimizer step; each helper: waking,
 * reading weights and shard, its shard, writing its gradients), with the batch split evenly and
 * by the threads' measured speeds, next to the one-thread step, alternating rounds in one run.
 */
async function parallelSplit(threads: number, steps: number, batch: number, rounds: number): Promise<void> {
  const c = CASES[0];
  const model = buildModel(c.arch, {
    inputShape: c.inputShape,
    outputSize: c.outputSize,
    ...c.sizes,
    seed: 1,
  });
  const loss = lossFor('classification');
  model.compile({ optimizer: fusedAdam(0.001), loss, metrics: ['accuracy'] });
  const core = (model as unknown as { model: { makeTrainFunction: unknown } }).model;
  const ownTrainFunction = core.makeTrainFunction;
  const x = tf.randomUniform([batch * steps, ...c.inputShape]);
  const y = tf.cast(
    tf.oneHot(tf.randomUniform([batch * steps], 0, c.outputSize, 'int32'), c.outputSize),
    'float32',
  );
  const fit = async (): Promise<number> => {
    const started = performance.now();
    await model.fit(x, y, { batchSize: batch, epochs: 1, shuffle: false, verbose: 0 });
    return (performance.now() - started) / steps;
  };
  const sides = ['1 thread', `${threads} threads, even`, `${threads} threads, balanced`];
  const walls = sides.map((): number[] => []);
  const profiles: Array<{ before: StepProfile; after: StepProfile; split: number[] }> = [];
  const trainers = await Promise.all(
    [false, true].map((balance) =>
      ParallelTrainer.start(model, {
        threads,
        backend: 'wasm',
        loss,
        metrics: ['accuracy'],
        inputShape: c.inputShape,
        targetShape: [c.outputSize],
        maxRows: batch,
        balance,
      }),
    ),
  );
  try {
    for (let round = 0; round <= rounds; round++) {
      for (const [s] of sides.entries()) {
        core.makeTrainFunction = ownTrainFunction;
        const trainer = s > 0 ? trainers[s - 1] : undefined;
        trainer?.install();
        const before = trainer?.profile();
        const ms = await fit();
        // Round 0 warms up (and lets the balanced split find the threads' speeds).
        if (round === 0) continue;
        walls[s].push(ms);
        if (trainer && before && round === rounds) {
          profiles.push({ before, after: trainer.profile(), split: trainer.nextSplit(batch) });
        }
      }
    }
    console.log(
      `\nData-parallel MNIST CNN step, batch ${batch}, medians of ${rounds} rounds of ${steps} steps: ${sides
        .map(
          (side, s) =>
            `${side} ${median(walls[s]).toFixed(1)} ms (${(median(walls[0]) / median(walls[s])).toFixed(2)}x)`,
        )
        .join(', ')}`,
    );
    console.log(
      `load average ${os
        .loadavg()
        .map((l) => l.toFixed(2))
        .join(' ')}; ms per step in the last round:`,
    );
    profiles.forEach(({ before, after, split }, i) => {
      const n = after.steps - before.steps;
      const per = (a: number, b: number): string => ((a - b) / n).toFixed(2).padStart(7);
      console.log(`${sides[i + 1]} (rows per thread next: ${split.join(' + ')})`);
      console.log(
        `  this thread: ${COORDINATOR_PHASES.map((p) => `${p} ${per(after.coordinator[p], before.coordinator[p])}`).join(' |')}`,
      );
      after.helpers.forEach((h, k) =>
        console.log(
          `  helper ${k + 1}:    ${HELPER_PHASES.map((p) => `${p} ${per(h[p], before.helpers[k][p])}`).join(' |')}`,
        ),
      );
    });
  } finally {
    core.makeTrainFunction = ownTrainFunction;
    await Promise.all(trainers.map((t) => t.close()));
    tf.dispose([x, y]);
    model.dispose();
  }
}

async function main(): Promise<void> {
  const backend = await prepareBackend('wasm');
  if (backend !== 'wasm') throw new Error(`the wasm backend did not start (got ${backend})`);
  const steps = numberArg('steps', 5);
  const batch = numberArg('batch', 64);
  const rounds = numberArg('rounds', 3);
  if (!process.argv.includes('--split-only')) {
    for (const c of CASES) await profile(c, steps, batch, rounds);
    await denseAndPooling(steps, batch, numberArg('ab-rounds', 21));
  }
  await parallelSplit(Math.max(2, os.availableParallelism()), numberArg('parallel-steps', 10), batch, rounds);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
