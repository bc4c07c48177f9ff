// A CNN as a TF.js graph model against the same net as a layers model ("its layers twin"), each
// on the runtime createRunner picks (ONNX Runtime for both when the conversion verifies) and on
// TF.js, medians of batch-1 and batch-64 runs measured side by side in one process.
// Usage: npm run bench:graph [-- runs]
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { ModelRunner } from '../lib/models/runtime/runner';
import { createRunner, type RuntimePreference } from '../lib/models/runtime/select';
import { useBackend } from '../lib/models/runtime/tfjs';
import { readModelFiles } from '../lib/models/store/model-files';
import { graphCnnLayersTwin } from '../test/fixtures/graph-cnn-twin';
import { randomValues } from '../test/fixtures/reference';
import { graphCnn, graphCnnWeights } from '../test/fixtures/tfjs-fixtures';

async function median(run: () => Promise<unknown>, runs: number): Promise<number> {
  for (let i = 0; i < Math.min(20, runs); i++) await run();
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(runs / 2)];
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 200);
  await useBackend(['wasm', 'cpu']);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-graph-'));
  try {
    const weights = graphCnnWeights();
    const graph = await readModelFiles(await graphCnn(path.join(root, 'graph'), weights), { root });
    const layers = await readModelFiles(await graphCnnLayersTwin(path.join(root, 'layers'), weights), {
      root,
    });
    const one = randomValues(64, 1, 2);
    const batch = randomValues(64 * 64, 2, 2);
    const rows: string[][] = [['model', 'runtime', 'batch 1 ms', 'batch 64 ms']];
    const timings: Record<string, [number, number]> = {};
    const cases: [string, typeof graph, RuntimePreference][] = [
      ['graph CNN', graph, 'auto'],
      ['layers twin', layers, 'auto'],
      ['graph CNN', graph, 'tfjs'],
      ['layers twin', layers, 'tfjs'],
    ];
    for (const [name, files, runtime] of cases) {
      const { runner }: { runner: ModelRunner } = await createRunner(files, { runtime });
      try {
        const b1 = await median(() => runner.predict(one, 1), runs);
        const b64 = await median(() => runner.predict(batch, 64), Math.max(10, Math.floor(runs / 10)));
        timings[`${name} ${runtime}`] = [b1, b64];
        rows.push([name, runner.runtime, b1.toFixed(4), b64.toFixed(3)]);
      } finally {
        await runner.dispose();
      }
    }
    const [g1, g64] = timings['graph CNN auto'];
    const [l1, l64] = timings['layers twin auto'];
    rows.push(['graph / layers (auto)', '', (g1 / l1).toFixed(2), (g64 / l64).toFixed(2)]);
    const widths = rows[0].map((_, c) => Math.max(...rows.map((r) => r[c].length)));
    console.log(`medians of ${runs} batch-1 runs; target: graph CNN on ORT within 2x of its layers twin`);
    for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c])).join(' | '));
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
