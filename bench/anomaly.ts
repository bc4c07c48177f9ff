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
 *   --per-file lists every file: test rows, hits, false alarms, onset delay, how long the alarm
 *   outlasts the labelled episode.
 *
 * Stream mode: npm run bench:anomaly -- --stream --data <dir> --out <dir> [--method <m>]
 *   Reads <dir>/<category>/<name>.csv (timestamp,value), learns on the first 15% of rows (at
 *   most 750) and writes <out>/<category>/<name>.csv with timestamp,anomaly_score. When the
 *   NAB scorer (score.py) sits beside <dir>, it is run and its per-file table printed.
 *
 * Cross-validation: npm run bench:anomaly -- --cv --data <skab dir> --nab <nab data dir>
 *     [--grid name=v1,v2 ...]
 *   Runs every combination of the grid's detector settings over both corpora, then selects
 *   settings inside each fold only: leave one SKAB file out (F1 with FAR <= 10 %) and leave one
 *   NAB category out (NAB standard score, threshold optimised on the other categories). Prints
 *   in-sample and held-out figures of each candidate and of the selection.
 *
 * SKAB and cross-validation modes take --normal <csv>: a recording without anomalies (SKAB's
 *   anomaly-free.csv), cut into parts as long as a SKAB experiment, each learning on its first
 *   400 rows; the false alarm rate on those parts is printed beside the labelled files' figures.
 *
 * Every mode takes --set name=value (JSON value) to override a detector option.
 */

import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
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
  perFile: boolean;
  cv: boolean;
  nab?: string;
  grid: [string, unknown[]][];
  normal?: string;
}

function parseArgs(argv: string[]): Args {
  let data = '';
  let out: string | undefined;
  let method: string | undefined;
  let stream = false;
  const options: Record<string, unknown> = {};
  let perFile = false;
  let cv = false;
  let nab: string | undefined;
  const grid: [string, unknown[]][] = [];
  let normal: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--data') data = argv[++i];
    else if (a === '--out') out = argv[++i];
    else if (a === '--method') method = argv[++i];
    else if (a === '--stream') stream = true;
    else if (a === '--per-file') perFile = true;
    else if (a === '--cv') cv = true;
    else if (a === '--nab') nab = path.resolve(argv[++i]);
    else if (a === '--normal') normal = path.resolve(argv[++i]);
    else if (a === '--grid') {
      const [key, values] = argv[++i].split('=');
      if (!(key in DEFAULT_OPTIONS)) throw new Error(`unknown option ${key}`);
      grid.push([key, values.split(',').map((v) => JSON.parse(v) as unknown)]);
    } else if (a === '--set') {
      const [key, value] = argv[++i].split('=');
      if (!(key in DEFAULT_OPTIONS)) throw new Error(`unknown option ${key}`);
      options[key] = JSON.parse(value) as unknown;
    } else throw new Error(`unknown argument ${a}`);
  }
  if (!data) throw new Error('usage: bench:anomaly -- [--stream] --data <dir> [--method <m>] [--out <dir>]');
  if (stream && !out) throw new Error('--stream needs --out <dir>');
  const runnable: Method[] = METHODS.filter((m) => m !== 'model');
  if (method && !runnable.includes(method as Method))
    throw new Error(`unknown method ${method}; one of ${runnable.join(', ')}`);
  const methods = method ? [method as Method] : stream ? ['auto' as Method] : runnable;
  return {
    data: path.resolve(data),
    out: out ? path.resolve(out) : undefined,
    methods,
    stream,
    options,
    perFile,
    cv,
    nab,
    grid,
    normal,
  };
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

interface SkabFile {
  file: string;
  table: Table;
  labels: number[];
}

async function loadSkab(dir: string): Promise<SkabFile[]> {
  const files: SkabFile[] = [];
  for (const file of await csvFiles(dir)) {
    const table = await readCsv(file);
    const labelColumn = table.header.findIndex((h) => h.toLowerCase() === 'anomaly');
    if (labelColumn < 0 || table.rows.length <= SKAB_TRAIN_ROWS) continue;
    files.push({
      file,
      table,
      labels: table.rows.slice(SKAB_TRAIN_ROWS).map((r) => (Number(r[labelColumn]) ? 1 : 0)),
    });
  }
  if (files.length === 0) throw new Error(`no labelled CSV files under ${dir}`);
  return files;
}

/** Rows in each part of a recording without anomalies (about one SKAB experiment). */
const NORMAL_PART_ROWS = 1150;

/** A recording without anomalies, cut into SKAB-length parts whose every test row is normal. */
async function loadNormal(file: string): Promise<SkabFile[]> {
  const table = await readCsv(file);
  const parts: SkabFile[] = [];
  for (let start = 0; start + NORMAL_PART_ROWS <= table.rows.length; start += NORMAL_PART_ROWS) {
    const rows = table.rows.slice(start, start + NORMAL_PART_ROWS);
    parts.push({
      file: `${file}#${parts.length}`,
      table: { header: table.header, rows },
      labels: rows.slice(SKAB_TRAIN_ROWS).map(() => 0),
    });
  }
  if (parts.length === 0) throw new Error(`${file} has fewer than ${NORMAL_PART_ROWS} rows`);
  return parts;
}

/** False alarm rate of `options` over the parts of a normal recording, and the parts with alarms. */
async function normalFar(parts: SkabFile[], options: Partial<DetectorOptions>): Promise<string> {
  let counts: Counts = NO_COUNTS;
  let alarmed = 0;
  for (const part of parts) {
    const c = outcome(await runSkabFile(part.table, options), part.labels).counts;
    if (c.fp > 0) alarmed++;
    counts = add(counts, c);
  }
  return `${(metrics(counts).far * 100).toFixed(2)}% (alarms in ${alarmed} of ${parts.length} parts)`;
}

/** What one file's predictions did: counts, onset delay, alarms before, alarm after the episode. */
interface FileOutcome {
  counts: Counts;
  /** Rows from the labelled start to the first alarm inside the episode (null = missed). */
  onset: number | null;
  /** Alarm rows before the labelled episode. */
  early: number;
  /** Alarm rows after the labelled episode ended. */
  late: number;
}

function outcome(predictions: readonly number[], labels: readonly number[]): FileOutcome {
  const counts: Counts = { tp: 0, fp: 0, tn: 0, fn: 0 };
  const first = labels.indexOf(1);
  const last = labels.lastIndexOf(1);
  let onset: number | null = null;
  let early = 0;
  let late = 0;
  predictions.forEach((p, i) => {
    const y = labels[i];
    if (p && y) {
      counts.tp++;
      if (onset === null) onset = i - first;
    } else if (p) {
      counts.fp++;
      if (first < 0 || i < first) early++;
      else if (i > last) late++;
    } else if (y) counts.fn++;
    else counts.tn++;
  });
  return { counts, onset, early, late };
}

function add(a: Counts, b: Counts): Counts {
  return { tp: a.tp + b.tp, fp: a.fp + b.fp, tn: a.tn + b.tn, fn: a.fn + b.fn };
}

const NO_COUNTS: Counts = { tp: 0, fp: 0, tn: 0, fn: 0 };

function printSkabFiles(root: string, files: SkabFile[], outcomes: FileOutcome[]): void {
  console.log(
    '| file | test rows | anomalous | hit | onset delay (rows) | alarms before | alarm after end | F1 |',
  );
  console.log('|---|---|---|---|---|---|---|---|');
  files.forEach((f, i) => {
    const o = outcomes[i];
    const anomalous = f.labels.reduce((a, b) => a + b, 0);
    console.log(
      `| ${path.relative(root, f.file)} | ${f.labels.length} | ${anomalous} | ${o.counts.tp} | ` +
        `${o.onset === null ? 'MISSED' : o.onset} | ${o.early} | ${o.late} | ${metrics(o.counts).f1.toFixed(2)} |`,
    );
  });
  console.log('');
}

/** Samples per second of one detector on 8 channels after learning (sequential awaits, like a flow). */
async function throughput(options: Partial<DetectorOptions>): Promise<number> {
  const channels = Array.from({ length: 8 }, (_, j) => `c${j}`);
  const detector = new AnomalyDetector({ ...options, learningSamples: 400, learningMs: 0 });
  let seed = 1;
  const noise = (): number => ((seed = (seed * 16807) % 2147483647) / 2147483647) * 2 - 1;
  const sample = (t: number): number[] => channels.map((_, j) => Math.sin(t / (20 + j)) + 0.1 * noise());
  for (let t = 0; t < 400; t++) await detector.process(sample(t), channels, t);
  const n = 20000;
  const started = performance.now();
  for (let t = 400; t < 400 + n; t++) await detector.process(sample(t), channels, t);
  const seconds = (performance.now() - started) / 1000;
  await detector.dispose();
  return n / seconds;
}

async function skab(args: Args): Promise<void> {
  const files = await loadSkab(args.data);
  const testRows = files.reduce((a, f) => a + f.labels.length, 0);
  console.log(
    `SKAB protocol: ${files.length} files, ${testRows} test rows, first ${SKAB_TRAIN_ROWS} rows of each file learn`,
  );
  const normalParts = args.normal ? await loadNormal(args.normal) : null;
  const measured: [string, number, number, number, number, number][] = [];
  for (const method of args.methods) {
    const started = performance.now();
    const cpuStart = process.cpuUsage();
    let counts: Counts = NO_COUNTS;
    const outcomes: FileOutcome[] = [];
    for (const { file, table, labels } of files) {
      const predictions = await runSkabFile(table, { ...args.options, method });
      const o = outcome(predictions, labels);
      outcomes.push(o);
      counts = add(counts, o.counts);
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
    if (args.perFile) printSkabFiles(args.data, files, outcomes);
    if (normalParts)
      console.log(
        `  ${pad('', 12)} normal-only recording: FAR ${await normalFar(normalParts, { ...args.options, method })}`,
      );
    if (!['ae-dense', 'ae-conv', 'ae-lstm', 'forecast'].includes(method))
      console.log(
        `  ${pad('', 12)} ${Math.round(await throughput({ ...args.options, method }))} samples/s on 8 channels`,
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

/** Scores every series under `data` into `out` (NAB results layout); returns the relative paths. */
async function streamScores(
  data: string,
  out: string,
  options: Partial<DetectorOptions>,
): Promise<{ written: string[]; rejected: number }> {
  const written: string[] = [];
  let rejected = 0;
  for (const file of await csvFiles(data)) {
    const rel = path.relative(data, file);
    if (rel.split(path.sep).length !== 2) continue;
    const table = await readCsv(file);
    const tCol = table.header.indexOf('timestamp');
    const vCol = table.header.indexOf('value');
    if (tCol < 0 || vCol < 0) continue;
    const learningSamples = Math.max(1, Math.min(750, Math.floor(table.rows.length * 0.15)));
    const detector = new AnomalyDetector({ ...options, learningSamples, learningMs: 0 });
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
    const target = path.join(out, rel);
    await fs.mkdir(path.dirname(target), { recursive: true });
    await fs.writeFile(target, lines.join('\n') + '\n');
    written.push(rel);
  }
  return { written, rejected };
}

/** The NAB scorer beside a NAB data folder, if there is one. */
async function nabScorer(data: string): Promise<string | null> {
  const scorer = path.join(path.dirname(data), 'score.py');
  return fs.access(scorer).then(
    () => scorer,
    () => null,
  );
}

interface NabResult {
  threshold: number;
  score: number;
  /** Raw standard-profile score per file (category/name.csv). */
  raw: Map<string, number>;
}

/** Runs the NAB scorer (standard profile) on the files of `labels` (all when omitted). */
async function nabScore(
  scorer: string,
  dir: string,
  keys?: string[],
  threshold?: number,
): Promise<NabResult> {
  const extra: string[] = [];
  if (keys) {
    const all = JSON.parse(
      await fs.readFile(path.join(path.dirname(scorer), 'labels', 'combined_windows.json'), 'utf8'),
    ) as Record<string, unknown>;
    const subset = Object.fromEntries(keys.map((k) => [k, all[k]]));
    const file = path.join(dir, `labels-${keys.length}-${keys[0].replace(/\W/g, '_')}.json`);
    await fs.writeFile(file, JSON.stringify(subset));
    extra.push('--labels', file);
  }
  if (threshold !== undefined) extra.push('--threshold', String(threshold));
  const { stdout } = await promisify(execFile)('python3', [scorer, 'score', dir, '--per-file', ...extra], {
    maxBuffer: 1 << 24,
  });
  const head = /^standard\s+(\S+)\s+\S+\s+\S+\s+\S+\s+\d+\s+\d+\s+\d+\s+(\S+)/m.exec(stdout);
  if (!head) throw new Error(`unexpected NAB scorer output:\n${stdout}`);
  const raw = new Map<string, number>();
  for (const m of stdout.matchAll(/^\s+(\S+\.csv)\s+(\S+)\s+\S+\s+\S+\s+\d+\/\d+\/\d+$/gm))
    raw.set(m[1], Number(m[2]));
  return { threshold: Number(head[1]), score: Number(head[2]), raw };
}

async function stream(args: Args): Promise<void> {
  const method = args.methods[0];
  const out = args.out as string;
  const { written, rejected } = await streamScores(args.data, out, { ...args.options, method });
  console.log(
    `stream mode (${method}): scored ${written.length} series into ${out}` +
      (rejected ? ` (${rejected} rows were not numbers and score 0)` : ''),
  );
  const scorer = await nabScorer(args.data);
  if (!scorer) return;
  const { stdout } = await promisify(execFile)('python3', [scorer, 'score', out, '--per-file'], {
    maxBuffer: 1 << 24,
  });
  if (args.perFile) console.log(stdout.trimEnd());
  else console.log(stdout.trimEnd().split('\n').pop());
}

/** Windows per NAB file, for normalising raw scores of any subset of files. */
async function nabWindows(scorer: string): Promise<Map<string, number>> {
  const all = JSON.parse(
    await fs.readFile(path.join(path.dirname(scorer), 'labels', 'combined_windows.json'), 'utf8'),
  ) as Record<string, unknown[]>;
  return new Map(Object.entries(all).map(([k, v]) => [k, v.length]));
}

/** Cost of one false detection under NAB's standard profile. */
const NAB_FP_COST = 0.11;

/** Rows after NAB's probation scoring at or above `threshold` in files without windows. */
async function falseDetections(dir: string, keys: string[], threshold: number): Promise<number> {
  let n = 0;
  for (const k of keys) {
    const rows = (await readCsv(path.join(dir, k))).rows;
    const probation = Math.min(Math.floor(0.15 * rows.length), 750);
    n += rows.slice(probation).filter((r) => Number(r[1]) >= threshold).length;
  }
  return n;
}

/** NAB's normalisation (standard profile: a missed window costs 1, a perfect detection earns 1). */
function normalised(raw: number, windows: number): number {
  return windows > 0 ? (100 * (raw + windows)) / (2 * windows) : 0;
}

const DEFAULT_GRID: [string, unknown[]][] = [
  ['likelihood', [0, 10]],
  ['suppress', [100, 200]],
  ['relearnAfter', [200, 400, 800]],
];

/** Largest FAR a candidate may have on SKAB to be selected. */
const MAX_FAR = 0.1;

function candidatesOf(grid: [string, unknown[]][]): Record<string, unknown>[] {
  let out: Record<string, unknown>[] = [{}];
  for (const [key, values] of grid) out = out.flatMap((c) => values.map((v) => ({ ...c, [key]: v })));
  return out;
}

function label(c: Record<string, unknown>): string {
  return Object.entries(c)
    .map(([k, v]) => `${k}=${JSON.stringify(v)}`)
    .join(' ');
}

/** SKAB selection objective: F1, with candidates over the FAR limit ranked after all others. */
function skabObjective(c: Counts): number {
  const m = metrics(c);
  return m.far <= MAX_FAR ? m.f1 : m.f1 - 1;
}

async function crossValidate(args: Args): Promise<void> {
  if (!args.nab) throw new Error('--cv needs --nab <NAB data dir> besides --data <SKAB dir>');
  const scorer = await nabScorer(args.nab);
  if (!scorer) throw new Error(`no score.py beside ${args.nab}`);
  const grid = args.grid.length ? args.grid : DEFAULT_GRID;
  const candidates = candidatesOf(grid);
  const skabFiles = await loadSkab(args.data);
  const normalParts = args.normal ? await loadNormal(args.normal) : null;
  const windows = await nabWindows(scorer);
  const work = await fs.mkdtemp(path.join(os.tmpdir(), 'anomaly-cv-'));
  console.log(
    `cross-validation: ${candidates.length} candidates, ${skabFiles.length} SKAB files, NAB in ${args.nab}`,
  );
  const skabRuns: Counts[][] = [];
  const nabDirs: string[] = [];
  let nabKeys: string[] = [];
  for (const [i, c] of candidates.entries()) {
    const method = args.methods.length === 1 ? args.methods[0] : 'auto';
    const options = { ...args.options, method, ...c } as Partial<DetectorOptions>;
    const perFile: Counts[] = [];
    for (const f of skabFiles) perFile.push(outcome(await runSkabFile(f.table, options), f.labels).counts);
    skabRuns.push(perFile);
    const dir = path.join(work, `c${i}`);
    const { written } = await streamScores(args.nab, dir, options);
    nabKeys = written.map((w) => w.split(path.sep).join('/'));
    nabDirs.push(dir);
    const all = metrics(perFile.reduce(add, NO_COUNTS));
    const nab = await nabScore(scorer, dir);
    const normal = normalParts ? `  normal-only FAR ${await normalFar(normalParts, options)}` : '';
    console.log(
      `  [${i}] ${label(c)}: SKAB F1 ${all.f1.toFixed(3)} FAR ${(all.far * 100).toFixed(1)}%  NAB ${nab.score.toFixed(2)}${normal}`,
    );
  }

  // SKAB: leave one file out; the selection sees the other files only.
  let held: Counts = NO_COUNTS;
  const skabPicks: number[] = [];
  for (let f = 0; f < skabFiles.length; f++) {
    let best = 0;
    let bestValue = -Infinity;
    candidates.forEach((_, i) => {
      const train = skabRuns[i].filter((_, k) => k !== f).reduce(add, NO_COUNTS);
      const v = skabObjective(train);
      if (v > bestValue) [best, bestValue] = [i, v];
    });
    skabPicks.push(best);
    held = add(held, skabRuns[best][f]);
  }
  // NAB: leave one category out; candidate and threshold are chosen on the other categories.
  const categories = [...new Set(nabKeys.map((k) => k.split('/')[0]))];
  let heldRaw = 0;
  let heldWindows = 0;
  const nabPicks: string[] = [];
  for (const category of categories) {
    const train = nabKeys.filter((k) => !k.startsWith(`${category}/`));
    const test = nabKeys.filter((k) => k.startsWith(`${category}/`));
    let best = 0;
    let bestResult: NabResult | null = null;
    for (let i = 0; i < candidates.length; i++) {
      const r = await nabScore(scorer, nabDirs[i], train);
      if (!bestResult || r.score > bestResult.score) [best, bestResult] = [i, r];
    }
    const threshold = (bestResult as NabResult).threshold;
    const testWindows = test.reduce((a, k) => a + (windows.get(k) ?? 0), 0);
    // The scorer cannot normalise a set without windows: there every detection is a false one.
    const raw = testWindows
      ? [...(await nabScore(scorer, nabDirs[best], test, threshold)).raw.values()].reduce((a, b) => a + b, 0)
      : -NAB_FP_COST * (await falseDetections(nabDirs[best], test, threshold));
    heldRaw += raw;
    heldWindows += testWindows;
    nabPicks.push(`${category}: [${best}] at threshold ${(bestResult as NabResult).threshold.toFixed(3)}`);
  }
  const inSample = candidates.map((_, i) => skabRuns[i].reduce(add, NO_COUNTS));
  const bestIn = inSample.reduce((b, c, i) => (skabObjective(c) > skabObjective(inSample[b]) ? i : b), 0);
  const h = metrics(held);
  const b = metrics(inSample[bestIn]);
  console.log('');
  console.log('| figure | SKAB valve1 F1 | FAR % | NAB standard |');
  console.log('|---|---|---|---|');
  console.log(
    `| in-sample, best SKAB candidate [${bestIn}] | ${b.f1.toFixed(3)} | ${(b.far * 100).toFixed(2)} | ` +
      `${(await nabScore(scorer, nabDirs[bestIn])).score.toFixed(2)} |`,
  );
  console.log(
    `| held out (selection inside each fold) | ${h.f1.toFixed(3)} | ${(h.far * 100).toFixed(2)} | ` +
      `${normalised(heldRaw, heldWindows).toFixed(2)} |`,
  );
  console.log('');
  console.log(`SKAB picks per held-out file: ${skabPicks.map((p) => `[${p}]`).join(' ')}`);
  console.log(`NAB picks per held-out category: ${nabPicks.join('; ')}`);
  await fs.rm(work, { recursive: true, force: true });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.cv) await crossValidate(args);
  else if (args.stream) await stream(args);
  else await skab(args);
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : err);
  process.exitCode = 1;
});
