import assert from 'node:assert/strict';
import { InputError } from '../../lib/preprocess/numeric-input';
import { WelfordStats } from '../../lib/preprocess/running-stats';
import {
  Scaler,
  applyScaling,
  checkNormalisation,
  invertScaling,
  type NormalisationStats,
} from '../../lib/preprocess/scaling';

function near(actual: number, expected: number, tol = 1e-12): void {
  assert.ok(Math.abs(actual - expected) <= tol, `${actual} is not within ${tol} of ${expected}`);
}

function learned(rows: number[][], method: 'minmax' | 'zscore', extra: Partial<NormalisationStats> = {}) {
  const w = new WelfordStats(rows[0].length);
  rows.forEach((r) => w.update(r));
  const stats: NormalisationStats = {
    method,
    channels: rows[0].map((_, i) => `c${i}`),
    mean: w.mean(),
    std: w.std(),
    min: w.min(),
    max: w.max(),
    count: w.count,
    range: [0, 1],
    clip: null,
    ...extra,
  };
  return stats;
}

const rows = [
  [10, -4, 1000],
  [20, 6, 1001],
  [15, 1, 999.5],
  [30, -2, 1000.25],
];

describe('normalise scaling', () => {
  it('min-max maps each channel onto [0, 1] or [-1, 1]', () => {
    for (const range of [
      [0, 1],
      [-1, 1],
    ] as [number, number][]) {
      const scaler = new Scaler(learned(rows, 'minmax', { range }));
      const scaled = rows.map((r) => scaler.scale(r));
      for (let c = 0; c < 3; c++) {
        const col = scaled.map((r) => r[c]);
        near(Math.min(...col), range[0]);
        near(Math.max(...col), range[1]);
      }
      // The middle of a channel's span lands in the middle of the range.
      near(scaler.scale([20, 1, 1000.25])[0], (range[0] + range[1]) / 2);
    }
  });

  it('z-score gives each channel mean 0 and standard deviation 1 on the data it was fitted on', () => {
    const scaler = new Scaler(learned(rows, 'zscore'));
    const scaled = rows.map((r) => scaler.scale(r));
    const check = new WelfordStats(3);
    scaled.forEach((r) => check.update(r));
    check.mean().forEach((m) => near(m, 0, 1e-12));
    check.std().forEach((s) => near(s, 1, 1e-12));
  });

  it('clips to the range (min-max) or to the given bounds (z-score)', () => {
    const mm = new Scaler(learned(rows, 'minmax', { range: [-1, 1], clip: [-1, 1] }));
    assert.deepEqual(mm.scale([100, -100, 1000]).slice(0, 2), [1, -1]);
    const unclipped = new Scaler(learned(rows, 'minmax'));
    assert.ok(unclipped.scale([100, 0, 1000])[0] > 1);
    const z = new Scaler(learned(rows, 'zscore', { clip: [-3, 3] }));
    const out = z.scale([1e6, -1e6, 1000]);
    assert.equal(out[0], 3);
    assert.equal(out[1], -3);
    assert.ok(Math.abs(out[2]) < 3);
  });

  it('does not divide by zero for a channel without spread', () => {
    const flat = [
      [5, 1],
      [5, 2],
    ];
    const z = new Scaler(learned(flat, 'zscore'));
    assert.equal(z.scale([5, 1.5])[0], 0);
    assert.equal(z.scale([7, 1.5])[0], 2); // spread taken as 1
    const mm = new Scaler(learned(flat, 'minmax', { range: [-1, 1] }));
    assert.equal(mm.scale([5, 1])[0], -1);
  });

  it('inverts its scaling and survives a JSON round trip (as stored in meta.json)', () => {
    for (const method of ['minmax', 'zscore'] as const) {
      const stats = JSON.parse(
        JSON.stringify(learned(rows, method, { range: [-1, 1] })),
      ) as NormalisationStats;
      for (const r of rows) {
        const back = invertScaling(stats, applyScaling(stats, r));
        r.forEach((v, i) => near(back[i], v, 1e-9));
      }
    }
  });

  it('scales any input shape, reading objects by the statistics channel order', () => {
    const stats = learned(rows, 'minmax');
    const scaler = new Scaler(stats);
    const fromObject = scaler.scaleInput({ c2: 1000, c0: 10, c1: -4, other: 'ignored' });
    assert.deepEqual(fromObject, [scaler.scale([10, -4, 1000])]);
    assert.deepEqual(
      scaler.scaleInput(rows),
      rows.map((r) => scaler.scale(r)),
    );
    assert.deepEqual(scaler.scaleInput(new Float64Array(rows[1])), [scaler.scale(rows[1])]);
    assert.throws(() => scaler.scaleInput([1, 2]), InputError);
  });

  it('checks statistics from untrusted JSON and fills defaults', () => {
    const minimal = checkNormalisation({ method: 'zscore', channels: ['a'], mean: [1], std: [2] });
    assert.deepEqual(minimal.range, [0, 1]);
    assert.equal(minimal.clip, null);
    assert.equal(minimal.count, 0);
    assert.deepEqual(minimal.min, []);
    assert.throws(() => checkNormalisation({ method: 'robust', channels: ['a'] }), /method/);
    assert.throws(() => checkNormalisation({ method: 'zscore', channels: ['a'], mean: [1] }), /std/);
    assert.throws(
      () => checkNormalisation({ method: 'zscore', channels: ['a'], mean: [null], std: [1] }),
      /mean/,
    );
    assert.throws(
      () => checkNormalisation({ method: 'minmax', channels: ['a', 'b'], min: [0], max: [1, 2] }),
      /min/,
    );
    assert.throws(
      () => checkNormalisation({ method: 'minmax', channels: ['a'], min: [0], max: [1], range: [1, 0] }),
      /range/,
    );
    assert.throws(() => checkNormalisation([]), InputError);
  });
});
