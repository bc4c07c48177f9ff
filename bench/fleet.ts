/**
 * Fleet model roll-out: a 120 kB model (a real TF.js layers model: model.json + weights) signed
 * and published to 100 devices, each a light client running the library code the nodes run
 * (FleetConnection + FleetModelFollower + its own model store on disk). Measured: time from the
 * start of the publication until every device has verified (signature, every sha256) and stored
 * it; then a second version with 10 % of the devices disconnected during the roll-out, which
 * reconnect afterwards and catch up from the retained manifest.
 *
 * Among the devices, `--red N` (default 3; 0 with --quick) are real Node-RED runtimes (child
 * processes running node-red with this package and a flow whose edge-model follows `fleet:bench`):
 * for them the time is until they run the new version, as they report it on devices/<id>/models/bench.
 *
 * Usage: npm run bench:fleet [-- --devices 100 --kb 120 --red 3 --mosquitto | --broker mqtt://127.0.0.1:1883]
 *        [--part rollout|fedavg] [--quick] [--rounds 50 --epochs 5 --batch 10 --fraction 0.2 --lr 0.1
 *        --momentum 0 --server-lr 1 --decay 1 --augment 0 --skew none|restricted-softmax|logit-calibration
 *        --skew-strength alpha|tau --prox mu --validation N --encoding uint8|float16|float32 --threads N --no-central]
 * Then the federated part (bench/fleet-fedavg.ts). --quick: 10 devices, 3 rounds of a small
 * federated run, checking the mechanics (rounds close, faults handled), not accuracy.
 * The default broker is the embedded one (aedes); --mosquitto starts /usr/sbin/mosquitto on a free
 * loopback port.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { FleetConnection } from '../lib/fleet/connection';
import { generateFleetKeys, readPrivateKey, readPublicKey } from '../lib/fleet/keys';
import { FleetModelFollower, publishModel } from '../lib/fleet/rollout';
import { ModelStore } from '../lib/models/store/store';
import { startEmbedded, startMosquitto, type TestBroker } from '../test/helpers/mqtt-brokers';
import type { UpdateEncoding } from '../lib/fleet/federated';
import { defaultTrainingThreads } from '../lib/train/threads';
import {
  LABEL_SKEW_METHODS,
  LABEL_SKEW_STRENGTH,
  type LabelSkewCorrection,
  type LabelSkewMethod,
} from '../lib/train/logit-adjust';
import { runFedAvg } from './fleet-fedavg';
import { printTable } from './cli';
import { RedDevices } from './fleet-red';

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return undefined;
  const next = process.argv[i + 1];
  return next && !next.startsWith('--') ? next : '';
}

interface Device {
  id: string;
  store: ModelStore;
  connection: FleetConnection;
  follower: FleetModelFollower;
}

const QUICK = arg('quick') !== undefined;
const PART = arg('part') ?? 'all';
const DEVICES = Number(arg('devices') ?? (QUICK ? 10 : 100));
const KB = Number(arg('kb') ?? 120);
const RED = Math.min(DEVICES, Number(arg('red') ?? (QUICK ? 0 : 3)));
const keys = generateFleetKeys();
const privateKey = readPrivateKey(keys.privateKey);
const publicKey = readPublicKey(keys.publicKey);

/** A TF.js layers model.json with one dense kernel of about `kb` kB of float32 weights. */
async function saveModel(store: ModelStore): Promise<number> {
  const floats = Math.floor((KB * 1024) / 4 / 64) * 64;
  // Finite weights (random bytes would hold NaNs, which a loading runtime refuses as corrupt).
  const weights = Buffer.from(
    new Float32Array(randomBytes(floats * 4).buffer).map((_, i) => Math.sin(i)).buffer,
  );
  const modelJson = {
    format: 'layers-model',
    modelTopology: {
      class_name: 'Sequential',
      config: {
        name: 'bench',
        layers: [
          {
            class_name: 'Dense',
            config: { name: 'dense', units: 64, use_bias: false, batch_input_shape: [null, floats / 64] },
          },
        ],
      },
    },
    weightsManifest: [
      {
        paths: ['weights.bin'],
        weights: [{ name: 'dense/kernel', shape: [floats / 64, 64], dtype: 'float32' }],
      },
    ],
  };
  const stored = await store.save('bench', { format: 'tfjs-layers', entry: 'model.json' }, async (dir) => {
    await fs.writeFile(path.join(dir, 'model.json'), JSON.stringify(modelJson));
    await fs.writeFile(path.join(dir, 'weights.bin'), weights);
  });
  return stored.meta.files.reduce((sum, f) => sum + f.bytes, 0);
}

async function startDevice(broker: TestBroker, fleet: string, id: string, root: string): Promise<Device> {
  const connection = new FleetConnection({ url: broker.url, fleet, deviceId: id, reconnectMs: 500 });
  await connection.waitConnected(30000);
  const store = new ModelStore(path.join(root, id));
  const follower = new FleetModelFollower(connection, { name: 'bench', store, publicKey, maxBytes: 50e6 });
  await follower.start();
  return { id, store, connection, follower };
}

/** Resolves when `device` has stored fleet version `version` (now or later), with the time. */
function storedAt(device: Device, version: number, since: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const check = async (): Promise<boolean> => {
      const have = await device.follower.newestFromFleet();
      return (have?.origin.version ?? 0) >= version;
    };
    const onStored = (): void => {
      void check().then((ok) => {
        if (ok) {
          device.follower.off('stored', onStored);
          resolve(performance.now() - since);
        }
      });
    };
    device.follower.on('stored', onStored);
    device.follower.once('refused', (err: Error) => reject(err));
    onStored();
  });
}

function stats(ms: number[]): { median: number; p95: number; max: number } {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number): number => s[Math.min(s.length - 1, Math.floor(q * s.length))];
  return { median: at(0.5), p95: at(0.95), max: s[s.length - 1] };
}

async function rollout(broker: TestBroker): Promise<void> {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'bench-fleet-'));
  const fleet = `bench${Date.now()}`;
  const rows: string[][] = [];
  let red: RedDevices | undefined;
  try {
    const pubStore = new ModelStore(path.join(root, 'publisher'));
    const bytes = await saveModel(pubStore);
    const publisher = new FleetConnection({ url: broker.url, fleet, deviceId: 'publisher' });
    await publisher.waitConnected();
    const redStart = performance.now();
    red = await RedDevices.start(publisher, RED, keys.publicKey, 'bench');
    const redMs = performance.now() - redStart;
    const light = DEVICES - RED;
    const t0 = performance.now();
    const devices = await Promise.all(
      Array.from({ length: light }, (_, i) => startDevice(broker, fleet, `d${i}`, root)),
    );
    const connectMs = performance.now() - t0;
    console.log(
      `broker ${broker.kind} ${broker.url}; ${light} light devices connected in ${connectMs.toFixed(0)} ms, ` +
        `${RED} Node-RED runtimes started in ${redMs.toFixed(0)} ms; model ${bytes} bytes`,
    );

    // 1: every device online.
    let start = performance.now();
    const all = devices.map((d) => storedAt(d, 1, start));
    const redAll = red.runningAt(1, start);
    const published = await publishModel(publisher, pubStore, 'bench', { privateKey });
    const times = await Promise.all(all);
    red.rows.push(['all online', ...(await redAll)]);
    const s1 = stats(times);
    rows.push([
      'all online',
      `${light}/${light}`,
      `${published.ms.toFixed(0)}`,
      `${s1.median.toFixed(0)}`,
      `${s1.p95.toFixed(0)}`,
      `${s1.max.toFixed(0)}`,
      '-',
    ]);

    // 2: version 2 while 10 % are disconnected; they reconnect 1 s after the publication.
    await saveModel(pubStore);
    const away = devices.slice(0, Math.round(DEVICES / 10));
    const online = devices.slice(away.length);
    await Promise.all(away.map(async (d) => Promise.all([d.follower.close(), d.connection.close()])));
    start = performance.now();
    const onlineDone = online.map((d) => storedAt(d, 2, start));
    const redOnline = red.runningAt(2, start);
    const published2 = await publishModel(publisher, pubStore, 'bench', { privateKey });
    const onlineTimes = await Promise.all(onlineDone);
    await new Promise((r) => setTimeout(r, Math.max(0, 1000 - (performance.now() - start))));
    const reconnectAt = performance.now();
    const back = await Promise.all(away.map((d) => startDevice(broker, fleet, d.id, root)));
    const backTimes = await Promise.all(back.map((d) => storedAt(d, 2, start)));
    const catchUp = await Promise.all(back.map((d) => storedAt(d, 2, reconnectAt)));
    red.rows.push(['10 % of the light devices offline', ...(await redOnline)]);
    const s2 = stats([...onlineTimes, ...backTimes]);
    rows.push([
      '10 % offline, back after 1 s',
      `${light}/${light}`,
      `${published2.ms.toFixed(0)}`,
      `${s2.median.toFixed(0)}`,
      `${s2.p95.toFixed(0)}`,
      `${s2.max.toFixed(0)}`,
      `${stats(catchUp).max.toFixed(0)}`,
    ]);
    for (const d of [...online, ...back]) {
      await d.follower.close();
      await d.connection.close();
    }
    await publisher.close();
  } finally {
    await red?.stop();
    await fs.rm(root, { recursive: true, force: true });
  }
  const header = [
    'roll-out',
    'devices with it',
    'publish ms',
    'median ms',
    'p95 ms',
    'all ms',
    'catch-up after reconnect ms',
  ];
  printTable(header, rows);
  console.log(
    `light devices (${DEVICES - RED}): times from the start of the publication until a device has verified and stored the version`,
  );
  if (red?.rows.length) {
    console.log('');
    red.print();
    const slowest = (i: number) => Math.max(Number(rows[i]?.[5]), Number(red?.rows[i]?.slice(-1)[0]));
    console.log(
      `all ${DEVICES} devices (${DEVICES - RED} light, ${RED} Node-RED) had version 1 within ${slowest(0)} ms, ` +
        `version 2 within ${slowest(1)} ms (NaN: some never did)`,
    );
  }
}

/** --skew none|restricted-softmax|logit-calibration [--skew-strength alpha or tau]. */
function labelSkewArg(): LabelSkewCorrection {
  const method = (arg('skew') || 'none') as LabelSkewMethod;
  if (!LABEL_SKEW_METHODS.includes(method))
    throw new Error(`--skew ${method}: use ${LABEL_SKEW_METHODS.join(', ')}`);
  const fallback = method === 'none' ? 0 : LABEL_SKEW_STRENGTH[method];
  return { method, strength: Number(arg('skew-strength') || fallback) };
}

async function main(): Promise<void> {
  const brokerUrl = arg('broker');
  const broker: TestBroker =
    brokerUrl !== undefined && brokerUrl !== ''
      ? { kind: 'mosquitto', url: brokerUrl, stop: async () => undefined }
      : arg('mosquitto') !== undefined
        ? await startMosquitto()
        : await startEmbedded();
  let problems: string[] = [];
  try {
    if (PART !== 'fedavg') await rollout(broker);
    if (PART !== 'rollout') {
      problems = await runFedAvg({
        broker,
        quick: QUICK,
        devices: DEVICES,
        rounds: Number(arg('rounds') ?? (QUICK ? 3 : 50)),
        target: Number(arg('target') ?? 0.97),
        epochs: Number(arg('epochs') ?? (QUICK ? 1 : 5)),
        batch: Number(arg('batch') ?? 10),
        fraction: Number(arg('fraction') ?? (QUICK ? 0.5 : 0.2)),
        learningRate: Number(arg('lr') ?? 0.1),
        serverMomentum: Number(arg('momentum') ?? 0),
        serverLearningRate: Number(arg('server-lr') ?? 1),
        learningRateDecay: Number(arg('decay') ?? 1),
        augmentShift: Number(arg('augment') ?? 0),
        labelSkew: labelSkewArg(),
        proximal: Number(arg('prox') ?? 0),
        validation: Number(arg('validation') ?? 0),
        encoding: (arg('encoding') || 'uint8') as UpdateEncoding,
        central: !QUICK && arg('no-central') === undefined,
        threads: Number(arg('threads') ?? defaultTrainingThreads()),
      });
    }
  } finally {
    await broker.stop();
  }
  if (problems.length > 0) {
    console.error(`\n${problems.length} check(s) failed:\n- ${problems.join('\n- ')}`);
    process.exit(1);
  }
  process.exit(0);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
