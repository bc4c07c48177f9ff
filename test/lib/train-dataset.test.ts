import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Dataset, DatasetError, type DatasetOptions } from '../../lib/train/dataset';
import { seededRandom } from '../../lib/util/random';

describe('training dataset on disk', () => {
  let dir: string;
  const open = async (extra: Partial<DatasetOptions> = {}) =>
    (await Dataset.open({ dir, capacity: 5, policy: 'ring', labelKind: 'class', ...extra })).dataset;

  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-dataset-'));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('keeps samples across a reopen (restart), with classes and shape', async () => {
    const first = await open();
    await Promise.all([
      first.add([1, 2, 3], 'cat'),
      first.add([4, 5, 6], 'dog'),
      first.add([7, 8, 9], 'cat'),
    ]);
    await first.close();
    const again = await open();
    assert.equal(again.count, 3);
    assert.deepEqual(again.inputShape, [3]);
    const data = await again.load();
    assert.deepEqual(Array.from(data.x), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(data.classes, ['cat', 'dog']);
    assert.deepEqual(Array.from(data.y as Float32Array), [0, 1, 0]);
    await again.close();
  });

  it('refuses normalisation statistics that are not statistics; the dataset keeps working', async () => {
    const ds = await open();
    // A BigInt64Array cannot be written as JSON: kept, it made every later write fail.
    for (const bad of [new BigInt64Array([1n]), { method: 'zscore' }, 'stats', [1, 2]]) {
      await assert.rejects(ds.setNormalisation(bad), /normalisation/);
    }
    await ds.add([1, 2, 3], 'cat');
    const good = { method: 'zscore', channels: ['a', 'b', 'c'], mean: [0, 0, 0], std: [1, 1, 1] };
    await ds.setNormalisation(good);
    await ds.add([4, 5, 6], 'dog');
    await ds.close();
    const again = await open();
    assert.equal(again.count, 2);
    assert.deepEqual((again.normalisation as { mean: number[] }).mean, [0, 0, 0]);
    await again.close();
  });

  it('ring buffer keeps the newest `capacity` samples, oldest first, and the file stays bounded', async () => {
    const ds = await open({ labelKind: 'none' });
    for (let i = 0; i < 12; i++) await ds.add([i, i]);
    assert.equal(ds.count, 5);
    assert.equal(ds.seen, 12);
    const data = await ds.load();
    assert.deepEqual(Array.from(data.x), [7, 7, 8, 8, 9, 9, 10, 10, 11, 11]);
    assert.equal((await fs.stat(path.join(dir, 'samples.bin'))).size, 5 * 2 * 4);
    await ds.close();
  });

  it('reservoir keeps a bounded uniform sample of everything seen', async () => {
    const ds = await open({ labelKind: 'none', policy: 'reservoir', capacity: 50 });
    ds.useRandom(seededRandom(11));
    const adds: Promise<void>[] = [];
    for (let i = 0; i < 1000; i++) adds.push(ds.add([i]));
    await Promise.all(adds);
    assert.equal(ds.count, 50);
    const kept = Array.from((await ds.load()).x);
    assert.equal(new Set(kept).size, 50);
    // A uniform sample reaches well past the first 50 and into the last third of the stream.
    assert.ok(kept.filter((v) => v >= 50).length > 35, `kept ${kept}`);
    assert.ok(kept.some((v) => v >= 667));
    await ds.close();
  });

  it('rejects samples of the wrong shape or label type with a clear error and stores nothing', async () => {
    const ds = await open({ labelKind: 'class' });
    await ds.add(
      [
        [1, 2],
        [3, 4],
      ],
      'a',
    );
    const bad: Array<[unknown, unknown, RegExp]> = [
      [[1, 2, 3, 4], 'a', /shape \[4\] does not match the dataset's \[2, 2\]/],
      [[[1, 2], [3]], 'a', /ragged/],
      [
        [
          [1, 2],
          [3, 'x'],
        ],
        'a',
        /expected numbers/,
      ],
      [
        [
          [1, 2],
          [3, NaN],
        ],
        'a',
        /not a finite number/,
      ],
      [
        [
          [1, 2],
          [3, 4],
        ],
        undefined,
        /no label/,
      ],
      [
        [
          [1, 2],
          [3, 4],
        ],
        0.5,
        /whole number/,
      ],
      [
        [
          [1, 2],
          [3, 4],
        ],
        { a: 1 },
        /name or a whole number/,
      ],
      ['text', 'a', /sample rejected/],
    ];
    for (const [payload, label, message] of bad) {
      assert.throws(
        () => ds.add(payload, label),
        (err: Error) => err instanceof DatasetError && message.test(err.message),
      );
    }
    assert.equal(ds.count, 1);
    assert.equal(ds.seen, 1);
    const reg = await open({ labelKind: 'vector', capacity: 3, dir: path.join(dir, 'reg') });
    await reg.add({ t: 1, h: 2 }, [0.5, 1]);
    assert.throws(() => reg.add({ t: 1, h: 2 }, [1]), /target has 1 values, the dataset's have 2/);
    assert.throws(() => reg.add({ t: 1 }, [1, 2]), /"h" is missing/);
    assert.throws(() => reg.add({ t: 1, h: 2 }, 'x'), /regression target/);
    assert.equal(reg.count, 1);
    await Promise.all([ds.close(), reg.close()]);
  });

  it('fixed classes reject unknown labels; loaded classes sort numerically', async () => {
    const fixed = await open({ classes: ['low', 'high'] });
    assert.throws(() => fixed.add([1], 'medium'), /unknown class "medium"/);
    await fixed.close();
    const digits = await open({ dir: path.join(dir, 'digits') });
    for (const label of [10, 2, 7, 2]) await digits.add([label], label);
    const data = await digits.load();
    assert.deepEqual(data.classes, ['2', '7', '10']);
    assert.deepEqual(Array.from(data.y as Float32Array), [2, 0, 1, 0]);
    await digits.close();
  });

  it('exports samples in their shape and clears everything', async () => {
    const ds = await open();
    await ds.add(
      [
        [1, 2],
        [3, 4],
      ],
      'up',
    );
    await ds.add(
      [
        [5, 6],
        [7, 8],
      ],
      'down',
    );
    const exported = await ds.export();
    assert.equal(exported.count, 2);
    assert.deepEqual(exported.samples[0], {
      x: [
        [1, 2],
        [3, 4],
      ],
      y: 'up',
    });
    assert.deepEqual(exported.samples[1].y, 'down');
    await ds.clear();
    assert.equal(ds.count, 0);
    await ds.add([9], 'new');
    await ds.close();
    const reopened = await open();
    assert.equal(reopened.count, 1);
    assert.deepEqual(reopened.inputShape, [1]);
    await reopened.close();
  });

  it('a changed capacity keeps the newest samples; a changed label kind starts afresh with a reason', async () => {
    const ds = await open({ capacity: 4 });
    for (let i = 0; i < 4; i++) await ds.add([i], i % 2 ? 'odd' : 'even');
    await ds.close();
    const smaller = await open({ capacity: 2 });
    const data = await smaller.load();
    assert.deepEqual(Array.from(data.x), [2, 3]);
    assert.deepEqual(
      Array.from(data.y as Float32Array).map((i) => data.classes[i]),
      ['even', 'odd'],
    );
    await smaller.close();
    const { dataset, reset } = await Dataset.open({ dir, capacity: 2, policy: 'ring', labelKind: 'vector' });
    assert.match(reset ?? '', /class labels/);
    assert.equal(dataset.count, 0);
    await dataset.close();
  });
});
