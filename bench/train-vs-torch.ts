/**
 * Training speed side by side with PyTorch on CPU (Debian's python3-torch), in one run: one
 * epoch of the classic MNIST CNN over MNIST digits and of an LSTM(64) forecaster over 50x6
 * windows, batch 64, Adam, at 1 thread and at every core, medians of the repeats (the two sides
 * alternate run by run, so that both see the same load on a shared machine). Then the
 * event-loop delay of this thread while the CNN trains in the training worker with the default
 * thread count (as edge-train runs it). PyTorch rows are skipped with the reason when it is absent.
 *
 * Usage: npm run bench:train-vs-torch [-- --count 2000 --repeats 3 --models cnn,lstm]
 */
import { execFileSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { defaultTrainingThreads } from '../lib/train/parallel';
import { TrainingWorker } from '../lib/train/training-worker';
import { trainModel, type TrainData, type TrainSettings } from '../lib/train/trainer';
import { seededRandom } from '../lib/util/random';
import { numberArg } from './cli';
import { copyTrainData, mnistDigits } from './train-data';

const PYTHON = '/usr/bin/python3';

/** Smooth multichannel signals: each window's next step is the target. */
function windows(count: number): TrainData {
  const random = seededRandom(3);
  const x = new Float32Array(count * 50 * 6);
  const y = new Float32Array(count * 6);
  for (let n = 0; n < count; n++) {
    const phase = random() * 6.28;
    for (let t = 0; t <= 50; t++) {
      for (let c = 0; c < 6; c++) {
        const v = Math.sin(phase + (t + c) * 0.2) + 0.1 * (random() - 0.5);
        if (t < 50) x[(n * 50 + t) * 6 + c] = v;
        else y[n * 6 + c] = v;
      }
    }
  }
  return { x, y, count, inputShape: [50, 6], outputSize: 6 };
}

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

interface Case {
  name: string;
  torchModel: 'cnn' | 'lstm';
  data: TrainData;
  settings: TrainSettings;
}

function torchMissing(): string | undefined {
  try {
    execFileSync(PYTHON, ['-c', 'import torch, numpy'], { stdio: 'pipe' });
    return undefined;
  } catch {
    return `PyTorch is not installed for ${PYTHON} (apt-get install python3-torch)`;
  }
}

/** One PyTorch epoch, timed after a first one in the same process (as ours run in a warm worker). */
async function torchSeconds(c: Case, threads: number, dir: string): Promise<number> {
  const xPath = path.join(dir, `${c.torchModel}-x.f32`);
  const yPath = path.join(dir, `${c.torchModel}-y.f32`);
  await fs.writeFile(xPath, c.data.x);
  await fs.writeFile(yPath, c.data.y as Float32Array);
  const out = execFileSync(
    PYTHON,
    [
      path.join(__dirname, '../../bench/torch-train.py'),
      c.torchModel,
      String(threads),
      xPath,
      yPath,
      String(c.data.count),
      '2',
    ],
    { encoding: 'utf8' },
  );
  return (JSON.parse(out.trim().split('\n').pop() as string) as { seconds: number[] }).seconds[1];
}

async function tfjsSeconds(c: Case, threads: number): Promise<number> {
  const result = await trainModel({ ...c.settings, threads }, copyTrainData(c.data));
  return result.epochMs[0] / 1000;
}

async function main(): Promise<void> {
  const count = numberArg('count', 2000);
  const repeats = numberArg('repeats', 3);
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  const base = {
    optimizer: 'adam' as const,
    learningRate: 0.001,
    batchSize: 64,
    epochs: 1,
    validationSplit: 0,
    backend: 'wasm' as const,
    seed: 1,
  };
  const cases: Case[] = [
    {
      name: `MNIST CNN, ${count} digits`,
      torchModel: 'cnn',
      data: mnistDigits(count),
      settings: {
        ...base,
        task: 'classification',
        architecture: 'mnist-cnn',
        sizes: { filters: [32, 64], units: [64] },
      },
    },
    {
      name: `LSTM(64), ${count} windows 50x6`,
      torchModel: 'lstm',
      data: windows(count),
      settings: { ...base, task: 'regression', architecture: 'lstm-forecaster', sizes: { units: [64] } },
    },
  ];
  const models = (
    process.argv.includes('--models') ? process.argv[process.argv.indexOf('--models') + 1] : 'cnn,lstm'
  )
    .split(',')
    .map((m) => m.trim());
  const missing = torchMissing();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'train-vs-torch-'));
  console.log(
    `One training epoch, batch 64, Adam; medians of ${repeats}; ${cores} cores, load ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')}\n`,
  );
  if (missing) console.log(`PyTorch rows skipped: ${missing}\n`);
  console.log(
    'model                         | threads | this package (wasm) | PyTorch CPU | ratio (ours / torch)',
  );
  console.log(
    '------------------------------|---------|---------------------|-------------|---------------------',
  );
  try {
    for (const c of cases.filter((k) => models.includes(k.torchModel))) {
      for (const threads of [...new Set([1, cores])]) {
        const oursRuns: number[] = [];
        const torchRuns: number[] = [];
        for (let r = 0; r < repeats; r++) {
          oursRuns.push(await tfjsSeconds(c, threads));
          if (!missing) torchRuns.push(await torchSeconds(c, threads, dir));
        }
        const ours = median(oursRuns);
        const torch = missing ? undefined : median(torchRuns);
        console.log(
          `${c.name.padEnd(30)}| ${String(threads).padStart(7)} | ${`${ours.toFixed(2)} s`.padStart(19)} | ${
            torch === undefined ? '    skipped' : `${torch.toFixed(2)} s`.padStart(11)
          } | ${torch === undefined ? '-' : `${(ours / torch).toFixed(2)}x`}`,
        );
      }
    }
  } finally {
    await fs.rm(dir, { recursive: true, force: true });
  }

  const threads = defaultTrainingThreads();
  const histogram = monitorEventLoopDelay({ resolution: 1 });
  histogram.enable();
  await new TrainingWorker().run({ ...cases[0].settings, threads }, copyTrainData(cases[0].data));
  histogram.disable();
  console.log(
    `\nEvent-loop delay of this thread while the CNN trains in the training worker with the default ` +
      `${threads} thread(s): p50 ${(histogram.percentile(50) / 1e6).toFixed(1)} ms, p99 ${(
        histogram.percentile(99) / 1e6
      ).toFixed(1)} ms, max ${(histogram.max / 1e6).toFixed(1)} ms`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
