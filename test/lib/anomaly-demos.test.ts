import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { AnomalyDetector } from '../../lib/anomaly/detector';
import { detectPayload } from '../../lib/anomaly/message';
import {
  Normaliser,
  type BadValuePolicy,
  type NormaliserOptions,
  type StatsSource,
} from '../../lib/preprocess/normaliser';
import type { ScalingMethod } from '../../lib/preprocess/scaling';
import {
  SimClock,
  createSimulatedSource,
  parseFault,
  type FaultSpec,
  type SimulatedDevice,
} from '../../lib/sensors';
import { parseOptions as anomalyOptions } from '../../nodes/edge-anomaly/settings';
import { parseEdgeSensorFields, type EdgeSensorFields } from '../../nodes/edge-sensor/settings';

/**
 * The demo flows, run as their sensor -> edge-normalise -> edge-anomaly chain with the settings
 * in the example files, on the device simulators in simulated time (minutes take a second).
 * For every seed: no alarm before the simulated fault starts, and each fault flagged within
 * 60 s of its start (an alarm naming its channel, unless an earlier fault's alarm is still on).
 * A fault starts at the first reading it changes: the simulator's physical values are compared
 * with a run of the same seed without faults.
 */

/** The package root (this file runs from dist/test/lib/). */
const EXAMPLES = path.resolve(__dirname, '..', '..', '..', 'examples');
const DETECTED_WITHIN_MS = 60_000;
/** Ten simulator seeds; seed k deploys at k * 2.4 h into the day, so the runs cover a whole day. */
const SEEDS = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10];
const deployTime = (seed: number): number => Date.UTC(2024, 5, 1) + seed * 2.4 * 3600_000;
/** Simulated time after the last fault is set to start, for faults that start at random (spikes). */
const FAULT_SEARCH_MS = 5 * 60_000;

type FlowNode = Record<string, unknown> & { id: string; type: string; wires?: string[][] };

function readExample(prefix: string): FlowNode[] {
  const file = readFileSync(path.join(EXAMPLES, `${prefix}.json`), 'utf8');
  return JSON.parse(file) as FlowNode[];
}

function wiredFrom(flow: FlowNode[], from: FlowNode, type: string): FlowNode {
  const targets = new Set((from.wires ?? []).flat());
  const node = flow.find((n) => n.type === type && targets.has(n.id));
  assert.ok(node, `no ${type} wired from ${from.id}`);
  return node;
}

// Editor fields as edge-normalise reads them (blank = the dialog's default).
function num(value: unknown, fallback: number): number {
  if (value === '' || value === undefined || value === null) return fallback;
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

function list(value: unknown): string[] {
  return typeof value === 'string'
    ? value
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean)
    : [];
}

/** What nodes/edge-normalise makes of its fields. */
function normaliserOptions(n: FlowNode): NormaliserOptions {
  const windowSize = num(n.windowSize, 0);
  return {
    method: (n.method || 'zscore') as ScalingMethod,
    range: n.range === '-1,1' ? [-1, 1] : [0, 1],
    source: (n.source || 'first-n') as StatsSource,
    learnCount: num(n.learnCount, 100),
    alpha: num(n.alpha, 0.05),
    given: {
      mean: list(n.mean).map(Number),
      std: list(n.std).map(Number),
      min: list(n.min).map(Number),
      max: list(n.max).map(Number),
    },
    clip: n.clip === true,
    zLimit: num(n.zLimit, 3),
    badValues: (n.badValues || 'reject') as BadValuePolicy,
    emitWhileLearning: n.emitWhileLearning !== false,
    channels: list(n.channels),
    windowSize,
    windowStride: windowSize > 0 ? num(n.windowStride, 1) : 1,
  };
}

interface Demo {
  sensor: FlowNode;
  normalise: FlowNode;
  anomaly: FlowNode;
  /** Faults sent to the sensor by inject nodes ("once" after a delay). */
  injected: { afterMs: number; fault: FaultSpec }[];
}

function demoChain(flow: FlowNode[]): Demo {
  const sensor = flow.find((n) => n.type === 'edge-sensor');
  assert.ok(sensor, 'no edge-sensor');
  const normalise = wiredFrom(flow, sensor, 'edge-normalise');
  const anomaly = wiredFrom(flow, normalise, 'edge-anomaly');
  const injected = flow
    .filter((n) => n.type === 'inject' && (n.wires ?? []).flat().includes(sensor.id))
    .map((n) => {
      const prop = (n.props as { p: string; v: string }[]).find((p) => p.p === 'fault');
      assert.ok(prop && n.once === true, `${n.id} should send a fault once`);
      return { afterMs: num(n.onceDelay, 0.1) * 1000, fault: parseFault(JSON.parse(prop.v)) };
    });
  return { sensor, normalise, anomaly, injected };
}

interface Reading {
  /** Time since deploy, ms. */
  t: number;
  timestamp: number;
  /** null when the read failed (the node then sends nothing and reads again next time). */
  payload: Record<string, number> | null;
  /** The simulator's physical values behind the reading. */
  truth: Record<string, number>;
}

/** The sensor node's readings over `durationMs` of simulated time, with or without the faults. */
async function readings(demo: Demo, seed: number, durationMs: number, faults: boolean): Promise<Reading[]> {
  const fields = { ...(demo.sensor as EdgeSensorFields), simSeed: String(seed) };
  const settings = parseEdgeSensorFields(faults ? fields : { ...fields, simFault: 'none' });
  const start = deployTime(seed);
  const clock = new SimClock(start);
  const { device, simulate, ...options } = settings.source;
  assert.equal(simulate, true, 'the demo runs on the simulator');
  const source = createSimulatedSource(device as SimulatedDevice, { ...options, clock });
  const pending = faults ? demo.injected.slice() : [];
  const out: Reading[] = [];
  try {
    for (let t = 0; t <= durationMs; t += settings.intervalMs) {
      if (clock.now() < start + t) clock.advance(start + t - clock.now());
      while (pending.length && pending[0].afterMs <= t) source.injectFault(pending.shift()!.fault);
      // The simulated BME280 now and then returns the raw value that means "skipped".
      const reading = await source.read().catch(() => null);
      const truth = (source.sim as unknown as { lastTruth: Record<string, number> }).lastTruth;
      out.push({
        t,
        timestamp: clock.now(),
        payload: reading ? (reading.payload as Record<string, number>) : null,
        truth: { ...truth },
      });
    }
  } finally {
    await source.close();
  }
  return out;
}

interface FaultStart {
  what: string;
  /** The channels the fault acts on (null: every channel). */
  channels: string[] | null;
  /** Time since deploy of the first reading it changes, ms. */
  at: number;
}

async function faultStarts(demo: Demo, seed: number): Promise<{ faulty: Reading[]; starts: FaultStart[] }> {
  const settings = parseEdgeSensorFields(demo.sensor as EdgeSensorFields);
  const faults = [
    ...(settings.source.sim?.faults ?? []).map((fault) => ({ afterMs: 0, fault })),
    ...demo.injected,
  ];
  assert.ok(faults.length > 0, 'the demo simulates a fault');
  const span = Math.max(...faults.map((f) => f.afterMs + (f.fault.afterMs ?? 0))) + FAULT_SEARCH_MS;
  const faulty = await readings(demo, seed, span, true);
  const clean = await readings(demo, seed, span, false);
  const starts = faults.map(({ fault }) => {
    const channels = fault.channel ? [fault.channel] : null;
    const i = faulty.findIndex((r, k) =>
      (channels ?? Object.keys(r.truth)).some((c) => Math.abs(r.truth[c] - clean[k].truth[c]) > 1e-9),
    );
    const what = `${fault.type}${fault.channel ? ` on ${fault.channel}` : ''}`;
    assert.ok(i >= 0, `seed ${seed}: the ${what} never showed`);
    return { what, channels, at: faulty[i].t };
  });
  return { faulty, starts };
}

interface Outcome {
  t: number;
  learning: boolean;
  isAnomaly: boolean;
  score: number;
  top?: string;
}

/**
 * Feeds the readings through the example's edge-normalise and edge-anomaly settings. The rows
 * of a window go in one by one, all queued at once: the detector then scores them in batches,
 * with the same results as the node's one 2-D payload per window (whose message is anomalous
 * when any of its rows is).
 */
async function detect(demo: Demo, readings: Reading[]): Promise<Outcome[]> {
  const normaliser = new Normaliser(normaliserOptions(demo.normalise));
  const { channels, ...options } = anomalyOptions(demo.anomaly);
  const detector = new AnomalyDetector(options);
  const pending: Promise<Outcome>[] = [];
  try {
    for (const reading of readings) {
      if (!reading.payload) continue;
      for (const out of normaliser.process(reading.payload).outputs) {
        const samples =
          Array.isArray(out.payload) && Array.isArray(out.payload[0]) ? out.payload : [out.payload];
        for (const sample of samples)
          pending.push(
            detectPayload(detector, sample, reading.timestamp, channels).then((r) => ({
              t: reading.t,
              learning: r.learning,
              isAnomaly: r.isAnomaly,
              score: r.score,
              top: r.details.top,
            })),
          );
      }
    }
    return await Promise.all(pending);
  } finally {
    await detector.dispose();
  }
}

/** What went wrong with one seed (empty: nothing). */
async function checkSeed(demo: Demo, seed: number): Promise<string[]> {
  const problems: string[] = [];
  const { faulty, starts } = await faultStarts(demo, seed);
  const first = Math.min(...starts.map((s) => s.at));
  const last = Math.max(...starts.map((s) => s.at));
  const outcomes = await detect(
    demo,
    faulty.filter((r) => r.t <= last + DETECTED_WITHIN_MS),
  );
  const ready = outcomes.find((o) => !o.learning);
  if (!ready || ready.t >= first)
    return [`seed ${seed}: still learning when the fault starts at ${first / 1000} s`];
  const early = outcomes.find((o) => o.t < first && o.isAnomaly);
  if (early)
    problems.push(
      `seed ${seed}: alarm at ${early.t / 1000} s (score ${early.score.toFixed(2)}, ${early.top}), ` +
        `the fault starts at ${first / 1000} s`,
    );
  for (const start of starts) {
    // A fault that starts while an earlier one is being alarmed adds to an alert already shown.
    const alerting = outcomes.filter((o) => o.t < start.at).pop()?.isAnomaly === true;
    const hit = outcomes.find(
      (o) =>
        o.isAnomaly &&
        o.t >= start.at &&
        o.t <= start.at + DETECTED_WITHIN_MS &&
        (start.channels === null || alerting || start.channels.some((c) => o.top?.includes(c))),
    );
    if (!hit) problems.push(`seed ${seed}: ${start.what} from ${start.at / 1000} s not flagged within 60 s`);
  }
  return problems;
}

/** Runs the seeds two at a time (the autoencoder trains in a worker per detector). */
async function checkDemo(prefix: string, seeds: readonly number[]): Promise<void> {
  const demo = demoChain(readExample(prefix));
  const queue = seeds.slice();
  const problems: string[] = [];
  const lane = async (): Promise<void> => {
    for (let seed = queue.shift(); seed !== undefined; seed = queue.shift())
      problems.push(...(await checkSeed(demo, seed)));
  };
  await Promise.all([lane(), lane()]);
  assert.deepEqual(problems, []);
}

describe('demo flows: no false alarm before the simulated fault, detection within 60 s', function () {
  it('01 smart home (BME280, temperature spikes and a humidity drift), ten seeds', async function () {
    this.timeout(60000);
    await checkDemo('01 - Smart home comfort and alerts', SEEDS);
  });

  it('02 predictive maintenance (MPU6050 bearing wear, dense autoencoder), ten seeds', async function () {
    // The autoencoder trains in a worker once per seed.
    this.timeout(120000);
    await checkDemo('02 - Predictive maintenance dashboard', SEEDS);
  });
});
