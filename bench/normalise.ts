// Throughput of the normaliser per sample: the cost edge-normalise adds to a sensor stream.
// Run: npm run bench:normalise
import { Normaliser, type NormaliserOptions } from '../lib/preprocess/normaliser';

interface Case {
  name: string;
  options: NormaliserOptions;
  input: (i: number) => unknown;
}

const object3 = (i: number) => ({
  temperature: 20 + Math.sin(i / 50),
  humidity: 40 + (i % 7),
  pressure: 1012 + (i % 3),
});
const array6 = (i: number) => [i % 5, Math.sin(i), Math.cos(i), 9.81 + (i % 3) / 10, i % 11, -(i % 13)];

const cases: Case[] = [
  {
    name: 'object x3, first-n (frozen)',
    options: { method: 'zscore', source: 'first-n', learnCount: 100 },
    input: object3,
  },
  {
    name: 'object x3, welford (continuous)',
    options: { method: 'zscore', source: 'welford' },
    input: object3,
  },
  {
    name: 'object x3, ewma (continuous)',
    options: { method: 'minmax', source: 'ewma', alpha: 0.05 },
    input: object3,
  },
  {
    name: 'array x6, fixed, clip',
    options: { method: 'minmax', source: 'fixed', given: { min: [-20], max: [20] }, clip: true },
    input: array6,
  },
  {
    name: 'array x6, first-n, window 50/1',
    options: { method: 'zscore', source: 'first-n', learnCount: 100, windowSize: 50, windowStride: 1 },
    input: array6,
  },
  {
    name: 'array x6, first-n, window 50/25',
    options: { method: 'zscore', source: 'first-n', learnCount: 100, windowSize: 50, windowStride: 25 },
    input: array6,
  },
];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const samples = Number(process.argv[2] ?? 20000);
const rounds = 5;
console.log(`edge-normalise throughput, ${samples} samples per round, median of ${rounds} rounds`);
console.log('| case | µs/sample | samples/s |');
console.log('|---|---:|---:|');
for (const c of cases) {
  const inputs = Array.from({ length: samples }, (_, i) => c.input(i));
  const times: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const n = new Normaliser(c.options);
    const start = process.hrtime.bigint();
    for (const input of inputs) n.process(input);
    times.push(Number(process.hrtime.bigint() - start) / 1e3 / samples);
  }
  const us = median(times);
  console.log(`| ${c.name} | ${us.toFixed(2)} | ${Math.round(1e6 / us).toLocaleString('en-US')} |`);
}
