import assert from 'node:assert/strict';
import { DatasetError, InputError } from '../../lib/errors';
import { nest, nestedShape, shapeText, sizeOf } from '../../lib/preprocess/shape';

describe('shape helpers', () => {
  it('counts elements, prints shapes and measures nested arrays', () => {
    assert.equal(sizeOf([]), 1);
    assert.equal(sizeOf([50, 6]), 300);
    assert.equal(sizeOf([3, 0]), 0);
    assert.equal(shapeText([50, 6]), '[50, 6]');
    assert.deepEqual(nestedShape(4), []);
    assert.deepEqual(nestedShape(Float32Array.of(1, 2, 3)), [3]);
    assert.deepEqual(
      nestedShape([
        [[1], [2]],
        [[3], [4]],
        [[5], [6]],
      ]),
      [3, 2, 1],
    );
  });

  it('rejects ragged, empty and non-numeric arrays through the caller-chosen error', () => {
    assert.throws(
      () => nestedShape([[1, 2], [3]]),
      (e) =>
        e instanceof InputError &&
        /ragged array: input\[0\] has shape \[2\], input\[1\] has \[1\]/.test(e.message),
    );
    assert.throws(() => nestedShape([]), /input is an empty array/);
    assert.throws(
      () => nestedShape([1, 'x'], 'payload', (m) => new DatasetError(m)),
      (e) => e instanceof DatasetError && /payload\[1\] holds string, expected numbers/.test(e.message),
    );
  });

  it('nests flat row-major values back into the shape (arrays and typed arrays alike)', () => {
    const flat = [1, 2, 3, 4, 5, 6];
    assert.deepEqual(nest(flat, [3, 2]), [
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
    assert.deepEqual(nest(Float32Array.from(flat), [2, 3, 1]), [
      [[1], [2], [3]],
      [[4], [5], [6]],
    ]);
    assert.deepEqual(nest(flat, [6]), flat);
  });
});
