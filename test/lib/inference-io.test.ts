import assert from 'node:assert/strict';
import {
  classify,
  interpretOutput,
  prepareInput,
  type Normalisation,
} from '../../lib/models/serve/inference';
import { InputError } from '../../lib/preprocess/numeric-input';

describe('inference input and output', () => {
  it('reshapes every numeric input form to the model input, row-major', () => {
    const want = [1, 2, 3, 4, 5, 6];
    const forms: unknown[] = [
      [1, 2, 3, 4, 5, 6],
      Float32Array.from(want),
      [
        [1, 2],
        [3, 4],
        [5, 6],
      ],
      [
        [[1], [2]],
        [[3], [4]],
        [[5], [6]],
      ],
      [new Float64Array([1, 2, 3]), new Float64Array([4, 5, 6])],
    ];
    for (const form of forms) assert.deepEqual(Array.from(prepareInput(form, [3, 2])), want);
    assert.deepEqual(Array.from(prepareInput(7, [1])), [7]);
    assert.deepEqual(Array.from(prepareInput({ t: 20, h: 40 }, [2])), [20, 40]);
    assert.deepEqual(Array.from(prepareInput({ t: 20, h: 40 }, [2], { channels: ['h', 't'] })), [40, 20]);
  });

  it('names the expected and the given shape when they differ', () => {
    assert.throws(
      () => prepareInput([[1, 2, 3]], [50, 6]),
      (err: Error) =>
        err instanceof InputError &&
        /expects input shape \[50, 6\] \(300 values per message\); got a 1x3 array \(3 values\)/.test(
          err.message,
        ),
    );
    assert.throws(() => prepareInput({ a: 1 }, [2]), /got an object of 1 named numbers \(a\)/);
    assert.throws(() => prepareInput([1, 2, 3], [2]), /got an array of 3 numbers/);
    assert.throws(() => prepareInput([[1, 2], [3]], [3]), /ragged array/);
    assert.throws(() => prepareInput('12', [1]), /got string/);
    assert.throws(() => prepareInput([1, 'x'], [2]), /holds string/);
  });

  it('rejects NaN and infinities, saying where', () => {
    assert.throws(
      () =>
        prepareInput(
          [
            [1, 2],
            [3, NaN],
          ],
          [2, 2],
        ),
      /input value \[1\]\[1\] is NaN/,
    );
    assert.throws(() => prepareInput({ t: 1, h: Infinity }, [2]), /channel "h" is infinite/);
    assert.throws(() => prepareInput({ t: 1 }, [2], { channels: ['t', 'h'] }), /channel "h" is NaN/);
  });

  it('applies z-score and min-max normalisation per channel (last axis), and reads objects in its channel order', () => {
    const stats = { method: 'zscore', channels: ['t', 'h'], mean: [20, 50], std: [2, 10] } as Normalisation;
    assert.deepEqual(Array.from(prepareInput({ h: 60, t: 24 }, [2], { normalisation: stats })), [2, 1]);
    const z = prepareInput(
      [
        [22, 60],
        [18, 40],
      ],
      [2, 2],
      {
        normalisation: {
          method: 'zscore',
          channels: ['t', 'h'],
          mean: [20, 50],
          std: [2, 10],
        } as Normalisation,
      },
    );
    assert.deepEqual(Array.from(z), [1, 1, -1, -1]);
    const mm = prepareInput([5, 30], [2], {
      normalisation: {
        method: 'minmax',
        channels: ['a', 'b'],
        min: [0, 10],
        max: [10, 30],
        range: [-1, 1],
      } as Normalisation,
    });
    assert.deepEqual(Array.from(mm), [0, 1]);
    assert.throws(
      () =>
        prepareInput([1, 2, 3], [3], {
          normalisation: {
            method: 'zscore',
            channels: ['a', 'b'],
            mean: [0, 0],
            std: [1, 1],
          } as Normalisation,
        }),
      /normalisation statistics have 2 channels; the model input \[3\] has 3 features/,
    );
  });

  it('classifies: keeps a distribution, softmaxes logits, reads one output as P(class 1), top-k', () => {
    const dist = classify([0.1, 0.7, 0.2], { labels: ['a', 'b', 'c'], topK: 2 });
    assert.equal(dist.label, 'b');
    assert.ok(Math.abs(dist.confidence - 0.7) < 1e-9);
    assert.deepEqual(
      dist.top?.map((t) => t.label),
      ['b', 'c'],
    );
    const logits = classify([2, 0, 0]);
    assert.equal(logits.label, '0');
    assert.ok(Math.abs(logits.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-9);
    assert.ok(Math.abs(logits.confidence - Math.exp(2) / (Math.exp(2) + 2)) < 1e-9);
    const binary = classify([0.8], { labels: ['ok', 'fault'] });
    assert.equal(binary.label, 'fault');
    assert.deepEqual(
      binary.probabilities.map((p) => Math.round(p * 10) / 10),
      [0.2, 0.8],
    );
  });

  it('returns regression values and raw nested outputs', () => {
    assert.equal(interpretOutput(Float32Array.from([2.5]), [1], 'regress'), 2.5);
    assert.deepEqual(interpretOutput(Float32Array.from([1, 2]), [2], 'regress'), [1, 2]);
    assert.deepEqual(interpretOutput(Float32Array.from([1, 2, 3, 4, 5, 6]), [3, 2], 'raw'), [
      [1, 2],
      [3, 4],
      [5, 6],
    ]);
  });
});
