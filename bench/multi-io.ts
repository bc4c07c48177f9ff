// A two-input, two-output Keras 3 functional model (Dense branches joined by Concatenate) on the
// runtime createRunner picks (its ONNX export on ONNX Runtime, checked against TF.js at load) and
// on TF.js, medians of batch-1 and batch-64 runs of both outputs, measured side by side in one
// process (one run of each per round).
// Then a stateful ONNX RNN (LSTM state carried per stream): messages per second for 16 streams
// queued together, their n-th messages run as one batch against one by one, side by side.
// Usage: npm run bench:multi-io [-- runs]
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { runNamed, type ModelRunner } from '../lib/models/runtime/runner';
import { createRunner } from '../lib/models/runtime/select';
import { useBackend } from '../lib/models/runtime/tfjs';
import { readModelFiles } from '../lib/models/store/model-files';
import { randomValues } from '../test/fixtures/reference';
import { keras3TwoInputs } from '../test/fixtures/tfjs-fixtures';
import { onnxStatefulRnn } from '../test/fixtures/onnx-fixtures';
import { availableOrtRuntimes } from '../lib/models/runtime/ort-session';
import { OrtRunner } from '../lib/models/runtime/ort-runner';
import { runStreamJobs, type StreamJob } from '../lib/models/serve/stream-batch';
import { parseConstants, parseStatePairs, StreamStates } from '../lib/models/serve/streams';

async function statefulStreams(rounds: number, directions: 1 | 2): Promise<void> {
  const { bytes, features } = onnxStatefulRnn(91, directions);
  const runner = await OrtRunner.create(bytes, availableOrtRuntimes()[0]);
  const settings = {
    state: parseStatePairs('hn:h, cn:c'),
    constants: parseConstants('sr=16000'),
    maxStreams: 100,
  };
  const states = { batched: new StreamStates(settings), single: new StreamStates(settings) };
  const jobs: StreamJob[] = Array.from({ length: 16 }, (_, s) => ({
    stream: `sensor${s}`,
    feeds: { input: randomValues(features, s + 1, 1.5) },
  }));
  const ms = { batched: 0, single: 0 };
  for (let r = 0; r < rounds + 10; r++) {
    for (const mode of ['batched', 'single'] as const) {
      const t0 = performance.now();
      await runStreamJobs(runner, states[mode], runner.inputs, jobs, mode === 'batched');
      if (r >= 10) ms[mode] += performance.now() - t0;
    }
  }
  await runner.dispose();
  const rate = (t: number) => (16 * rounds) / (t / 1000);
  console.log(
    `\nstateful RNN (state [${directions}, batch, 8]) on ${runner.runtime}, 16 streams queued together, ${rounds} rounds`,
  );
  console.log(
    `one by one: ${rate(ms.single).toFixed(0)} msg/s | batched: ${rate(ms.batched).toFixed(0)} msg/s | ${(ms.single / ms.batched).toFixed(1)}x`,
  );
}

async function sideBySide(
  runners: ModelRunner[],
  feeds: Record<string, Float32Array>,
  batch: number,
  runs: number,
): Promise<number[]> {
  const times: number[][] = runners.map(() => []);
  for (let i = 0; i < Math.min(20, runs); i++) for (const r of runners) await runNamed(r, feeds, batch);
  for (let i = 0; i < runs; i++) {
    for (const [k, r] of runners.entries()) {
      const t0 = performance.now();
      await runNamed(r, feeds, batch);
      times[k].push(performance.now() - t0);
    }
  }
  return times.map((t) => t.sort((a, b) => a - b)[Math.floor(runs / 2)]);
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 300);
  await useBackend(['wasm', 'cpu']);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-multi-io-'));
  try {
    const fixture = await keras3TwoInputs(path.join(root, 'two'));
    const files = await readModelFiles(fixture.entry, { root });
    const auto = await createRunner(files, { runtime: 'auto' });
    const tfjs = await createRunner(await readModelFiles(fixture.entry, { root }), { runtime: 'tfjs' });
    console.log(`auto: ${auto.runner.runtime} (${auto.notes[auto.notes.length - 1]})`);
    const rows: string[][] = [
      ['batch', `${auto.runner.runtime} ms`, `${tfjs.runner.runtime} ms`, 'speed-up'],
    ];
    for (const batch of [1, 64]) {
      const feeds = { sensor: randomValues(4 * batch, 1, 1.5), context: randomValues(3 * batch, 2, 1.5) };
      const n = batch === 1 ? runs : Math.max(20, Math.floor(runs / 5));
      const [ort, tf] = await sideBySide([auto.runner, tfjs.runner], feeds, batch, n);
      rows.push([String(batch), ort.toFixed(4), tf.toFixed(4), `${(tf / ort).toFixed(1)}x`]);
    }
    await auto.runner.dispose();
    await tfjs.runner.dispose();
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c])).join(' | '));
    for (const directions of [1, 2] as const)
      await statefulStreams(Math.max(50, Math.floor(runs / 2)), directions);
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
