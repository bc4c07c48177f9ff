/**
 * Plays a CSV file as sensor readings: a header row names the columns, one column may hold
 * timestamps, the chosen channel columns become the payload. Rows are read as a stream (large
 * files are fine), one at a time on request, or pushed at the file's original timing.
 */
import fs from 'node:fs';
import { parse, type Parser } from 'csv-parse';
import { type Clock, type TimerHandle, systemClock } from './clock';
import { SensorError } from './errors';
import { MAX_CHANNELS, itemText, listText } from '../util/text';

export interface CsvReplayOptions {
  path: string;
  /** Field separator; "auto" (default) picks the one of , ; tab | most common in the header. */
  delimiter?: string;
  /** Column with the time of each row (ISO date, "YYYY-MM-DD hh:mm:ss", epoch s or ms). */
  timestampColumn?: string;
  /** Columns to play (default: every column except the timestamp). */
  channels?: string[];
  /** Start again at the first row after the last (default false). */
  loop?: boolean;
  /** Units by channel, copied to each reading. */
  units?: Record<string, string>;
  clock?: Clock;
}

export interface CsvRow {
  /** Numeric cells by channel; empty and non-numeric cells are left out. */
  values: Record<string, number>;
  /** The row's own time (ms since epoch), when there is a timestamp column. */
  timestamp?: number;
  /** 1-based data row number in the file. */
  row: number;
}

const DELIMITERS = [',', ';', '\t', '|'];

/** Picks the delimiter that splits the header line into the most fields. */
export function detectDelimiter(headerLine: string): string {
  let best = ',';
  let most = 0;
  for (const d of DELIMITERS) {
    const count = headerLine.split(d).length - 1;
    if (count > most) {
      most = count;
      best = d;
    }
  }
  return best;
}

/** Parses a timestamp cell; numbers below 1e11 are seconds, larger ones milliseconds. */
export function parseTimestamp(cell: string): number | undefined {
  const text = cell.trim();
  if (text === '') return undefined;
  if (/^-?\d+(\.\d+)?$/.test(text)) {
    const n = Number(text);
    return Math.abs(n) < 1e11 ? n * 1000 : n;
  }
  const ms = Date.parse(text);
  return Number.isNaN(ms) ? undefined : ms;
}

function firstLine(path: string): string {
  const fd = fs.openSync(path, 'r');
  try {
    const buffer = Buffer.alloc(65536);
    const length = fs.readSync(fd, buffer, 0, buffer.length, 0);
    return buffer
      .subarray(0, length)
      .toString('utf8')
      .replace(/^\uFEFF/, '')
      .split(/\r?\n/)[0];
  } finally {
    fs.closeSync(fd);
  }
}

export class CsvReplay {
  readonly path: string;
  private readonly delimiter: string;
  private readonly timestampColumn?: string;
  private readonly loop: boolean;
  private channels: string[] | undefined;
  private readonly requestedChannels?: string[];
  private stream: fs.ReadStream | undefined;
  private parser: Parser | undefined;
  private rows: AsyncIterator<Record<string, string>> | undefined;
  private rowNumber = 0;
  private passRows = 0;
  private closed = false;
  /** Completed passes through the file. */
  passes = 0;

  constructor(options: CsvReplayOptions) {
    if (!options.path) throw new SensorError('BAD_CONFIG', 'CSV replay needs a file path');
    this.path = options.path;
    if (!fs.existsSync(this.path)) throw new SensorError('BAD_CONFIG', `CSV file ${this.path} not found`);
    const header = firstLine(this.path);
    this.delimiter =
      !options.delimiter || options.delimiter === 'auto'
        ? detectDelimiter(header)
        : options.delimiter === '\\t'
          ? '\t'
          : options.delimiter;
    this.timestampColumn = options.timestampColumn || undefined;
    this.requestedChannels = options.channels?.length ? options.channels : undefined;
    this.loop = options.loop ?? false;
  }

  /** The channel columns, known once the header has been read. */
  get channelNames(): string[] {
    return this.channels ? [...this.channels] : [];
  }

  private openPass(): void {
    this.stream = fs.createReadStream(this.path);
    this.parser = parse({
      delimiter: this.delimiter,
      columns: (header: string[]) => this.checkHeader(header.map((h) => h.trim())),
      bom: true,
      trim: true,
      skip_empty_lines: true,
      relax_column_count: true,
    });
    this.stream.on('error', (err) => this.parser?.destroy(err));
    this.rows = (this.stream.pipe(this.parser) as Parser)[Symbol.asyncIterator]();
    this.rowNumber = 0;
    this.passRows = 0;
  }

  private checkHeader(header: string[]): string[] {
    if (this.timestampColumn && !header.includes(this.timestampColumn)) {
      throw new SensorError(
        'BAD_CONFIG',
        `CSV ${this.path} has no timestamp column "${itemText(this.timestampColumn)}"; columns: ${listText(header)}`,
      );
    }
    const missing = (this.requestedChannels ?? []).filter((c) => !header.includes(c));
    if (missing.length) {
      throw new SensorError(
        'BAD_CONFIG',
        `CSV ${this.path} has no column ${listText(missing.map((m) => `"${m}"`))}; columns: ${listText(header)}`,
      );
    }
    this.channels = this.requestedChannels ?? header.filter((h) => h !== this.timestampColumn);
    if (this.channels.length > MAX_CHANNELS) {
      throw new SensorError(
        'BAD_CONFIG',
        `CSV ${this.path} has ${this.channels.length} channel columns, more than ${MAX_CHANNELS}: name the channels to replay`,
      );
    }
    return header;
  }

  private endPass(): void {
    this.parser?.destroy();
    this.stream?.destroy();
    this.rows = undefined;
    this.parser = undefined;
    this.stream = undefined;
  }

  /** The next row with at least one numeric channel; END_OF_DATA after the last (unless looping). */
  async next(): Promise<CsvRow> {
    for (;;) {
      if (this.closed) throw new SensorError('END_OF_DATA', `CSV replay of ${this.path} is closed`);
      if (!this.rows) this.openPass();
      let result: IteratorResult<Record<string, string>>;
      try {
        result = await this.rows!.next();
      } catch (err) {
        this.endPass();
        if (err instanceof SensorError) throw err;
        throw new SensorError(
          'BAD_CONFIG',
          `CSV ${this.path}: ${err instanceof Error ? err.message : String(err)}`,
        );
      }
      if (result.done) {
        this.endPass();
        this.passes++;
        if (!this.loop || this.passRows === 0) {
          throw new SensorError('END_OF_DATA', `end of CSV file ${this.path} after ${this.rowNumber} rows`);
        }
        continue;
      }
      this.rowNumber++;
      const record = result.value;
      const values: Record<string, number> = {};
      for (const channel of this.channels ?? []) {
        const cell = record[channel];
        if (cell === undefined || cell === '') continue;
        const n = Number(cell);
        if (Number.isFinite(n)) values[channel] = n;
      }
      if (Object.keys(values).length === 0) continue;
      this.passRows++;
      const row: CsvRow = { values, row: this.rowNumber };
      if (this.timestampColumn) {
        const t = parseTimestamp(record[this.timestampColumn] ?? '');
        if (t !== undefined) row.timestamp = t;
      }
      return row;
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    this.endPass();
  }
}

export interface OriginalTimingOptions {
  /** Playback speed: 2 plays twice as fast as recorded (default 1). */
  speed?: number;
  /** Longest wait between two rows, ms after speed-up (default 60000), so gaps do not stall. */
  maxGapMs?: number;
  /** Wait used when a row has no usable timestamp or time runs backwards (e.g. at a loop), ms. */
  fallbackGapMs?: number;
  clock?: Clock;
}

/**
 * Pushes rows at the gaps between their timestamps (scaled by speed). Returns a stop function.
 * `onRow` gets each row; `onEnd` the END_OF_DATA or read error that stopped playback.
 */
export function playAtOriginalTiming(
  replay: CsvReplay,
  onRow: (row: CsvRow) => void,
  onEnd: (err: Error) => void,
  options: OriginalTimingOptions = {},
): () => void {
  const clock = options.clock ?? systemClock;
  const speed = options.speed && options.speed > 0 ? options.speed : 1;
  const maxGap = options.maxGapMs ?? 60_000;
  const fallback = options.fallbackGapMs ?? 1000;
  let timer: TimerHandle | undefined;
  let stopped = false;
  // Rows are placed on a timeline anchored at the first row, so slow reads do not add up.
  let anchor: { at: number; recorded: number } | undefined;
  let lastTarget: number | undefined;
  let lastRecorded: number | undefined;

  const targetOf = (row: CsvRow): number => {
    const now = clock.now();
    if (lastTarget === undefined) {
      if (row.timestamp !== undefined) anchor = { at: now, recorded: row.timestamp };
      return now;
    }
    const usable =
      row.timestamp !== undefined &&
      anchor !== undefined &&
      lastRecorded !== undefined &&
      row.timestamp >= lastRecorded &&
      (row.timestamp - lastRecorded) / speed <= maxGap;
    if (usable) return anchor!.at + (row.timestamp! - anchor!.recorded) / speed;
    // No timestamp, time running backwards (a loop) or a long gap: continue from here.
    const target =
      lastTarget +
      (row.timestamp !== undefined && lastRecorded !== undefined && row.timestamp > lastRecorded
        ? maxGap
        : fallback / speed);
    if (row.timestamp !== undefined) anchor = { at: target, recorded: row.timestamp };
    return target;
  };

  const step = (): void => {
    replay.next().then(
      (row) => {
        if (stopped) return;
        const target = targetOf(row);
        lastTarget = target;
        if (row.timestamp !== undefined) lastRecorded = row.timestamp;
        timer = clock.setTimer(
          () => {
            if (stopped) return;
            onRow(row);
            step();
          },
          Math.max(0, target - clock.now()),
        );
      },
      (err: unknown) => {
        if (!stopped) onEnd(err instanceof Error ? err : new Error(String(err)));
      },
    );
  };
  step();
  return () => {
    stopped = true;
    clock.clearTimer(timer);
  };
}
