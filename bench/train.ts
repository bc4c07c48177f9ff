/**
 * Does training keep Node-RED responsive? Event-loop delay (perf_hooks monitorEventLoopDelay)
 * of this thread while the classic MNIST CNN trains on MNIST digits: once in a worker thread
 * (as edge-train runs it) and once on this thread, in the same run. Then the epoch time of the
 * same training on the wasm and the cpu backend.
 *
 * Usage: npm run bench:train [-- --digits 640 --epochs 1 --cpu-digits 64]
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { TrainingWorker } from '../lib/train/training-worker';
import { trainModel, type TrainSettings } from '../lib/train/trainer';
import { numberArg } from './cli';
import { copyTrainData, mnistDigits } from './train-data';

interface Delay {
  p50: number;
  p99: number;
  max: number;
  seconds: number;
}

async function measured(run: () => Promise<unknown>): Promise<Delay> {
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  const started = performance.now();
  await run();
  const seconds = (performance.now() - started) / 1000;
  histogram.disable();
  const ms = (ns: number) => ns / 1e6;
  return {
    p50: ms(histogram.percentile(50)),
    p99: ms(histogram.percentile(99)),
    max: ms(histogram.max),
    seconds,
  };
}

async function main(): Promise<void> {
  const count = numberArg('digits', 640);
  const epochs = numberArg('epochs', 1);
  const cpuCount = numberArg('cpu-digits', 64);
  const settings: TrainSettings = {
    task: 'classification',
    architecture: 'mnist-cnn',
    sizes: { filters: [32, 64], units: [64] },
    optimizer: 'adam',
    learningRate: 0.001,
    batchSize: 64,
    epochs,
    validationSplit: 0,
    backend: 'wasm',
    seed: 1,
  };
  const data = mnistDigits(count, 10);
  console.log(`Classic MNIST CNN, ${data.count} digits, ${epochs} epoch(s), batch 64, wasm backend\n`);

  const inWorker = await measured(() => new TrainingWorker().run(settings, copyTrainData(data)));
  const onMain = await measured(() => trainModel(settings, copyTrainData(data)));

  console.log('training on        | event-loop delay p50 | p99       | max       | run time');
  const row = (name: string, d: Delay) =>
    console.log(
      `${name.padEnd(18)} | ${d.p50.toFixed(1).padStart(17)} ms | ${d.p99.toFixed(1).padStart(6)} ms | ${d.max.toFixed(1).padStart(6)} ms | ${d.seconds.toFixed(1)} s`,
    );
  row('worker thread', inWorker);
  row('main thread', onMain);
  console.log(`\nworker p99 under 20 ms: ${inWorker.p99 < 20 ? 'yes' : 'NO'}`);

  const small = {
    ...data,
    count: cpuCount,
    x: data.x.slice(0, cpuCount * 784),
    y: data.y?.slice(0, cpuCount),
  };
  const wasm = await trainModel({ ...settings, epochs: 1 }, copyTrainData(small));
  const cpu = await trainModel({ ...settings, epochs: 1, backend: 'cpu' }, copyTrainData(small));
  console.log(`\nEpoch time over the same ${cpuCount} digits (batch 64):`);
  console.log('backend | seconds');
  console.log(`wasm    | ${(wasm.epochMs[0] / 1000).toFixed(2)}`);
  console.log(`cpu     | ${(cpu.epochMs[0] / 1000).toFixed(2)}`);
  console.log(`wasm is ${(cpu.epochMs[0] / wasm.epochMs[0]).toFixed(1)}x faster`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
