import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { isEdgeAiError, type EdgeAiError } from '../../lib/errors';
import { FleetConnection } from '../../lib/fleet/connection';
import {
  decodeUpdate,
  encodeUpdate,
  fromHalf,
  readStoredWeights,
  toHalf,
  writeLayersModel,
  type ModelWeights,
  type UpdateEncoding,
} from '../../lib/fleet/federated';
import {
  FederatedAggregator,
  saveInitialModel,
  type RoundSummary,
} from '../../lib/fleet/federated-aggregator';
import { FederatedClient, type FederatedRound } from '../../lib/fleet/federated-client';
import { ModelStore } from '../../lib/models/store/store';
import { seededRandom } from '../../lib/util/random';
import { fleetBed, testFleetKeys } from '../helpers/fleet-bed';
import { mosquittoMissing, startMosquitto, type TestBroker } from '../helpers/mqtt-brokers';
import { until } from '../helpers/wait';

const { privateKey, publicKey } = testFleetKeys();

/** Weights whose every value is a multiple of 1/64 (global) or 1/1024 (updates): float32 sums stay exact. */
function dyadic(like: ModelWeights, random: () => number, denominator: number, range: number): ModelWeights {
  return {
    specs: like.specs,
    values: like.values.map((v) =>
      Float32Array.from(v, () => Math.round((random() * 2 - 1) * range) / denominator),
    ),
  };
}

function add(a: ModelWeights, b: ModelWeights): ModelWeights {
  return { specs: a.specs, values: a.values.map((v, k) => v.map((x, i) => x + b.values[k][i])) };
}

/** The direct sample-weighted average of the devices' models, rounded once to float32. */
function directAverage(models: ModelWeights[], samples: number[]): Float32Array[] {
  const total = samples.reduce((a, b) => a + b, 0);
  return models[0].values.map((v, k) =>
    Float32Array.from(
      v,
      (_, i) => models.reduce((sum, m, d) => sum + samples[d] * m.values[k][i], 0) / total,
    ),
  );
}

describe('federated updates: encoding and checks', () => {
  const specs = [
    { name: 'dense/kernel', shape: [3, 2] },
    { name: 'dense/bias', shape: [2] },
  ];
  const delta = [Float32Array.from([0.5, -0.25, 0.125, 1e-3, -2, 3.3]), Float32Array.from([0.01, -0.02])];
  const meta = { fleet: 'f', name: 'm', device: 'd1', round: 4, samples: 10 };

  it('float32 round-trips exactly; float16 within half precision; uint8 within one step', () => {
    const exact = decodeUpdate(encodeUpdate(meta, specs, delta, { encoding: 'float32' }).payload, specs);
    assert.deepEqual(exact.delta, delta);
    assert.equal(exact.header.samples, 10);
    const half = decodeUpdate(encodeUpdate(meta, specs, delta, { encoding: 'float16' }).payload, specs);
    half.delta.forEach((t, k) =>
      t.forEach((v, i) =>
        assert.ok(Math.abs(v - delta[k][i]) <= Math.abs(delta[k][i]) * 2 ** -11 + 2 ** -25),
      ),
    );
    const { payload, header } = encodeUpdate(meta, specs, delta, { encoding: 'uint8' });
    const q = decodeUpdate(payload, specs);
    q.delta.forEach((t, k) => {
      const step = header.tensors[k].step!;
      assert.ok(step > 0);
      t.forEach((v, i) =>
        assert.ok(Math.abs(v - delta[k][i]) <= step * (1 + 1e-6), `${v} vs ${delta[k][i]}`),
      );
    });
    // 8 values: uint8 sends 8 bytes of values, float32 32.
    const body = (e: UpdateEncoding): number => {
      const p = encodeUpdate(meta, specs, delta, { encoding: e }).payload;
      return p.length - 4 - p.readUInt32LE(0);
    };
    assert.deepEqual([body('uint8'), body('float16'), body('float32')], [8, 16, 32]);
  });

  it('half-precision conversion matches IEEE binary16 at its edges', () => {
    for (const v of [0, 1, -1, 0.5, 65504, 2 ** -14, 2 ** -24, 1 / 3]) {
      assert.ok(Math.abs(fromHalf(toHalf(v)) - v) <= Math.abs(v) * 2 ** -11, String(v));
    }
    assert.equal(fromHalf(toHalf(1e6)), Infinity);
    assert.ok(Number.isNaN(fromHalf(toHalf(NaN))));
  });

  it('clips the norm and adds noise only when asked', () => {
    const clipped = encodeUpdate(meta, specs, delta, { encoding: 'float32', clipNorm: 1 });
    const back = decodeUpdate(clipped.payload, specs).delta;
    const norm = Math.sqrt(back.flatMap((t) => [...t]).reduce((s, v) => s + v * v, 0));
    assert.ok(Math.abs(norm - 1) < 1e-5, `norm ${norm}`);
    assert.ok(clipped.header.norm > 3);
    const noisy = encodeUpdate(meta, specs, delta, {
      encoding: 'float32',
      clipNorm: 1,
      noise: 0.5,
      random: seededRandom(3),
    });
    assert.equal(noisy.header.noiseStd, 0.5);
    const n = decodeUpdate(noisy.payload, specs).delta;
    assert.notDeepEqual(n, back);
  });

  it('refuses NaN/Inf, wrong shapes, a bad sample count and a cut body, naming why', () => {
    const refused = (payload: Buffer, pattern: RegExp): void =>
      assert.throws(
        () => decodeUpdate(payload, specs),
        (err: EdgeAiError) =>
          isEdgeAiError(err) && err.code === 'fleet-update-invalid' && pattern.test(err.message),
      );
    const nan = [Float32Array.from([0, 0, NaN, 0, 0, 0]), new Float32Array(2)];
    refused(
      encodeUpdate(meta, specs, nan, { encoding: 'float32' }).payload,
      /tensor 0 \(dense\/kernel\) holds NaN at index 2/,
    );
    refused(
      encodeUpdate(meta, specs, [new Float32Array(6), Float32Array.from([Infinity, 0])], {
        encoding: 'float16',
      }).payload,
      /Infinity/,
    );
    const wrong = [{ name: 'dense/kernel', shape: [2, 3] }, specs[1]];
    refused(
      encodeUpdate(meta, wrong, delta, { encoding: 'float32' }).payload,
      /shape \[2,3\], the global model \[3, 2\]/,
    );
    refused(
      encodeUpdate({ ...meta, samples: 0 }, specs, delta, { encoding: 'float32' }).payload,
      /sample count/,
    );
    const full = encodeUpdate(meta, specs, delta, { encoding: 'float32' }).payload;
    refused(full.subarray(0, full.length - 4), /body is/);
    refused(Buffer.from('not an update at all'), /header/);
  });
});

for (const kind of ['embedded', 'mosquitto'] as const) {
  describe(`federated rounds over MQTT (${kind} broker)`, function () {
    this.timeout(30000);
    const bed = fleetBed(kind, 'fed');
    const { open } = bed;
    const connect = (deviceId: string): Promise<FleetConnection> => bed.connect(deviceId);

    /** The aggregator's store with a start version of dyadic weights; resolves with those weights. */
    async function globalStore(): Promise<{ store: ModelStore; weights: ModelWeights }> {
      const store = new ModelStore(path.join(bed.dir, 'aggregator', 'models'));
      const first = await saveInitialModel(store, 'm', {
        architecture: 'dense-classifier',
        inputShape: [4],
        labels: ['a', 'b', 'c'],
        sizes: { units: [5] },
      });
      const template = await fs.readFile(path.join(first.dir, 'model.json'), 'utf8');
      const weights = dyadic(await readStoredWeights(first), seededRandom(11), 64, 32);
      const { name: _n, version: _v, files: _f, created: _c, ...info } = first.meta;
      void [_n, _v, _f, _c];
      await store.save('m', info, (d) => writeLayersModel(d, template, weights));
      return { store, weights };
    }

    interface Agg {
      aggregator: FederatedAggregator;
      closed: RoundSummary[];
      ignored: string[];
      refused: EdgeAiError[];
      cleared: number[];
      connection: FleetConnection;
    }

    async function startAggregator(
      store: ModelStore,
      options: {
        minReports: number;
        roundMs: number;
        serverMomentum?: number;
        serverLearningRate?: number;
        learningRateDecay?: number;
      },
    ): Promise<Agg> {
      const connection = await connect('aggregator');
      const aggregator = new FederatedAggregator(connection, {
        name: 'm',
        store,
        stateFile: path.join(bed.dir, 'aggregator', 'round.json'),
        privateKey,
        ...options,
      });
      const agg: Agg = { aggregator, closed: [], ignored: [], refused: [], cleared: [], connection };
      aggregator.on('cleared', (versions: number[]) => agg.cleared.push(...versions));
      aggregator.on('closed', (s: RoundSummary) => agg.closed.push(s));
      aggregator.on('ignored', (_d: string, reason: string) => agg.ignored.push(reason));
      aggregator.on('refused', (err: EdgeAiError) => agg.refused.push(err));
      aggregator.on('failed', (err: Error) => assert.fail(err));
      open.push(aggregator);
      await aggregator.start();
      return agg;
    }

    interface Device {
      id: string;
      client: FederatedClient;
      rounds: FederatedRound[];
      connection: FleetConnection;
    }

    async function device(id: string): Promise<Device> {
      const connection = await connect(id);
      const client = new FederatedClient(connection, {
        name: 'm',
        store: new ModelStore(path.join(bed.dir, id)),
        publicKey,
        maxBytes: 1e6,
      });
      const d: Device = { id, client, rounds: [], connection };
      client.on('round', (r: FederatedRound) => d.rounds.push(r));
      open.push(client);
      await client.start();
      return d;
    }

    const roundOf = (d: Device, round: number): Promise<FederatedRound> =>
      until(`${d.id} in round ${round}`, () => d.rounds.find((r) => r.round === round));

    async function latestGlobal(store: ModelStore): Promise<ModelWeights> {
      return readStoredWeights((await store.get('m'))!);
    }

    for (const encoding of ['float32', 'uint8'] as const) {
      it(`a 3-device round averages by sample count: ${encoding === 'float32' ? 'exactly' : 'within one quantization step'} (${encoding})`, async () => {
        const { store, weights: global } = await globalStore();
        const agg = await startAggregator(store, { minReports: 3, roundMs: 20000 });
        const round = agg.aggregator.info!.round;
        const devices = await Promise.all(['d1', 'd2', 'd3'].map(device));
        const samples = [10, 30, 60];
        const random = seededRandom(5);
        const locals = devices.map(() => add(global, dyadic(global, random, 1024, 16)));
        const steps: number[] = [];
        for (const [i, d] of devices.entries()) {
          const r = await roundOf(d, round);
          assert.deepEqual(
            (await d.client.globalWeights(r)).values,
            global.values,
            'the device trains from the global version',
          );
          const sent = await d.client.sendUpdate(r, locals[i], samples[i], { encoding });
          steps.push(...sent.header.tensors.map((t) => t.step ?? 0));
        }
        const summary = await until('the round to close', () => agg.closed[0]);
        assert.equal(summary.closedBy, 'reports');
        assert.equal(summary.samples, 100);
        assert.deepEqual([...summary.devices].sort(), ['d1', 'd2', 'd3']);
        assert.equal(summary.version, round + 1);
        const averaged = await latestGlobal(store);
        const expected = directAverage(locals, samples);
        if (encoding === 'float32') assert.deepEqual(averaged.values, expected);
        else {
          const step = Math.max(...steps);
          let worst = 0;
          averaged.values.forEach((v, k) =>
            v.forEach((x, i) => (worst = Math.max(worst, Math.abs(x - expected[k][i])))),
          );
          assert.ok(worst <= step, `worst error ${worst} > step ${step}`);
          assert.ok(worst > 0, 'uint8 updates are lossy');
        }
        // Every device receives the new signed global version as the next round.
        for (const d of devices) {
          const next = await roundOf(d, round + 1);
          assert.deepEqual((await d.client.globalWeights(next)).values, averaged.values);
        }
      });
    }

    it('a device that drops out does not block the round: K of N, or the deadline', async () => {
      const { store, weights: global } = await globalStore();
      const agg = await startAggregator(store, { minReports: 2, roundMs: 1500 });
      const round = agg.aggregator.info!.round;
      const [d1, d2, d3] = await Promise.all(['d1', 'd2', 'd3'].map(device));
      await roundOf(d3, round);
      await d3.connection.close(); // gone mid-round
      await d1.client.sendUpdate(await roundOf(d1, round), add(global, global), 5, { encoding: 'float32' });
      await d2.client.sendUpdate(await roundOf(d2, round), global, 15, { encoding: 'float32' });
      const first = await until('2 of 3 to close the round', () => agg.closed[0]);
      assert.equal(first.closedBy, 'reports');
      assert.equal(first.reports, 2);
      // Next round: one update only, the deadline closes it.
      const started = Date.now();
      await d1.client.sendUpdate(
        await roundOf(d1, round + 1),
        await d1.client.globalWeights(d1.rounds.at(-1)!),
        5,
        {
          encoding: 'uint8',
        },
      );
      const second = await until('the deadline to close the round', () => agg.closed[1], 5000);
      assert.equal(second.closedBy, 'deadline');
      assert.equal(second.reports, 1);
      assert.ok(Date.now() - started >= 1000);
    });

    it('ignores a late and a duplicate update, refuses NaN weights, and the round goes on', async () => {
      const { store, weights: global } = await globalStore();
      const agg = await startAggregator(store, { minReports: 2, roundMs: 20000 });
      const round = agg.aggregator.info!.round;
      const [d1, d2, d3] = await Promise.all(['d1', 'd2', 'd3'].map(device));
      const r1 = await roundOf(d1, round);
      const sent = await d1.client.sendUpdate(r1, global, 5, { encoding: 'float32' });
      assert.ok(sent.bytes > 0);
      // The same update again (a retry, a replay): ignored.
      const { payload } = encodeUpdate(
        { fleet: bed.fleet, name: 'm', device: 'd1', round, samples: 500 },
        global.specs,
        global.values,
        { encoding: 'float32' },
      );
      await d1.connection.publish(d1.client.topics.update('d1'), payload);
      await until('the duplicate to be ignored', () => agg.ignored.find((r) => r.startsWith('duplicate')));
      // NaN weights: refused, named.
      const nan = global.values.map((v) => v.map(() => NaN));
      const bad = encodeUpdate(
        { fleet: bed.fleet, name: 'm', device: 'd3', round, samples: 5 },
        global.specs,
        nan,
        {
          encoding: 'float32',
        },
      );
      await d3.connection.publish(d3.client.topics.update('d3'), bad.payload);
      const refusal = await until('the NaN update to be refused', () => agg.refused[0]);
      assert.equal(refusal.code, 'fleet-update-invalid');
      assert.match(refusal.message, /holds NaN/);
      assert.equal(agg.aggregator.info!.reports, 1);
      await d2.client.sendUpdate(await roundOf(d2, round), global, 5, { encoding: 'float32' });
      const summary = await until('the round to close', () => agg.closed[0]);
      assert.equal(summary.samples, 10, 'the duplicate did not count');
      assert.equal(summary.ignored, 1);
      assert.equal(summary.refused, 1);
      // d3 answers the closed round late: ignored, the new round keeps 0 reports.
      const late = encodeUpdate(
        { fleet: bed.fleet, name: 'm', device: 'd3', round, samples: 5 },
        global.specs,
        global.values,
        {
          encoding: 'float32',
        },
      );
      await d3.connection.publish(d3.client.topics.update('d3'), late.payload);
      await until('the late update to be ignored', () => agg.ignored.find((r) => r.startsWith('late')));
      assert.equal(agg.aggregator.info!.round, round + 1);
      assert.equal(agg.aggregator.info!.reports, 0);
    });

    it('an aggregator restarted mid-round resumes it with the updates it had', async () => {
      const { store, weights: global } = await globalStore();
      let agg = await startAggregator(store, { minReports: 3, roundMs: 20000 });
      const round = agg.aggregator.info!.round;
      const devices = await Promise.all(['d1', 'd2', 'd3'].map(device));
      const random = seededRandom(9);
      const locals = devices.map(() => add(global, dyadic(global, random, 1024, 16)));
      const samples = [7, 11, 13];
      for (const i of [0, 1]) {
        await devices[i].client.sendUpdate(await roundOf(devices[i], round), locals[i], samples[i], {
          encoding: 'float32',
        });
      }
      await until('2 updates', () => agg.aggregator.info!.reports === 2);
      await agg.aggregator.close();
      await agg.connection.close();
      agg = await startAggregator(store, { minReports: 3, roundMs: 20000 });
      assert.equal(agg.aggregator.info!.round, round, 'the same round');
      assert.equal(agg.aggregator.info!.reports, 2, 'with its 2 updates');
      await devices[2].client.sendUpdate(await roundOf(devices[2], round), locals[2], samples[2], {
        encoding: 'float32',
      });
      const summary = await until('the round to close', () => agg.closed[0]);
      assert.equal(summary.reports, 3);
      assert.deepEqual((await latestGlobal(store)).values, directAverage(locals, samples));
      // The version out before the restart is cleared from the broker once the new one is out
      // (the restarted aggregator has a new connection: it knows it from its state on disk).
      await until('the old version cleared', () => agg.cleared.includes(round));
      const watcher = await connect('watcher');
      const chunks = new Map<number, number>();
      for (const v of [round, round + 1]) {
        await watcher.subscribe(watcher.topics.chunks('m', v), (_t, p) => {
          if (p.length > 0) chunks.set(v, (chunks.get(v) ?? 0) + 1);
        });
      }
      await until("the new version's chunks", () => chunks.get(round + 1));
      await new Promise((r) => setTimeout(r, 300));
      assert.equal(chunks.get(round), undefined, `version ${round}'s retained chunks are cleared`);
    });

    it('learning-rate decay: version k+1 announces decay^k to the devices, counted on across a restart; the average is unchanged', async () => {
      const { store, weights: global } = await globalStore();
      let agg = await startAggregator(store, { minReports: 2, roundMs: 20000, learningRateDecay: 0.5 });
      const round = agg.aggregator.info!.round;
      const devices = await Promise.all(['d1', 'd2'].map(device));
      const random = seededRandom(33);
      const samples = [3, 5];
      let current = global;
      const scales: number[] = [];
      for (const n of [0, 1, 2]) {
        if (n === 2) {
          // A restart between rounds 2 and 3: the count comes from the signed global version.
          await agg.aggregator.close();
          await agg.connection.close();
          agg = await startAggregator(store, { minReports: 2, roundMs: 20000, learningRateDecay: 0.5 });
        }
        const rs = await Promise.all(devices.map((d) => roundOf(d, round + n)));
        scales.push(...rs.map((r) => r.learningRateScale));
        const locals = devices.map(() => add(current, dyadic(global, random, 1024, 16)));
        for (const [i, d] of devices.entries()) {
          await d.client.sendUpdate(rs[i], locals[i], samples[i], { encoding: 'float32' });
        }
        const summary = await until(`round ${n + 1} to close`, () => agg.closed[n === 2 ? 0 : n]);
        assert.equal(summary.learningRateScale, 0.5 ** (n + 1), 'the summary names the next factor');
        current = await latestGlobal(store);
        assert.deepEqual(current.values, directAverage(locals, samples), 'still the plain weighted average');
      }
      assert.deepEqual(scales, [1, 1, 0.5, 0.5, 0.25, 0.25], 'each device reads 0.5^k in round k+1');
      const meta = (await store.get('m'))!.meta as unknown as {
        federated: { step: number; learningRateScale: number };
      };
      assert.deepEqual([meta.federated.step, meta.federated.learningRateScale], [3, 0.125]);
      assert.equal((await roundOf(devices[0], round + 3)).learningRateScale, 0.125);
    });

    it('server momentum (FedAvgM): global + lr x velocity, the velocity kept across a restart', async () => {
      const { store, weights: global } = await globalStore();
      const server = { serverMomentum: 0.5, serverLearningRate: 0.5 };
      let agg = await startAggregator(store, { minReports: 2, roundMs: 20000, ...server });
      const round = agg.aggregator.info!.round;
      const devices = await Promise.all(['d1', 'd2'].map(device));
      const random = seededRandom(21);
      const samples = [1, 3];
      // Two rounds of updates; every value a multiple of 1/1024, so float64 sums are exact.
      const updates = [0, 1].map(() => devices.map(() => dyadic(global, random, 1024, 16)));
      const mean = (round: ModelWeights[]): Float64Array[] =>
        round[0].values.map((v, k) =>
          Float64Array.from(
            v,
            (_, i) => (samples[0] * round[0].values[k][i] + samples[1] * round[1].values[k][i]) / 4,
          ),
        );
      const v1 = mean(updates[0]);
      const g2 = global.values.map((g, k) => Float32Array.from(g, (x, i) => x + 0.5 * v1[k][i]));
      const v2 = mean(updates[1]).map((m, k) => m.map((x, i) => 0.5 * v1[k][i] + x));
      const g3 = g2.map((g, k) => Float32Array.from(g, (x, i) => x + 0.5 * v2[k][i]));
      const g2w: ModelWeights = { specs: global.specs, values: g2 };
      for (const [i, d] of devices.entries()) {
        await d.client.sendUpdate(await roundOf(d, round), add(global, updates[0][i]), samples[i], {
          encoding: 'float32',
        });
      }
      await until('round 1 to close', () => agg.closed[0]);
      assert.deepEqual((await latestGlobal(store)).values, g2, 'round 1: global + lr x mean');
      const meta = (await store.get('m'))!.meta as unknown as { federated: { server: unknown } };
      assert.deepEqual(meta.federated.server, { momentum: 0.5, learningRate: 0.5 });
      // A restart between the rounds: the velocity comes back from disk.
      await agg.aggregator.close();
      await agg.connection.close();
      agg = await startAggregator(store, { minReports: 2, roundMs: 20000, ...server });
      assert.equal(agg.aggregator.info!.round, round + 1);
      for (const [i, d] of devices.entries()) {
        const r = await roundOf(d, round + 1);
        assert.deepEqual((await d.client.globalWeights(r)).values, g2);
        await d.client.sendUpdate(r, add(g2w, updates[1][i]), samples[i], { encoding: 'float32' });
      }
      await until('round 2 to close', () => agg.closed[0]);
      const after = (await latestGlobal(store)).values;
      assert.deepEqual(after, g3, 'round 2: global + lr x (momentum x velocity + mean)');
    });
  });
}

describe('federated updates and broker ACLs (Mosquitto with users)', function () {
  this.timeout(30000);
  const PASSWD = '/usr/bin/mosquitto_passwd';
  let broker: TestBroker | undefined;
  let dir = '';
  const open: { close(): Promise<void> }[] = [];
  const users = ['aggregator', 'd1', 'd2'];

  before(async function () {
    const missing = mosquittoMissing() ?? (existsSync(PASSWD) ? undefined : `${PASSWD} is not installed`);
    if (missing) {
      console.log(`      skipped: ${missing}`);
      this.skip();
    }
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'fedacl-'));
    // Each device logs in as its device id and may write only its own topics; the aggregator all.
    broker = await startMosquitto(undefined, async (conf) => {
      const passwords = path.join(conf, 'passwords');
      for (const [i, u] of users.entries()) {
        execFileSync(PASSWD, [...(i === 0 ? ['-c'] : []), '-b', passwords, u, `pw-${u}`]);
      }
      await fs.chmod(passwords, 0o644);
      const acl = path.join(conf, 'acl');
      await fs.writeFile(
        acl,
        [
          'user aggregator',
          'topic readwrite edge-ai/#',
          'pattern read edge-ai/#',
          'pattern readwrite edge-ai/+/devices/%u/#',
          'pattern write edge-ai/+/federated/+/updates/%u',
          '',
        ].join('\n'),
      );
      return ['allow_anonymous false', `password_file ${passwords}`, `acl_file ${acl}`];
    });
  });
  after(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
    await broker?.stop();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  it("a device cannot publish on another device's update topic: the broker drops it", async () => {
    const fleet = `acl${Date.now()}`;
    const connect = async (user: string): Promise<FleetConnection> => {
      const c = new FleetConnection({
        url: broker!.url,
        fleet,
        deviceId: user,
        username: user,
        password: `pw-${user}`,
        reconnectMs: 200,
      });
      open.push(c);
      await c.waitConnected();
      return c;
    };
    const store = new ModelStore(path.join(dir, 'aggregator', 'models'));
    await saveInitialModel(store, 'm', {
      architecture: 'dense-classifier',
      inputShape: [4],
      labels: ['a', 'b'],
      sizes: { units: [3] },
    });
    const global = await readStoredWeights((await store.get('m'))!);
    const aggregator = new FederatedAggregator(await connect('aggregator'), {
      name: 'm',
      store,
      stateFile: path.join(dir, 'aggregator', 'round.json'),
      privateKey,
      minReports: 2,
      roundMs: 20000,
    });
    const closed: RoundSummary[] = [];
    const ignored: string[] = [];
    aggregator.on('closed', (s: RoundSummary) => closed.push(s));
    aggregator.on('ignored', (_d: string, reason: string) => ignored.push(reason));
    open.push(aggregator);
    await aggregator.start();
    const round = aggregator.info!.round;
    const [d1, d2] = await Promise.all(['d1', 'd2'].map(connect));
    const update = (device: string, samples: number): Buffer =>
      encodeUpdate({ fleet, name: 'm', device, round, samples }, global.specs, global.values, {
        encoding: 'float32',
      }).payload;
    // d2 forges an update in d1's name, on d1's topic, before d1 reports.
    await d2.publish(d2.topics.base + '/federated/m/updates/d1', update('d1', 500));
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(aggregator.info!.reports, 0, 'the forged update never reached the aggregator');
    await d1.publish(d1.topics.base + '/federated/m/updates/d1', update('d1', 5));
    await d2.publish(d2.topics.base + '/federated/m/updates/d2', update('d2', 7));
    const summary = await until('the round to close', () => closed[0]);
    assert.deepEqual([...summary.devices].sort(), ['d1', 'd2']);
    assert.equal(summary.samples, 12, "d1's own update counted, not the forged one");
    assert.deepEqual(ignored, []);
  });
});
