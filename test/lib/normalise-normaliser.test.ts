import assert from 'node:assert/strict';
import { InputError } from '../../lib/preprocess/numeric-input';
import { Normaliser, type NormaliserOptions } from '../../lib/preprocess/normaliser';
import { WelfordStats } from '../../lib/preprocess/running-stats';
import { Scaler, type NormalisationStats } from '../../lib/preprocess/scaling';

const samples = [
  { temperature: 20, humidity: 40, pressure: 1010 },
  { temperature: 22, humidity: 45, pressure: 1012 },
  { temperature: 21, humidity: 50, pressure: 1011 },
  { temperature: 25, humidity: 42, pressure: 1009 },
];
const rows = samples.map((s) => [s.temperature, s.humidity, s.pressure]);

function welfordOf(data: number[][]): WelfordStats {
  const w = new WelfordStats(data[0].length);
  data.forEach((r) => w.update(r));
  return w;
}

function make(options: Partial<NormaliserOptions> = {}): Normaliser {
  return new Normaliser({ method: 'zscore', source: 'welford', learnCount: 1, ...options });
}

function near(a: number, b: number, tol = 1e-12): void {
  assert.ok(Math.abs(a - b) <= tol, `${a} vs ${b}`);
}

describe('normalise Normaliser', () => {
  describe('input shapes', () => {
    it('reads an object in first-seen key order and answers with an object of the same keys', () => {
      const n = make();
      let last;
      for (const s of samples) last = n.process(s).outputs[0];
      assert.deepEqual(last?.features, ['temperature', 'humidity', 'pressure']);
      const expected = new Scaler(n.exportStats()).scale(rows[3]);
      assert.deepEqual(last?.payload, {
        temperature: expected[0],
        humidity: expected[1],
        pressure: expected[2],
      });
      // Later objects may list their keys in another order: they are read by name.
      const reordered = n.process({ pressure: 1010, temperature: 20, humidity: 40 }).outputs[0];
      assert.deepEqual(Object.keys(reordered.payload as object), ['temperature', 'humidity', 'pressure']);
    });

    it('reads a number, an array and a typed array, answering in the same shape', () => {
      const num = make();
      num.process(1);
      const one = num.process(3).outputs[0];
      assert.deepEqual(one.features, ['value']);
      assert.equal(one.payload, 1); // mean 2, std 1

      const arr = make();
      arr.process([1, 10]);
      const a = arr.process([3, 30]).outputs[0];
      assert.deepEqual(a.payload, [1, 1]);
      assert.deepEqual(a.features, ['ch0', 'ch1']);

      const typed = make();
      typed.process(new Int16Array([1, 10]));
      const t = typed.process(new Int16Array([3, 30])).outputs[0];
      assert.ok(
        Array.isArray(t.payload),
        'typed arrays come back as plain arrays (scaled values are fractional)',
      );
      assert.deepEqual(t.payload, [1, 1]);
    });

    it('treats a 2-D array as samples in order, exactly like sending them one by one', () => {
      const batch = make({ source: 'first-n', learnCount: 3, method: 'minmax' });
      const single = make({ source: 'first-n', learnCount: 3, method: 'minmax' });
      const out = batch.process(rows);
      const one = rows.map((r) => single.process(r).outputs[0].payload);
      assert.equal(out.outputs.length, 1);
      assert.deepEqual(out.outputs[0].payload, one);
      assert.deepEqual(batch.exportStats(), single.exportStats());
      assert.equal(out.samples, 4);
      assert.equal(out.learned, 3);
    });

    it('uses the configured channel list for order and ignores other keys', () => {
      const n = make({ channels: ['pressure', 'temperature'] });
      n.process({ temperature: 20, humidity: 1, pressure: 1000 });
      const out = n.process({ humidity: 2, temperature: 22, pressure: 1002 }).outputs[0];
      assert.deepEqual(out.features, ['pressure', 'temperature']);
      assert.deepEqual(Object.keys(out.payload as object), ['pressure', 'temperature']);
      assert.deepEqual(n.exportStats().mean, [1001, 21]);
      // Arrays are taken in the list's order.
      assert.deepEqual(n.process([1001, 21]).outputs[0].features, ['pressure', 'temperature']);
    });

    it('rejects an unknown key, a wrong width and non-numeric payloads with InputError', () => {
      const n = make();
      n.process({ a: 1, b: 2 });
      assert.throws(() => n.process({ a: 1, b: 2, c: 3 }), /unexpected channel "c"/);
      assert.throws(() => n.process([1, 2, 3]), /expected 2 values/);
      assert.throws(() => n.process(5), InputError);
      assert.throws(() => make().process('21.5'), InputError);
      assert.throws(() => make().process(null), InputError);
      assert.throws(() => make().process([[1, 2], [3]]), /ragged/);
    });
  });

  describe('statistics sources', () => {
    it('learns from the first N samples, then freezes', () => {
      const n = make({ source: 'first-n', learnCount: 3 });
      const flags = samples.map((s) => n.process(s).outputs[0].learning);
      assert.deepEqual(flags, [true, true, false, false]);
      assert.equal(n.status().phase, 'frozen');
      const ref = welfordOf(rows.slice(0, 3));
      const frozen = n.exportStats();
      assert.equal(frozen.count, 3);
      frozen.mean.forEach((m, i) => near(m, ref.mean()[i]));
      frozen.std.forEach((s, i) => near(s, ref.std()[i]));
      n.process({ temperature: 1000, humidity: 0, pressure: 0 });
      assert.deepEqual(n.exportStats(), frozen);
    });

    it('can hold back output (and windows) until the statistics are learned', () => {
      const n = make({ source: 'first-n', learnCount: 3, emitWhileLearning: false, windowSize: 2 });
      const counts = [...rows, ...rows].map((r) => n.process(r).outputs.length);
      // Samples 1-2 learn silently; sample 3 completes learning and opens the first window.
      assert.deepEqual(counts, [0, 0, 0, 1, 1, 1, 1, 1]);
    });

    it('learns continuously over all samples (Welford)', () => {
      const n = make({ source: 'welford', learnCount: 2 });
      assert.deepEqual(
        samples.map((s) => n.process(s).outputs[0].learning),
        [true, false, false, false],
      );
      assert.equal(n.status().phase, 'continuous');
      const ref = welfordOf(rows);
      n.exportStats().mean.forEach((m, i) => near(m, ref.mean()[i]));
      n.exportStats().max.forEach((m, i) => assert.equal(m, ref.max()[i]));
    });

    it('learns continuously with EWMA, following a drift', () => {
      const n = make({ source: 'ewma', alpha: 0.5, method: 'zscore' });
      for (let i = 0; i < 40; i++) n.process([i < 20 ? 0 : 100]);
      near(n.exportStats().mean[0], 100, 1e-3);
      assert.equal(n.exportStats().source, 'ewma');
    });

    it('uses fixed statistics, one per channel or one for all', () => {
      const n = make({
        source: 'fixed',
        method: 'minmax',
        range: [-1, 1],
        given: { min: [0, 10], max: [10, 20] },
      });
      assert.deepEqual(n.process([5, 20]).outputs[0].payload, [0, 1]);
      assert.equal(n.status().phase, 'fixed');
      const all = make({ source: 'fixed', given: { mean: [10], std: [2] } });
      assert.deepEqual(all.process([12, 8, 10]).outputs[0].payload, [1, -1, 0]);
      assert.deepEqual(all.exportStats().mean, [10, 10, 10]);
      assert.throws(
        () => make({ source: 'fixed', given: { mean: [1, 2], std: [1] } }).process([1, 2, 3]),
        /3 channels/,
      );
    });

    it('refuses configurations it cannot run', () => {
      assert.throws(() => make({ source: 'fixed', given: { mean: [1] } }), /mean and std/);
      assert.throws(() => make({ source: 'fixed', given: { mean: [1, 2], std: [1, 2, 3] } }), /disagree/);
      assert.throws(
        () => make({ source: 'fixed', given: { mean: [1, 2], std: [1, 2] }, channels: ['a'] }),
        /configured/,
      );
      assert.throws(() => make({ alpha: 0 }), /alpha/);
      assert.throws(() => make({ learnCount: 0 }), /learning sample count/);
      assert.throws(() => make({ windowSize: 3, windowStride: 0 }), /stride/);
      assert.throws(() => make({ range: [1, -1] }), /range/);
      assert.throws(() => make({ channels: ['a', 'a'] }), /unique/);
      assert.throws(() => make({ method: 'robust' as 'zscore' }), /method/);
    });

    it('clips min-max to its range and z-scores to the z limit', () => {
      const mm = make({ method: 'minmax', source: 'first-n', learnCount: 2, clip: true });
      mm.process([0]);
      mm.process([10]);
      assert.deepEqual(mm.process([25]).outputs[0].payload, [1]);
      assert.deepEqual(mm.process([-5]).outputs[0].payload, [0]);
      assert.deepEqual(mm.exportStats().clip, [0, 1]);
      const z = make({ source: 'first-n', learnCount: 2, clip: true, zLimit: 2 });
      z.process([0]);
      z.process([2]);
      assert.deepEqual(z.process([100]).outputs[0].payload, [2]);
      assert.deepEqual(z.exportStats().clip, [-2, 2]);
    });
  });

  describe('bad values', () => {
    it('reject: throws and changes nothing', () => {
      const n = make({ windowSize: 3 });
      n.process([1, 2]);
      const before = JSON.stringify(n.toJSON());
      assert.throws(() => n.process([NaN, 2]), /channel "ch0" is not a finite number/);
      assert.throws(
        () =>
          n.process([
            [1, 2],
            [3, Infinity],
          ]),
        /ch1.*row 1/,
      );
      assert.throws(() => n.process(['x', 2]), InputError);
      assert.equal(JSON.stringify(n.toJSON()), before);
      assert.equal(n.status().windowFilled, 1);
    });

    it('skip: drops the sample without output or learning', () => {
      const n = make({ badValues: 'skip' });
      n.process({ a: 1, b: 2 });
      const r = n.process({ a: 1, b: 'n/a' });
      assert.deepEqual([r.outputs.length, r.skipped, n.count], [0, 1, 1]);
      const missing = n.process({ a: 1 });
      assert.equal(missing.skipped, 1);
      const batch = n.process([
        [3, 4],
        [NaN, 1],
        [5, 6],
      ]);
      assert.equal((batch.outputs[0].payload as number[][]).length, 2);
      assert.equal(n.count, 3);
    });

    it('hold: repeats the last good value without learning from it', () => {
      const n = make({ badValues: 'hold', source: 'welford' });
      assert.equal(n.process([NaN, 1]).skipped, 1, 'nothing to hold yet');
      n.process([2, 1]);
      n.process([4, 3]);
      const held = n.process([Infinity, 5]);
      assert.equal(held.held, 1);
      assert.equal(held.learned, 0);
      assert.equal(n.count, 2);
      const scaler = new Scaler(n.exportStats());
      assert.deepEqual(held.outputs[0].payload, scaler.scale([4, 5]));
    });
  });

  describe('windows', () => {
    it('windows the scaled samples and sends several windows from one 2-D input', () => {
      const n = make({
        source: 'fixed',
        method: 'minmax',
        given: { min: [0], max: [100] },
        windowSize: 4,
        windowStride: 3,
      });
      const data = Array.from({ length: 10 }, (_, i) => [i * 10]);
      const out = n.process(data).outputs;
      assert.equal(out.length, 3);
      const starts = out.map((o) => (o.payload as number[][]).map((r) => r[0]));
      [0, 3, 6].forEach((start, k) => starts[k].forEach((v, j) => near(v, (start + j) / 10, 1e-15)));
      assert.deepEqual(out[0].features, ['ch0']);
      assert.equal(n.status().windowFilled, 4);
    });

    it('reset forgets statistics, channels and the window', () => {
      const n = make({ windowSize: 2 });
      n.process({ a: 1 });
      n.reset();
      assert.equal(n.count, 0);
      assert.equal(n.features, null);
      assert.equal(n.status().windowFilled, 0);
      assert.equal(n.process({ b: 1, c: 2 }).outputs.length, 0);
      assert.deepEqual(n.process({ b: 2, c: 3 }).outputs[0].features, ['b', 'c']);
    });
  });

  describe('state', () => {
    it('restores from JSON and carries on exactly as if never stopped', () => {
      const opts: Partial<NormaliserOptions> = { source: 'first-n', learnCount: 6, badValues: 'hold' };
      const whole = make(opts);
      const first = make(opts);
      const stream = [...rows, ...rows.map((r) => r.map((v) => v + 1))];
      stream.slice(0, 3).forEach((r) => first.process(r));
      const second = make(opts);
      assert.deepEqual(second.restore(JSON.parse(JSON.stringify(first.toJSON()))), { restored: true });
      const a = stream.map((r) => whole.process(r).outputs[0]?.payload);
      const b = stream.slice(3).map((r) => second.process(r).outputs[0]?.payload);
      assert.deepEqual(b, a.slice(3));
      assert.deepEqual(second.exportStats(), whole.exportStats());
      assert.equal(second.status().phase, 'frozen');
    });

    it('keeps a fresh state when the saved one does not fit the configuration', () => {
      const welford = make({ source: 'welford' });
      welford.process({ a: 1 });
      const saved = welford.toJSON();
      const ewma = make({ source: 'ewma' });
      assert.equal(ewma.restore(saved).restored, false);
      assert.match(ewma.restore(saved).reason ?? '', /welford/);
      const other = make({ source: 'welford', channels: ['b'] });
      assert.match(other.restore(saved).reason ?? '', /channels changed/);
      assert.equal(make({ source: 'first-n' }).restore(saved).restored, true);
      assert.equal(make().restore({ format: 'something else' }).restored, false);
      assert.equal(make().restore({ ...saved, stats: { kind: 'welford', mean: 'x' } }).restored, false);
      assert.equal(other.count, 0);
    });

    it('uses loaded statistics (a model’s normalisation) until reset, and saves them', () => {
      const stats: NormalisationStats = {
        method: 'minmax',
        channels: ['t', 'h'],
        mean: [],
        std: [],
        min: [0, 0],
        max: [50, 100],
        count: 500,
        range: [-1, 1],
        clip: null,
      };
      const n = make({ method: 'zscore' });
      n.process({ x: 5 });
      n.useStats(stats);
      assert.equal(n.status().phase, 'loaded');
      const out = n.process({ h: 50, t: 50, other: 1 }).outputs[0];
      assert.deepEqual(out.payload, { t: 1, h: 0 });
      assert.deepEqual(n.exportStats(), stats);
      const restored = make({ method: 'zscore' });
      assert.equal(restored.restore(JSON.parse(JSON.stringify(n.toJSON()))).restored, true);
      assert.deepEqual(restored.process([25, 100]).outputs[0].payload, [0, 1]);
      n.reset();
      assert.equal(n.status().phase, 'learning');
      assert.throws(() => n.useStats({ method: 'minmax', channels: ['a'] }), InputError);
    });
  });

  it('one sample of ±1e308 while learning never makes the normaliser unusable', () => {
    const n = make({ learnCount: 100 });
    n.process({ a: 1, b: 2, c: 3, d: 4 });
    n.process({ a: 2, b: 3, c: 4, d: 5 });
    assert.throws(() => n.process({ a: 1e308, b: -1e308, c: 1e308, d: -1e308 }), /too large to learn from/);
    const next = n.process({ a: 3, b: 4, c: 5, d: 6 });
    assert.equal(next.learned, 1);
    const stats = n.exportStats();
    for (const v of [...(stats.mean ?? []), ...(stats.std ?? [])]) assert.ok(Number.isFinite(v), String(v));
  });
});
