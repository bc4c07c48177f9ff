import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  CsvReplay,
  SimClock,
  createSensorSource,
  detectDelimiter,
  isSensorError,
  parseTimestamp,
  playAtOriginalTiming,
  type CsvRow,
  type SensorReading,
} from '../../lib/sensors';

describe('CSV replay', () => {
  let dir: string;
  let semicolons: string;
  let commas: string;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-csv-'));
    semicolons = path.join(dir, 'pump.csv');
    // The layout of the SKAB benchmark: semicolons, a datetime column, sensor columns.
    fs.writeFileSync(
      semicolons,
      '\uFEFFdatetime;Accelerometer1RMS;Current;Temperature\n' +
        '2020-03-09 10:14:33;0.0273;0.55;90.1\n' +
        '2020-03-09 10:14:34;0.0281;0.61;90.2\n' +
        '\n' +
        '2020-03-09 10:14:36;0.0290;;90.4\n' +
        '2020-03-09 10:14:37;n/a;n/a;n/a\n' +
        '2020-03-09 10:14:39;0.0301;0.70;90.5\n',
    );
    commas = path.join(dir, 'simple.csv');
    fs.writeFileSync(commas, 'time,a,b\n1700000000,1,10\n1700000002,2,20\n1700000003,3,30\n');
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('detects the delimiter and parses timestamps', () => {
    assert.equal(detectDelimiter('datetime;a;b'), ';');
    assert.equal(detectDelimiter('a\tb\tc'), '\t');
    assert.equal(detectDelimiter('a,b'), ',');
    assert.equal(parseTimestamp('1700000000'), 1700000000000);
    assert.equal(parseTimestamp('1700000000123'), 1700000000123);
    assert.equal(parseTimestamp('2020-03-09T10:14:33Z'), Date.UTC(2020, 2, 9, 10, 14, 33));
    assert.equal(parseTimestamp('soon'), undefined);
  });

  it('plays rows in order: header, channels, timestamp; skips blank and non-numeric cells', async () => {
    const replay = new CsvReplay({
      path: semicolons,
      timestampColumn: 'datetime',
      channels: ['Current', 'Temperature'],
    });
    const rows: CsvRow[] = [];
    for (let i = 0; i < 4; i++) rows.push(await replay.next());
    assert.deepEqual(replay.channelNames, ['Current', 'Temperature']);
    assert.deepEqual(
      rows.map((r) => r.values),
      [
        { Current: 0.55, Temperature: 90.1 },
        { Current: 0.61, Temperature: 90.2 },
        { Temperature: 90.4 },
        { Current: 0.7, Temperature: 90.5 },
      ],
    );
    assert.equal(rows[0].timestamp, new Date(2020, 2, 9, 10, 14, 33).getTime());
    assert.deepEqual(
      rows.map((r) => r.row),
      [1, 2, 3, 5],
      'row 4 has no number and is skipped',
    );
    await assert.rejects(replay.next(), (err) => isSensorError(err, 'END_OF_DATA'));
    await replay.close();
  });

  it('uses every column but the timestamp by default, and loops', async () => {
    const replay = new CsvReplay({ path: commas, delimiter: ',', timestampColumn: 'time', loop: true });
    const values: number[] = [];
    for (let i = 0; i < 7; i++) values.push((await replay.next()).values.a);
    assert.deepEqual(replay.channelNames, ['a', 'b']);
    assert.deepEqual(values, [1, 2, 3, 1, 2, 3, 1]);
    assert.equal(replay.passes, 2);
    await replay.close();
  });

  it('names the columns when a configured one is missing', async () => {
    const replay = new CsvReplay({ path: commas, channels: ['a', 'pressure'] });
    await assert.rejects(replay.next(), /no column "pressure"; columns: time, a, b/);
    await replay.close();
    assert.throws(() => new CsvReplay({ path: path.join(dir, 'missing.csv') }), /not found/);
  });

  it('plays at the recorded timing, scaled by speed', async () => {
    const clock = new SimClock();
    const replay = new CsvReplay({ path: commas, timestampColumn: 'time' });
    const got: Array<{ a: number; at: number }> = [];
    let ended: Error | undefined;
    let first: number | undefined;
    const stop = playAtOriginalTiming(
      replay,
      (row) => {
        first ??= clock.now();
        got.push({ a: row.values.a, at: clock.now() - first });
      },
      (err) => (ended = err),
      { clock, speed: 2 },
    );
    // Rows are 2 s and 1 s apart; at double speed 1 s and 0.5 s (the clock moves in 50 ms steps).
    // Simulated time moves only while a row waits on its timer, not while the file is read.
    for (let i = 0; i < 5000 && !ended; i++) {
      await new Promise((resolve) => setTimeout(resolve, 1));
      if (clock.pendingTimers() > 0) clock.advance(50);
    }
    stop();
    assert.deepEqual(got, [
      { a: 1, at: 0 },
      { a: 2, at: 1000 },
      { a: 3, at: 1500 },
    ]);
    assert.ok(ended && isSensorError(ended, 'END_OF_DATA'));
    await replay.close();
  });

  it('as a sensor source: readings with units and the recorded time', async () => {
    const source = createSensorSource({
      device: 'csv',
      csv: { path: semicolons, timestampColumn: 'datetime', units: { Temperature: '°C' } },
    });
    const reading: SensorReading = await source.read();
    assert.deepEqual(reading.payload, { Accelerometer1RMS: 0.0273, Current: 0.55, Temperature: 90.1 });
    assert.deepEqual(reading.units, { Accelerometer1RMS: '', Current: '', Temperature: '°C' });
    assert.equal(reading.recordedAt, new Date(2020, 2, 9, 10, 14, 33).getTime());
    assert.equal(source.start, undefined, 'rows come on read() unless original timing is asked for');
    await source.close();
    await assert.rejects(source.read(), (err) => isSensorError(err, 'END_OF_DATA'));
  });
});
