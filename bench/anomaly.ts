/**
 * Anomaly detection benchmark.
 *
 * SKAB mode: npm run bench:anomaly -- --data <dir> [--method <m>] [--out <dir>]
 *   Every labelled `;`-separated CSV under <dir> (datetime; sensor columns...; anomaly;
 *   changepoint) is replayed row by row through the same detector code the edge-anomaly node
 *   runs (fresh state per file, first 400 rows = learning period). Prints F1 / FAR / MAR over
 *   all test rows of all files next to the published SKAB results. --out writes one CSV per
 *   data file at the same relative path (header `anomaly`, one 0/1 per test row); with more
 *   than one method each method gets its own sub-folder.
 *
 * Stream mode: npm run bench:anomaly -- --stream --data <dir> --out <dir> [--method <m>]
 *   Reads <dir>/<category>/<name>.csv (timestamp,value), learns on the first 15% of rows (at
 *   most 750) and writes <out>/<category>/<name>.csv with timestamp,anomaly_score.
 */

import { promises as fs } from 'node:fs';
import path from 'node:path';
import {
  AnomalyDetector,
  DEFAULT_OPTIONS,
  METHODS,
  type DetectorOptions,
  type Method,
} from '../lib/anomaly/detector';
import { detectPayload, type PayloadResult } from '../lib/anomaly/message';

const SKAB_TRAIN_ROWS = 400;
const LABEL_COLUMNS = new Set(['datetime', 'timestamp', 'anomaly', 'changepoint']);

/** Results on all 34 SKAB files as published on the SKAB leaderboard (outlier detection). */
const PUBLISHED: [string, number, number, number][] = [
  ['MSET', 0.78, 39.73, 14.13],
  ['Conv-AE', 0.78, 13.55, 28.02],
  ['T-squared+Q (PCA)', 0.76, 26.62, 24.92],
  ['LSTM-AE', 0.74, 29.96, 25.92],
  ['T-squared', 0.66, 19.21, 42.6],
  ['LSTM-VAE', 0.56, 9.13, 55.03],
  ['Vanilla LSTM', 0.54, 12.54, 59.53],
  ['Vanilla AE', 0.39, 2.59, 75.15],
  ['Isolation forest', 0.29, 2.56, 82.89],
];

interface Args {
  data: string;
  out?: string;
  methods: Method[];
  stream: boolean;
  /** Detector options set on the command line (--set name=value). */
  options: Partial<DetectorOptions>;
}

function parseArgs(argv: string[]): Args {
  let data = '';
  let out: string | undefined;
  let method: string | undefined;
  let stream = false;
  const options: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--data') data = argv[++i];
    else if (a === '--out') out = argv[++i];
    else if (a === '--method') method = argv[++i];
    else if (a === '--stream') stream = true;
    else if (a === '--set') {
      const [key, value] = argv[++i].split('=');
      if (!(key in DEFAULT_OPTIONS)) throw new Error(`unknown option ${key}`);
      options[key] = JSON.parse(value) as unknown;
    }
    else throw new Error(`unknown argument ${a}`);
  }
  if (!data) throw new Error('usage: bench:anomaly -- [--stream] --data <dir> [--method <m>] [--out <dir>]');
  if (stream && !out) throw new Error('--stream needs --out <dir>');
  const runnable: Method[] = METHODS.filter((m) => m !== 'model');
  if (method && !runnable.includes(method as Method))
    throw new Error(`unknown method ${method}; one of ${runnable.join(', ')}`);
  const methods = method ? [method as Method] : stream ? ['auto' as Method] : runnable;
  return { data: path.resolve(data), out: out ? path.resolve(out) : undefined, methods, stream, options };
}

async function csvFiles(dir: string): Promise<string[]> {
  const entries = await fs.readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((e) => e.isFile() && e.name.endsWith('.csv'))
    .map((e) => path.join(e.parentPath ?? dir, e.name))
    .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
}

interface Table {
  header: string[];
  rows: string[][];
}

async function readCsv(file: string): Promise<Table> {
  const text = (await fs.readFile(file, 'utf8')).trim();
  const lines = text.split(/\r?\n/);
  const delimiter = lines[0].includes(';') ? ';' : ',';
  return {
    header: lines[0].split(delimiter).map((h) => h.trim()),
    rows: lines.slice(1).map((l) => l.split(delimiter).map((c) => c.trim())),
  };
}

function timestampOf(text: string, fallback: number): number {
  const t = Date.parse(text.includes('T') || text.endsWith('Z') ? text : text.replace(' ', 'T') + 'Z');
  return Number.isFinite(t) ? t : fallback;
}

interface Counts {
  tp: number;
  fp: number;
  tn: number;
  fn: number;
}

function metrics(c: Counts): { f1: number; far: number; mar: number } {
  const f1 = (2 * c.tp) / Math.max(1, 2 * c.tp + c.fp + c.fn);
  return { f1, far: c.fp / Math.max(1, c.fp + c.tn), mar: c.fn / Math.max(1, c.fn + c.tp) };
}

/** Replays one SKAB file through a fresh detector; returns the 0/1 prediction of each test row. */
async function runSkabFile(table: Table, options: Partial<DetectorOptions>): Promise<number[]> {
  const sensors = table.header
    .map((name, j) => ({ name, j }))
    .filter(({ name }) => !LABEL_COLUMNS.has(name.toLowerCase()));
  const timeColumn = table.header.findIndex((h) => ['datetime', 'timestamp'].includes(h.toLowerCase()));
  const detector = new AnomalyDetector({ ...options, learningSamples: SKAB_TRAIN_ROWS, learningMs: 0 });
  // The rows arrive as fast as they can be sent, like a replay: the detector queues them in
  // order (scoring queued samples of the neural methods in batches) and answers each one.
  const pending: Promise<PayloadResult>[] = [];
  try {
    for (let i = 0; i < table.rows.length; i++) {
      const row = table.rows[i];
      const payload: Record<string, number> = {};
      for (const { name, j } of sensors) payload[name] = Number(row[j]);
      const t = timeColumn >= 0 ? timestampOf(row[timeColumn], i * 1000) : i * 1000;
      pending.push(detectPayload(detector, payload, t));
    }
    const results = await Promise.all(pending);
    return results.slice(SKAB_TRAIN_ROWS).map((r) => (r.isAnomaly ? 1 : 0));
  } finally {
    await Promise.allSettled(pending);
    await detector.dispose();
  }
}

function pad(text: string, width: number): string {
  return text.length >= width ? text : text + ' '.repeat(width - text.length);
}

async function skab(args: Args): Promise<void> {
  const files: { file: string; table: Table; labels: number[] }[] = [];
  for (const file of await csvFiles(args.data)) {
    const table = await readCsv(file);
    const labelColumn = table.header.findIndex((h) => h.toLowerCase() === 'anomaly');
    if (labelColumn < 0 || table.rows.length <= SKAB_TRAIN_ROWS) continue;
    files.push({
      file,
      table,
      labels: table.rows.slice(SKAB_TRAIN_ROWS).map((r) => (Number(r[labelColumn]) ? 1 : 0)),
    });
  }
  if (files.length === 0) throw new Error(`no labelled CSV files under ${args.data}`);
  const testRows = files.reduce((a, f) => a + f.labels.length, 0);
  console.log(
    `SKAB protocol: ${files.length} files, ${testRows} test rows, first ${SKAB_TRAIN_ROWS} rows of each file learn`,
  );
  const measured: [string, number, number, number, number, number][] = [];
  for (const method of args.methods) {
    const started = performance.now();
    const cpuStart = process.cpuUsage();
    const counts: Counts = { tp: 0, fp: 0, tn: 0, fn: 0 };
    for (const { file, table, labels } of files) {
      const predictions = await runSkabFile(table, { ...args.options, method });
      predictions.forEach((p, i) => {
        const y = labels[i];
        if (p && y) counts.tp++;
        else if (p) counts.fp++;
        else if (y) counts.fn++;
        else counts.tn++;
      });
      if (args.out) {
        const rel = path.relative(args.data, file);
        const target = args.methods.length > 1 ? path.join(args.out, method, rel) : path.join(args.out, rel);
        await fs.mkdir(path.dirname(target), { recursive: true });
        await fs.writeFile(target, ['anomaly', ...predictions.map(String)].join('\n') + '\n');
      }
    }
    const m = metrics(counts);
    const seconds = (performance.now() - started) / 1000;
    const cpu = process.cpuUsage(cpuStart);
    const cpuSeconds = (cpu.user + cpu.system) / 1e6;
    measured.push([method, m.f1, m.far * 100, m.mar * 100, seconds, cpuSeconds]);
    console.log(
      `  ${pad(method, 12)} F1 ${m.f1.toFixed(3)}  FAR ${(m.far * 100).toFixed(2)}%  MAR ${(m.mar * 100).toFixed(2)}%  ` +
        `(${seconds.toFixed(1)} s wall, ${cpuSeconds.toFixed(1)} s CPU)`,
    );
  }
  console.log('');
  console.log(`| method (this package, ${files.length} files) | F1 | FAR % | MAR % | wall s | CPU s |`);
  console.log('|---|---|---|---|---|---|');
  for (const [name, f1, far, mar, s, cpu] of measured)
    console.log(
      `| ${name} | ${f1.toFixed(2)} | ${far.toFixed(2)} | ${mar.toFixed(2)} | ${s.toFixed(1)} | ${cpu.toFixed(1)} |`,
    );
  console.log('');
  console.log('| published (SKAB, all 34 files) | F1 | FAR % | MAR % |');
  console.log('|---|---|---|---|');
  for (const [name, f1, far, mar] of PUBLISHED)
    console.log(`| ${name} | ${f1.toFixed(2)} | ${far.toFixed(2)} | ${mar.toFixed(2)} |`);
}

async function stream(args: Args): Promise<void> {
  const method = args.methods[0];
  const files = await csvFiles(args.data);
  let written = 0;
  let rejected = 0;
  for (const file of files) {
    const rel = path.relative(args.data, file);
    if (rel.split(path.sep).length !== 2) continue;
    const table = await readCsv(file);
    const tCol = table.header.indexOf('timestamp');
    const vCol = table.header.indexOf('value');
    if (tCol < 0 || vCol < 0) continue;
    const learningSamples = Math.max(1, Math.min(750, Math.floor(table.rows.length * 0.15)));
    const detector = new AnomalyDetector({ ...args.options, method, learningSamples, learningMs: 0 });
    const lines = ['timestamp,anomaly_score'];
    try {
      // Queued all at once like a replay; a row the detector rejects (not a number) scores 0.
      const scores = await Promise.all(
        table.rows.map((row, i) =>
          detectPayload(detector, Number(row[vCol]), timestampOf(row[tCol], i)).then(
            (r) => r.score,
            () => {
              rejected++;
              return 0;
            },
          ),
        ),
      );
      table.rows.forEach((row, i) => lines.push(`${row[tCol]},${scores[i]}`));
    } finally {
      await detector.dispose();
    }
    const target = path.join(args.out as string, rel);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, lines.join('\n') + '\n');
    written++;
  }
  console.log(
    `stream mode (${method}): scored ${written} series into ${args.out}` +
      (rejected ? ` (${rejected} rows were not numbers and score 0)` : ''),
  );
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.stream) await stream(args);
  else await skab(args);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
