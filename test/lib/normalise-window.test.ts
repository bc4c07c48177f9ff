import assert from 'node:assert/strict';
import { SlidingWindow } from '../../lib/preprocess/window';

/** Feeds rows [i, 10*i] for i = 0..count-1 and records (arrival index, window). */
function run(window: SlidingWindow, count: number, start = 0): { at: number; rows: number[][] }[] {
  const out: { at: number; rows: number[][] }[] = [];
  for (let i = start; i < start + count; i++) {
    const w = window.push([i, 10 * i]);
    if (w) out.push({ at: i, rows: w });
  }
  return out;
}

/** Window k covers rows [k*stride, k*stride + size). */
function expected(size: number, stride: number, count: number): { at: number; rows: number[][] }[] {
  const out: { at: number; rows: number[][] }[] = [];
  for (let start = 0; start + size <= count; start += stride) {
    out.push({
      at: start + size - 1,
      rows: Array.from({ length: size }, (_, j) => [start + j, 10 * (start + j)]),
    });
  }
  return out;
}

describe('normalise sliding window', () => {
  it('emits the first window exactly when the W-th row arrives', () => {
    const w = new SlidingWindow(4, 1);
    for (let i = 0; i < 3; i++) {
      assert.equal(w.push([i]), null);
      assert.equal(w.filled, i + 1);
    }
    assert.deepEqual(w.push([3]), [[0], [1], [2], [3]]);
  });

  it('follows the definition for strides below, equal to and above the size', () => {
    for (const [size, stride] of [
      [1, 1],
      [3, 1],
      [4, 2],
      [5, 5],
      [2, 5],
      [3, 7],
    ]) {
      const got = run(new SlidingWindow(size, stride), 40);
      assert.deepEqual(got, expected(size, stride, 40), `size ${size} stride ${stride}`);
    }
  });

  it('leaves out the rows between windows when the stride exceeds the size', () => {
    const got = run(new SlidingWindow(2, 5), 12).map((w) => w.rows.map((r) => r[0]));
    assert.deepEqual(got, [
      [0, 1],
      [5, 6],
      [10, 11],
    ]);
  });

  it('starts over after reset', () => {
    const w = new SlidingWindow(3, 2);
    run(w, 4);
    w.reset();
    assert.equal(w.filled, 0);
    const got = run(w, 5, 100);
    assert.deepEqual(
      got.map((g) => g.at),
      [102, 104],
    );
    assert.deepEqual(
      got[0].rows.map((r) => r[0]),
      [100, 101, 102],
    );
  });

  it('hands out copies, so changing one window does not change the next', () => {
    const w = new SlidingWindow(2, 1);
    w.push([1]);
    const first = w.push([2]) as number[][];
    first[1][0] = 99;
    assert.deepEqual(w.push([3]), [[2], [3]]);
  });

  it('rejects sizes and strides below 1', () => {
    assert.throws(() => new SlidingWindow(0, 1), RangeError);
    assert.throws(() => new SlidingWindow(3, 0), RangeError);
    assert.throws(() => new SlidingWindow(2.5, 1), RangeError);
  });
});
