import assert from 'node:assert/strict';
import { InputError, toMatrix, toSample, flattenNumeric } from '../../lib/preprocess/numeric-input';

describe('numeric input shapes', () => {
  it('reads a number, an array, a typed array and an object', () => {
    assert.deepEqual(toSample(3.5), { values: [3.5], channels: ['value'] });
    assert.deepEqual(toSample([1, 2]), { values: [1, 2], channels: ['ch0', 'ch1'] });
    assert.deepEqual(toSample(new Float32Array([1, 2])).values, [1, 2]);
    assert.deepEqual(toSample({ t: 1, h: 2 }), { values: [1, 2], channels: ['t', 'h'] });
  });

  it('orders object channels by the configured list and marks missing ones NaN', () => {
    const s = toSample({ t: 1, h: 2 }, ['h', 't', 'p']);
    assert.deepEqual(s.values.slice(0, 2), [2, 1]);
    assert.ok(Number.isNaN(s.values[2]));
  });

  it('reads a 2-D array as timesteps x features and rejects ragged rows', () => {
    assert.deepEqual(
      toMatrix([
        [1, 2],
        [3, 4],
      ]).rows,
      [
        [1, 2],
        [3, 4],
      ],
    );
    assert.deepEqual(toMatrix({ a: 1 }).rows, [[1]]);
    assert.throws(() => toMatrix([[1, 2], [3]]), InputError);
  });

  it('rejects what is not numeric with a message naming what it got', () => {
    assert.throws(() => toSample('hello'), /got string/);
    assert.throws(() => toSample(null), /got null/);
    assert.throws(() => toSample([]), /empty array/);
    assert.throws(() => flattenNumeric([[1], ['x']]), /found string/);
  });
});
