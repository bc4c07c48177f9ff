import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ITEM_TEXT_CHARS, MAX_CHANNELS, itemText, listText } from '../../lib/util/text';
import { Normaliser, Scaler, toSample } from '../../lib/preprocess';
import { CsvReplay } from '../../lib/sensors';
import { prepareInput as servePrepare } from '../../lib/models/serve/inference';

describe('bounded texts: lists and names in errors do not grow with the input', () => {
  it('listText names the first items and counts the rest; itemText cuts one item', () => {
    assert.equal(listText(['a', 'b', 'c']), 'a, b, c');
    assert.equal(listText(['a', 'b', 'c'], 2), 'a, b, … and 1 more');
    assert.equal(listText([], 2), '');
    assert.equal(listText(['x'.repeat(100)], 3), `${'x'.repeat(ITEM_TEXT_CHARS - 1)}…`);
    const long = Array.from({ length: 1_000_000 }, (_, i) => `ch${i}`);
    const text = listText(long);
    assert.ok(text.endsWith('… and 999992 more'), text);
    assert.ok(text.length < 120, `${text.length} characters`);
    assert.equal(itemText('short'), 'short');
    assert.equal(itemText('abcdef', 4), 'abc…');
  });

  it('the normaliser refuses a layout of more than MAX_CHANNELS while learning, then still works', () => {
    const n = new Normaliser({ method: 'zscore', source: 'welford', learnCount: 2 });
    const huge = new Float64Array(1_000_000).fill(1);
    assert.throws(
      () => n.process(Array.from(huge)),
      (err: Error) => {
        assert.match(err.message, new RegExp(`1000000 channels is more than the ${MAX_CHANNELS}`));
        assert.ok(err.message.length < 300, `${err.message.length} characters`);
        return true;
      },
    );
    // The refused sample fixed nothing: a normal sample is learned.
    assert.equal(n.features, null, 'the refused sample fixed no layout');
    n.process([1, 2]);
    assert.deepEqual(n.features, ['ch0', 'ch1']);
    // A mismatch later names at most a few channels.
    const wide = new Normaliser({ method: 'zscore', source: 'welford', learnCount: 1 });
    wide.process(Array.from({ length: 4000 }, (_, i) => i));
    assert.throws(
      () => wide.process([1, 2, 3]),
      (err: Error) =>
        /expected 4000 values \(ch0, .*… and 3992 more\), got 3/.test(err.message) &&
        err.message.length < 200,
    );
  });

  it('an object with 100,000 keys: toSample refuses it; edge-infer input errors stay short', () => {
    const big: Record<string, number> = {};
    for (let i = 0; i < 100_000; i++) big[`k${i}`] = i;
    assert.throws(() => toSample(big), /100000 named values is more than 4096 channels/);
    const some: Record<string, number> = {};
    for (let i = 0; i < 3000; i++) some[`channel-with-a-long-name-${i}-${'x'.repeat(200)}`] = i;
    assert.throws(
      () => servePrepare(some, [4]),
      (err: Error) =>
        /got an object of 3000 named numbers \(.*… and 2992 more\)/.test(err.message) &&
        err.message.length < 600,
    );
    const scaler = new Scaler({
      method: 'zscore',
      channels: ['a', 'b'],
      mean: [0, 0],
      std: [1, 1],
      min: [0, 0],
      max: [1, 1],
      count: 0,
      range: [0, 1],
      clip: null,
    });
    assert.throws(
      () => scaler.scale(new Array(5000).fill(0)),
      (err: Error) => err.message.length < 100,
    );
  });

  it('a CSV with more than MAX_CHANNELS columns is refused naming the count; missing columns are listed briefly', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-text-'));
    try {
      const wide = path.join(dir, 'wide.csv');
      const header = Array.from({ length: 5000 }, (_, i) => `c${i}`);
      fs.writeFileSync(wide, `${header.join(',')}\n${header.map(() => '1').join(',')}\n`);
      await assert.rejects(
        new CsvReplay({ path: wide, delimiter: ',' }).next(),
        /5000 channel columns, more than 4096/,
      );
      const replay = new CsvReplay({ path: wide, delimiter: ',', channels: ['nope'] });
      await assert.rejects(replay.next(), (err: Error) =>
        /columns: c0, c1, .*… and 4992 more$/.test(err.message),
      );
      await replay.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
