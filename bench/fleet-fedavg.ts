/**
 * Federated MNIST, non-IID (FedAvg, McMahan et al. 2017): the training digits of bench:mnist
 * sorted by digit, cut into 200 shards, two shards per device, so each of 100 devices holds about
 * two digit classes. Every device is a light client running the library code the nodes run
 * (FleetConnection, FederatedClient: the signed global version fetched and stored on its own
 * store on disk, its update quantized and published); the training runs in the project's
 * training worker threads, a pool sized for the machine shared by the devices. The aggregator
 * (FederatedAggregator) asks a fraction C of the online devices each round, averages by sample
 * count and publishes the next global version signed.
 *
 * Measured: held-out accuracy of the global model after every round (the 2000 class-balanced
 * held-out digits of bench:mnist), rounds and wall time until 97 %, against centralized training
 * of the same model on all the training digits (bench:mnist's settings) in the same run; bytes
 * each device sends per round as uint8 versus float32. Faults: 10 % of the devices killed
 * mid-round (the round completes at its deadline with the others), an update with NaN weights
 * (refused).
 *
 * Settings (not tuned on the held-out digits): E = 5 local epochs, B = 10, plain SGD with
 * learning rate 0.1 (McMahan et al.'s values for the MNIST CNN), plain FedAvg on the server;
 * C = 0.2, within McMahan et al.'s range (0.1 to 1.0), chosen with --validation runs (digits carved
 * from the training digits) against C = 0.1 and against server momentum (FedAvgM, Hsu et al. 2019);
 * a constant client learning rate: decay per round announced by the aggregator (--decay; Li et al.
 * 2020, "On the convergence of FedAvg on non-IID data") at 0.95 and 0.97, fewer local epochs (E = 2)
 * and devices training on shifted digits (--augment 2) did not beat it in --validation runs; nor did
 * the label-skew corrections of the devices' loss (--skew restricted-softmax: FedRS, Li and Zhan 2021;
 * --skew logit-calibration: FedLC, Zhang et al. 2022), FedRS with server momentum, FedProx's
 * proximal term (--prox, Li et al. 2020), 15 local epochs or float32 updates.
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import type { TestBroker } from '../test/helpers/mqtt-brokers';
import { FleetConnection } from '../lib/fleet/connection';
import {
  artifactWeights,
  encodeUpdate,
  readStoredWeights,
  type UpdateEncoding,
} from '../lib/fleet/federated';
import { FederatedAggregator, saveInitialModel, type RoundSummary } from '../lib/fleet/federated-aggregator';
import { FederatedClient, type FederatedRound } from '../lib/fleet/federated-client';
import { generateFleetKeys, readPrivateKey, readPublicKey } from '../lib/fleet/keys';
import { fileLoadHandler, fileSaveHandler, tf, useBackend } from '../lib/models/runtime/tfjs';
import { ModelStore } from '../lib/models/store/store';
import { trainingWorkerClient } from '../lib/train/training-worker';
import type { TrainResult, TrainSettings } from '../lib/train/trainer';
import type { WorkerClient } from '../lib/util/worker-rpc';
import { labelSkewAdjust, type LabelSkewCorrection } from '../lib/train/logit-adjust';
import { seededRandom } from '../lib/util/random';
import { MNIST_TRAINING, balancedSets, type Digit } from './train-data';

export interface FedAvgOptions {
  broker: TestBroker;
  quick: boolean;
  devices: number;
  rounds: number;
  target: number;
  epochs: number;
  batch: number;
  fraction: number;
  learningRate: number;
  /** Server momentum of the aggregator (FedAvgM; 0: plain FedAvg) and its server learning rate. */
  serverMomentum: number;
  serverLearningRate: number;
  /** Client learning-rate decay per round announced by the aggregator (1: none). */
  learningRateDecay: number;
  /** Devices train on copies of their digits shifted by up to this many pixels (0: none). */
  augmentShift: number;
  /** The label-skew correction of the devices' local training (FedRS, FedLC; method 'none': off). */
  labelSkew: LabelSkewCorrection;
  /** FedProx's mu on the devices (0: none). */
  proximal: number;
  /**
   * Digits carved from the training digits (class-balanced) to measure on instead of the
   * held-out digits, to compare settings without looking at the held-out digits; 0: held-out.
   */
  validation: number;
  encoding: UpdateEncoding;
  central: boolean;
  threads: number;
}

const SIZES = { filters: [32, 64], units: [64], kernelSize: 3 };
const LABELS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];

interface Device {
  id: string;
  x: Float32Array;
  y: Float32Array;
  connection: FleetConnection;
  client: FederatedClient;
  killed: boolean;
  sent: number[];
}

/** A pool of training worker threads: jobs wait for a free one. */
class Pool {
  private readonly free: WorkerClient[] = [];
  private readonly waiting: ((w: WorkerClient) => void)[] = [];
  private readonly all: WorkerClient[] = [];
  constructor(size: number) {
    for (let i = 0; i < size; i++) {
      const w = trainingWorkerClient();
      this.all.push(w);
      this.free.push(w);
    }
  }
  async run<T>(job: (w: WorkerClient) => Promise<T>): Promise<T> {
    const w = this.free.pop() ?? (await new Promise<WorkerClient>((r) => this.waiting.push(r)));
    try {
      return await job(w);
    } finally {
      const next = this.waiting.shift();
      if (next) next(w);
      else this.free.push(w);
    }
  }
  async close(): Promise<void> {
    await Promise.all(this.all.map((w) => w.terminate()));
  }
}

function toArrays(digits: Digit[]): { x: Float32Array; y: Float32Array } {
  return {
    x: Float32Array.from(digits.flatMap((d) => d.input)),
    y: Float32Array.from(digits.map((d) => d.output.indexOf(1))),
  };
}

/** Sorted by digit, cut into 2 x devices shards, two random shards per device. */
function nonIid(training: Digit[], devices: number, seed: number): Digit[][] {
  const sorted = [...training].sort((a, b) => a.output.indexOf(1) - b.output.indexOf(1));
  const shards = devices * 2;
  const size = Math.floor(sorted.length / shards);
  const order = Array.from({ length: shards }, (_, i) => i);
  const rand = seededRandom(seed);
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
  const shard = (k: number): Digit[] =>
    sorted.slice(k * size, k === shards - 1 ? sorted.length : (k + 1) * size);
  return Array.from({ length: devices }, (_, d) => [...shard(order[2 * d]), ...shard(order[2 * d + 1])]);
}

async function accuracyOf(modelJson: string, test: Digit[]): Promise<number> {
  const model = await tfl.loadLayersModel(fileLoadHandler(modelJson));
  let correct = 0;
  for (let start = 0; start < test.length; start += 500) {
    const batch = test.slice(start, start + 500);
    const predicted = tf.tidy(() =>
      tf.argMax(
        model.predict(
          tf.tensor(
            batch.flatMap((d) => d.input),
            [batch.length, 28, 28],
          ),
        ) as tf.Tensor,
        -1,
      ),
    );
    const labels = await predicted.data();
    predicted.dispose();
    batch.forEach((d, i) => {
      if (d.output[labels[i]] === 1) correct++;
    });
  }
  model.dispose();
  return correct / test.length;
}

function table(header: string[], rows: string[][]): void {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  console.log(line(header));
  console.log(`| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`);
  for (const r of rows) console.log(line(r));
}

const serverStep = (o: FedAvgOptions): string =>
  (o.serverMomentum === 0 && o.serverLearningRate === 1
    ? 'FedAvg'
    : `FedAvgM (momentum ${o.serverMomentum}, server lr ${o.serverLearningRate})`) +
  (o.learningRateDecay === 1 ? '' : `, lr decay ${o.learningRateDecay}/round`) +
  (o.augmentShift > 0 ? `, devices shift digits by up to ${o.augmentShift} px` : '') +
  (o.labelSkew.method === 'none'
    ? ''
    : `, devices train with ${o.labelSkew.method} ${o.labelSkew.strength}`) +
  (o.proximal > 0 ? `, FedProx mu ${o.proximal}` : '');

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)] ?? NaN;

/** Runs the federated part; resolves with the problems found (empty: every check passed). */
export async function runFedAvg(o: FedAvgOptions): Promise<string[]> {
  const problems: string[] = [];
  const check = (ok: boolean, what: string): void => {
    console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
    if (!ok) problems.push(what);
  };
  const sets = o.quick ? balancedSets(1000, 500) : balancedSets(8000, 2000);
  let { training, test, how } = sets;
  if (o.validation > 0) {
    const per = Math.floor(o.validation / 10);
    const taken = new Set<Digit>();
    for (let c = 0; c < 10; c++) {
      for (const d of training.filter((x) => x.output[c] === 1).slice(0, per)) taken.add(d);
    }
    test = training.filter((d) => taken.has(d));
    training = training.filter((d) => !taken.has(d));
    how =
      `VALIDATION run: ${test.length} digits (${per} of each class) carved from the training digits are ` +
      `measured on instead of the held-out digits, which this run never looks at; ${training.length} training digits left.`;
  }
  console.log(
    `\nFederated MNIST (FedAvg), non-IID: ${training.length} training digits on ${o.devices} devices, ${test.length} held out`,
  );
  console.log(how);
  const keys = generateFleetKeys();
  const privateKey = readPrivateKey(keys.privateKey);
  const publicKey = readPublicKey(keys.publicKey);
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-fedavg-'));
  const fleet = `fedavg${Date.now()}`;
  const pool = new Pool(o.threads);
  const devices: Device[] = [];
  let stopping = false;
  let aggregator: FederatedAggregator | undefined;
  let aggConnection: FleetConnection | undefined;
  await useBackend(['wasm', 'cpu']);
  try {
    const shards = nonIid(training, o.devices, 3);
    const classes = shards.map((s) => new Set(s.map((d) => d.output.indexOf(1))).size);
    console.log(
      `per device: ${median(shards.map((s) => s.length))} digits (median), digit classes per device: median ${median(classes)}, max ${Math.max(...classes)}`,
    );
    console.log(
      `local training: E=${o.epochs} epochs, B=${o.batch}, SGD lr ${o.learningRate}; C=${o.fraction} of the devices per round; ` +
        `server ${serverStep(o)}; updates ${o.encoding}; ${o.threads} training thread(s) shared by the devices; broker ${o.broker.kind}`,
    );
    const store = new ModelStore(path.join(root, 'aggregator', 'models'), { keep: 3 });
    await saveInitialModel(store, 'digits', {
      architecture: 'mnist-cnn',
      inputShape: [28, 28],
      labels: LABELS,
      sizes: SIZES,
      seed: 1,
    });

    // The devices first, so the aggregator's first selection sees them online.
    const settings: TrainSettings = {
      task: 'classification',
      optimizer: 'sgd',
      learningRate: o.learningRate,
      batchSize: o.batch,
      epochs: o.epochs,
      validationSplit: 0,
      augmentShift: o.augmentShift > 0 ? o.augmentShift : undefined,
      backend: 'wasm',
      threads: 1,
    };
    const rounds = new Map<number, { trainMs: number[] }>();
    const onRound = (device: Device, r: FederatedRound): void => {
      if (device.killed) return;
      void pool
        .run(async (w) => {
          // A device that already has a newer global version drops the older round.
          if (device.killed || device.client.hasReported(r.round) || device.client.current?.round !== r.round)
            return;
          const started = performance.now();
          const result = await w.request<TrainResult>('train', {
            settings: {
              ...settings,
              learningRate: settings.learningRate * r.learningRateScale,
              seed: r.round * 1000 + Number(device.id.slice(1)),
              logitAdjust: labelSkewAdjust(o.labelSkew, device.y, LABELS.length),
              proximal: o.proximal > 0 ? o.proximal : undefined,
              base: { modelJsonPath: path.join(r.stored.dir, r.stored.meta.entry), freeze: 0, whole: true },
            },
            data: {
              x: device.x.slice(),
              y: device.y.slice(),
              count: device.y.length,
              inputShape: [28, 28],
              outputSize: 10,
            },
          });
          rounds.get(r.round)?.trainMs.push(performance.now() - started);
          if (device.killed) return;
          const local = artifactWeights(result.artifacts.weightSpecs, result.artifacts.weightData);
          const sent = await device.client.sendUpdate(r, local, device.y.length, {
            encoding: o.encoding,
            metrics: { accuracy: result.metrics.accuracy },
          });
          device.sent.push(sent.bytes);
        })
        .catch((err: unknown) => {
          if (!device.killed && !stopping)
            console.error(`${device.id} round ${r.round}: ${(err as Error).message}`);
        });
    };
    for (let i = 0; i < o.devices; i++) {
      const id = `d${i}`;
      const connection = new FleetConnection({ url: o.broker.url, fleet, deviceId: id, reconnectMs: 1000 });
      await connection.waitConnected(30000);
      const client = new FederatedClient(connection, {
        name: 'digits',
        store: new ModelStore(path.join(root, id), { keep: 2 }),
        publicKey,
        maxBytes: 50e6,
      });
      const { x, y } = toArrays(shards[i]);
      const device: Device = { id, x, y, connection, client, killed: false, sent: [] };
      client.on('round', (r: FederatedRound) => onRound(device, r));
      client.on('refused', (err: Error) => console.error(`${id}: ${err.message}`));
      await client.start();
      devices.push(device);
    }

    aggConnection = new FleetConnection({ url: o.broker.url, fleet, deviceId: 'aggregator' });
    await aggConnection.waitConnected();
    // Devices' online messages reach the aggregator once it subscribes (retained).
    aggregator = new FederatedAggregator(aggConnection, {
      name: 'digits',
      store,
      stateFile: path.join(root, 'aggregator', 'round.json'),
      privateKey,
      // Round 1 starts from a version published before any device was seen: every device is
      // asked, and it closes with C of them; later rounds close when every device asked reported.
      minReports: o.fraction < 1 ? Math.max(1, Math.round(o.fraction * o.devices)) : o.devices,
      roundMs: 30 * 60_000,
      fraction: o.fraction,
      serverMomentum: o.serverMomentum,
      serverLearningRate: o.serverLearningRate,
      learningRateDecay: o.learningRateDecay,
      random: seededRandom(17),
    });
    const summaries: RoundSummary[] = [];
    let refusedNaN: Error | undefined;
    aggregator.on('refused', (err: Error) => (refusedNaN = err));
    const accepted = new Map<number, string[]>();
    aggregator.on('accepted', (device: string, header: { round: number }) => {
      const list = accepted.get(header.round) ?? [];
      list.push(device);
      accepted.set(header.round, list);
    });
    aggregator.on('failed', (err: Error) => console.error(`aggregator: ${err.message}`));
    const waiters: (() => void)[] = [];
    aggregator.on('closed', (s: RoundSummary) => {
      summaries.push(s);
      for (const w of waiters.splice(0)) w();
    });
    aggregator.on('round', (info: { round: number }) => rounds.set(info.round, { trainMs: [] }));
    /** The summary of the `n`-th round to close (1-based), once it has. */
    const closed = async (n: number): Promise<RoundSummary> => {
      while (summaries.length < n) await new Promise<void>((r) => waiters.push(r));
      return summaries[n - 1];
    };

    // The first selection needs the devices online: wait until the aggregator sees them all.
    const t0 = performance.now();
    await aggregator.start();
    // Round 1 asks every device (no selection yet); later rounds ask C of them.
    const rows: string[][] = [];
    let reached: { round: number; seconds: number; accuracy: number } | undefined;
    let lastAccuracy = 0;
    const roundMs: number[] = [];
    for (let n = 1; n <= o.rounds; n++) {
      const summary = await closed(n);
      aggregator.options.minReports = o.devices;
      roundMs.push(summary.ms);
      const stored = (await store.get('digits', summary.version))!;
      lastAccuracy = await accuracyOf(path.join(stored.dir, 'model.json'), test);
      const seconds = (performance.now() - t0) / 1000;
      const bytes = median(devices.flatMap((d) => d.sent.slice(-1)));
      rows.push([
        String(n),
        String(summary.reports),
        String(summary.samples),
        `${(lastAccuracy * 100).toFixed(2)} %`,
        (roundMs[roundMs.length - 1] / 1000).toFixed(1),
        seconds.toFixed(0),
        String(bytes),
      ]);
      console.log(
        `round ${n}: ${summary.reports} updates, ${summary.samples} samples, ${o.validation > 0 ? 'validation' : 'held-out'} accuracy ${(lastAccuracy * 100).toFixed(2)} %, ${seconds.toFixed(0)} s`,
      );
      if (!reached && lastAccuracy >= o.target) {
        reached = { round: n, seconds, accuracy: lastAccuracy };
        if (!o.quick) break;
      }
    }
    const fedSeconds = (performance.now() - t0) / 1000;

    // Bytes per device per round: the same update as uint8, float16 and float32.
    const any = devices.find((d) => d.sent.length > 0)!;
    const lastStored = (await store.get('digits'))!;
    const g = await readStoredWeights(lastStored);
    const sizes = Object.fromEntries(
      (['uint8', 'float16', 'float32'] as const).map((e) => [
        e,
        encodeUpdate({ fleet, name: 'digits', device: any.id, round: 1, samples: 1 }, g.specs, g.values, {
          encoding: e,
        }).payload.length,
      ]),
    );

    // Faults: 10 % of the devices killed mid-round; an update with NaN weights.
    const fault = aggregator.info!;
    const selected = fault.selected ?? devices.map((d) => d.id);
    const reported = new Set(accepted.get(fault.round) ?? []);
    const pending = selected.filter((id) => !reported.has(id));
    const kill = new Set<string>(pending.slice(0, Math.max(1, Math.round(selected.length / 5))));
    for (const d of devices) {
      if (kill.size >= Math.max(1, Math.round(o.devices / 10))) break;
      if (!selected.includes(d.id)) kill.add(d.id);
    }
    aggregator.options.minReports = o.devices;
    const faultStart = performance.now();
    const deadlineMs = Math.max(5000, 3 * median(roundMs));
    aggregator.deadlineIn(deadlineMs);
    for (const d of devices) {
      if (!kill.has(d.id)) continue;
      d.killed = true;
      d.connection.client.end(true); // no goodbye: the broker's last will says offline
    }
    const victim = devices.find((d) => pending.includes(d.id) && !d.killed);
    if (victim) {
      const nan = g.values.map((v) => v.map(() => NaN));
      const { payload } = encodeUpdate(
        { fleet, name: 'digits', device: victim.id, round: fault.round, samples: 50 },
        g.specs,
        nan,
        { encoding: 'float32' },
      );
      await victim.connection.publish(victim.client.topics.update(victim.id), payload);
    }
    const faultSummary = await closed(summaries.length + 1);
    const killedSelected = selected.filter((id) => kill.has(id)).length;
    const expected = selected.length - killedSelected;
    console.log(
      `\nfault round ${fault.round}: ${kill.size} of ${o.devices} devices killed mid-round (${killedSelected} of the ${selected.length} asked); ` +
        `closed by ${faultSummary.closedBy} after ${((performance.now() - faultStart) / 1000).toFixed(1)} s (deadline ${(deadlineMs / 1000).toFixed(0)} s) with ${faultSummary.reports} updates`,
    );
    check(
      faultSummary.reports === expected,
      `the round completes with the ${expected} updates of the devices left (${faultSummary.reports})`,
    );
    check(
      faultSummary.closedBy === 'deadline',
      'the round closed at its deadline, not blocked by the killed devices',
    );
    check(
      refusedNaN !== undefined && /NaN/.test(refusedNaN.message),
      `an update with NaN weights is refused: ${refusedNaN?.message ?? 'not refused'}`,
    );
    check(summaries.length >= Math.min(o.rounds, 1) + 1, `${summaries.length} rounds closed`);
    check(
      sizes.float32 / sizes.uint8 > 3.5,
      `uint8 updates ${(sizes.float32 / sizes.uint8).toFixed(2)}x smaller than float32`,
    );
    if (!o.quick)
      check(reached !== undefined, `global model reaches ${o.target * 100} % within ${o.rounds} rounds`);

    let central: { accuracy: number; seconds: number } | undefined;
    if (o.central) {
      console.log('\nCentralized: the same model on all the training digits, as bench:mnist trains it...');
      const started = performance.now();
      const all = toArrays(training);
      const result = await pool.run((w) =>
        w.request<TrainResult>('train', {
          settings: {
            ...MNIST_TRAINING,
            task: 'classification',
            architecture: 'mnist-cnn',
            threads: 1,
          } satisfies TrainSettings,
          data: { ...all, count: training.length, inputShape: [28, 28], outputSize: 10 },
        }),
      );
      const seconds = (performance.now() - started) / 1000;
      const model = await tfl.loadLayersModel(
        tf.io.fromMemory({
          modelTopology: result.artifacts.modelTopology,
          weightSpecs: result.artifacts.weightSpecs,
          weightData: result.artifacts.weightData,
        }),
      );
      const dir = path.join(root, 'central');
      await fs.mkdir(dir, { recursive: true });
      await model.save(fileSaveHandler(dir));
      model.dispose();
      central = { accuracy: await accuracyOf(path.join(dir, 'model.json'), test), seconds };
    }

    console.log(`\nPer round (global model on the ${o.validation > 0 ? 'validation' : 'held-out'} digits):`);
    table(
      [
        'round',
        'updates',
        'samples',
        'accuracy',
        'round s',
        'total s',
        `bytes sent per device (${o.encoding})`,
      ],
      rows,
    );
    console.log('');
    table(
      ['training', `rounds to ${(o.target * 100).toFixed(0)} %`, 'wall time', 'final accuracy'],
      [
        [
          `federated, ${o.devices} devices, non-IID, C=${o.fraction}, E=${o.epochs}, B=${o.batch}, ${serverStep(o)}`,
          reached ? String(reached.round) : `not within ${rows.length}`,
          `${(reached?.seconds ?? fedSeconds).toFixed(0)} s`,
          `${(lastAccuracy * 100).toFixed(2)} %`,
        ],
        ...(central
          ? [
              [
                'centralized, all digits (15 epochs, Adam)',
                '-',
                `${central.seconds.toFixed(0)} s`,
                `${(central.accuracy * 100).toFixed(2)} %`,
              ],
            ]
          : []),
      ],
    );
    console.log('');
    table(
      ['update encoding', 'bytes per device per round', 'vs float32'],
      (['uint8', 'float16', 'float32'] as const).map((e) => [
        e,
        String(sizes[e]),
        `${(sizes.float32 / sizes[e]).toFixed(2)}x smaller`,
      ]),
    );
    console.log(
      `(the global model a device downloads each round: ${lastStored.meta.files.reduce((s, f) => s + f.bytes, 0)} bytes)`,
    );
    console.log(
      `median local training per device and round: ${(median([...rounds.values()].flatMap((r) => r.trainMs)) / 1000).toFixed(2)} s`,
    );
  } finally {
    stopping = true;
    await aggregator?.close();
    await aggConnection?.close();
    for (const d of devices) {
      await d.client.close().catch(() => undefined);
      if (!d.killed) await d.connection.close().catch(() => undefined);
    }
    await pool.close();
    await fs.rm(root, { recursive: true, force: true, maxRetries: 5, retryDelay: 200 });
  }
  return problems;
}
