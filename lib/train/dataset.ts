/**
 * A training dataset on disk, one per node: `<dir>/samples.bin` holds `capacity` fixed-size
 * slots of float32 (features, then the target), `<dir>/meta.json` says how many are filled and
 * what they mean. It survives restarts, never grows past its capacity (ring buffer: the newest
 * replace the oldest; reservoir: a uniform sample of everything seen), and checks every sample
 * before it is stored: a sample of the wrong shape or label type is rejected and not stored.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { flattenNumeric, toSample } from '../preprocess/numeric-input';
import { checkNormalisation } from '../preprocess/scaling';
import { readJsonFile, writeFileAtomic } from '../util/atomic';
import { DatasetError } from '../errors';
import { nest, nestedShape, shapeText, sizeOf } from '../preprocess/shape';

export { DatasetError };

export type LabelKind = 'class' | 'vector' | 'none';
export type RetentionPolicy = 'ring' | 'reservoir';

export interface DatasetOptions {
  dir: string;
  capacity: number;
  policy: RetentionPolicy;
  labelKind: LabelKind;
  /** Fixes the sample shape; otherwise the first sample stored sets it. */
  inputShape?: number[];
  /** Fixes the class names (others are rejected); otherwise classes are learnt as they come. */
  classes?: string[];
}

interface DatasetMeta {
  format: 1;
  labelKind: LabelKind;
  inputShape: number[] | null;
  /** Names of an object payload's numbers, in stored order (when samples came as objects). */
  channels: string[] | null;
  /** Width of a regression target. */
  targetSize: number | null;
  /** Class names; a stored class label is an index into this list. */
  classes: string[];
  capacity: number;
  policy: RetentionPolicy;
  /** Filled slots. */
  count: number;
  /** Samples ever accepted (decides ring position and reservoir odds). */
  seen: number;
  normalisation?: unknown;
}

export interface LoadedDataset {
  x: Float32Array;
  /** Class indices into `classes` (sorted), regression targets, or absent for autoencoders. */
  y?: Float32Array;
  count: number;
  inputShape: number[];
  /** Sorted class names (classification). */
  classes: string[];
  targetSize: number;
  channels: string[] | null;
  normalisation?: unknown;
}

export interface ExportedDataset {
  inputShape: number[] | null;
  labelKind: LabelKind;
  classes: string[];
  count: number;
  seen: number;
  capacity: number;
  policy: RetentionPolicy;
  samples: Array<{ x: unknown; y?: string | number[] }>;
}

export class Dataset {
  private readonly binPath: string;
  private readonly metaPath: string;
  private pending: Array<{ slot: number; record: Float32Array }> = [];
  private flushing: Promise<void> = Promise.resolve();
  private flushScheduled: Promise<void> | undefined;
  private handle: fs.FileHandle | undefined;
  private random: () => number = Math.random;

  private constructor(
    private readonly options: DatasetOptions,
    private meta: DatasetMeta,
  ) {
    this.binPath = path.join(options.dir, 'samples.bin');
    this.metaPath = path.join(options.dir, 'meta.json');
  }

  /**
   * Opens (or creates) the dataset in `options.dir`. Samples stored under a different label kind
   * or shape are dropped (the reason is returned); a changed capacity keeps the newest samples.
   */
  static async open(options: DatasetOptions): Promise<{ dataset: Dataset; reset?: string }> {
    if (!Number.isInteger(options.capacity) || options.capacity < 1) {
      throw new Error(`the dataset capacity must be a positive whole number, got ${options.capacity}`);
    }
    await fs.mkdir(options.dir, { recursive: true });
    const fresh: DatasetMeta = {
      format: 1,
      labelKind: options.labelKind,
      inputShape: options.inputShape ?? null,
      channels: null,
      targetSize: null,
      classes: options.classes ? [...options.classes] : [],
      capacity: options.capacity,
      policy: options.policy,
      count: 0,
      seen: 0,
    };
    let stored: DatasetMeta | undefined;
    try {
      stored = await readJsonFile<DatasetMeta>(path.join(options.dir, 'meta.json'));
    } catch {
      stored = undefined;
    }
    let reset: string | undefined;
    let keep: LoadedDataset | undefined;
    if (stored && stored.count > 0) {
      if (stored.labelKind !== options.labelKind) {
        reset = `stored samples have ${stored.labelKind} labels, the node now expects ${options.labelKind}`;
      } else if (
        options.inputShape &&
        stored.inputShape &&
        shapeText(stored.inputShape) !== shapeText(options.inputShape)
      ) {
        reset = `stored samples have shape ${shapeText(stored.inputShape)}, the node now expects ${shapeText(options.inputShape)}`;
      } else if (options.classes && stored.classes.some((c) => !options.classes?.includes(c))) {
        reset = `stored samples have classes outside ${options.classes.join(', ')}`;
      } else if (stored.capacity !== options.capacity || stored.policy !== options.policy) {
        const old = new Dataset({ ...options, capacity: stored.capacity, policy: stored.policy }, stored);
        keep = await old.readAll(false);
      } else {
        const dataset = new Dataset(options, {
          ...stored,
          classes: Dataset.mergeClasses(stored.classes, options.classes),
        });
        await dataset.openFile(false);
        return { dataset };
      }
    }
    const meta: DatasetMeta = { ...fresh };
    if (keep && stored) {
      meta.inputShape = stored.inputShape;
      meta.channels = stored.channels;
      meta.targetSize = stored.targetSize;
      meta.classes = Dataset.mergeClasses(stored.classes, options.classes);
      meta.normalisation = stored.normalisation;
    }
    const dataset = new Dataset(options, meta);
    await dataset.openFile(true);
    if (keep) {
      const start = Math.max(0, keep.count - options.capacity);
      const width = dataset.recordWidth();
      const classIndex = new Map(meta.classes.map((c, i) => [c, i]));
      for (let i = start; i < keep.count; i++) {
        const record = new Float32Array(width);
        record.set(keep.x.subarray(i * sizeOf(keep.inputShape), (i + 1) * sizeOf(keep.inputShape)));
        if (meta.labelKind === 'class')
          record[width - 1] = classIndex.get(keep.classes[keep.y?.[i] ?? 0]) ?? 0;
        if (meta.labelKind === 'vector') {
          record.set(
            (keep.y as Float32Array).subarray(i * keep.targetSize, (i + 1) * keep.targetSize),
            sizeOf(keep.inputShape),
          );
        }
        dataset.place(record);
      }
    }
    await dataset.flush();
    return { dataset, reset };
  }

  private static mergeClasses(stored: string[], fixed?: string[]): string[] {
    if (!fixed) return [...stored];
    return [...fixed, ...stored.filter((c) => !fixed.includes(c))];
  }

  private async openFile(truncate: boolean): Promise<void> {
    if (truncate) await fs.writeFile(this.binPath, Buffer.alloc(0));
    else await fs.appendFile(this.binPath, Buffer.alloc(0));
    this.handle = await fs.open(this.binPath, 'r+');
  }

  get count(): number {
    return this.meta.count;
  }

  get seen(): number {
    return this.meta.seen;
  }

  get capacity(): number {
    return this.meta.capacity;
  }

  get inputShape(): number[] | null {
    return this.meta.inputShape;
  }

  get classes(): string[] {
    return [...this.meta.classes];
  }

  get normalisation(): unknown {
    return this.meta.normalisation;
  }

  /** For repeatable reservoir sampling in tests and benchmarks. */
  useRandom(random: () => number): void {
    this.random = random;
  }

  private recordWidth(): number {
    const features = sizeOf(this.meta.inputShape ?? [0]);
    if (this.meta.labelKind === 'class') return features + 1;
    if (this.meta.labelKind === 'vector') return features + (this.meta.targetSize ?? 0);
    return features;
  }

  /** Turns a payload into flat features of the dataset's shape, or throws a DatasetError. */
  private features(payload: unknown): { values: Float32Array; shape: number[]; channels?: string[] } {
    let values: Float32Array;
    let shape: number[];
    let channels: string[] | undefined;
    try {
      if (
        payload !== null &&
        typeof payload === 'object' &&
        !Array.isArray(payload) &&
        !ArrayBuffer.isView(payload)
      ) {
        const sample = toSample(payload, this.meta.channels ?? undefined);
        values = Float32Array.from(sample.values);
        shape = [values.length];
        channels = sample.channels;
      } else if (typeof payload === 'number') {
        values = Float32Array.of(payload);
        shape = [1];
      } else {
        shape = nestedShape(payload, 'payload', (message) => new DatasetError(message));
        values = flattenNumeric(payload);
      }
    } catch (err) {
      throw new DatasetError(`sample rejected: ${(err as Error).message}`);
    }
    if (shape.length === 0 || values.length === 0)
      throw new DatasetError('sample rejected: no numbers in msg.payload');
    const bad = values.findIndex((v) => !Number.isFinite(v));
    if (bad >= 0) {
      const name = channels ? `"${channels[bad]}"` : `value ${bad}`;
      throw new DatasetError(`sample rejected: ${name} is missing or not a finite number`);
    }
    const expected = this.meta.inputShape;
    if (expected && shapeText(expected) !== shapeText(shape)) {
      throw new DatasetError(
        `sample rejected: shape ${shapeText(shape)} does not match the dataset's ${shapeText(expected)}`,
      );
    }
    return { values, shape, channels };
  }

  /** The stored form of a label: a class index, target values, or nothing; or a DatasetError. */
  private target(label: unknown): { classIndex?: number; newClass?: string; values?: Float32Array } {
    const kind = this.meta.labelKind;
    if (kind === 'none') return {};
    if (label === undefined || label === null) throw new DatasetError('sample rejected: it has no label');
    if (kind === 'class') {
      let name: string;
      if (typeof label === 'string' && label.trim() !== '') name = label.trim();
      else if (typeof label === 'number' && Number.isInteger(label)) name = String(label);
      else if (typeof label === 'boolean') name = String(label);
      else {
        throw new DatasetError(
          `sample rejected: a class label must be a name or a whole number, got ${typeof label === 'number' ? label : Array.isArray(label) ? 'an array' : typeof label}`,
        );
      }
      const index = this.meta.classes.indexOf(name);
      if (index >= 0) return { classIndex: index };
      if (this.options.classes) {
        throw new DatasetError(
          `sample rejected: unknown class "${name}" (expected one of ${this.options.classes.join(', ')})`,
        );
      }
      return { classIndex: this.meta.classes.length, newClass: name };
    }
    let values: Float32Array;
    if (typeof label === 'number') values = Float32Array.of(label);
    else {
      try {
        if (nestedShape(label).length !== 1) throw new Error('expected a flat array');
        values = flattenNumeric(label);
      } catch {
        throw new DatasetError(
          'sample rejected: a regression target must be a number or an array of numbers',
        );
      }
    }
    if (values.some((v) => !Number.isFinite(v)))
      throw new DatasetError('sample rejected: the target is not finite');
    const width = this.meta.targetSize;
    if (width !== null && values.length !== width) {
      throw new DatasetError(
        `sample rejected: the target has ${values.length} values, the dataset's have ${width}`,
      );
    }
    return { values };
  }

  /** Counts a new sample and queues it for its slot (a reservoir may skip it). */
  private place(record: Float32Array): void {
    const { capacity, policy } = this.meta;
    const seen = this.meta.seen++;
    let slot: number;
    if (seen < capacity) slot = seen;
    else if (policy === 'ring') slot = seen % capacity;
    else {
      const pick = Math.floor(this.random() * (seen + 1));
      if (pick >= capacity) return;
      slot = pick;
    }
    this.meta.count = Math.min(capacity, this.meta.count + (slot >= this.meta.count ? 1 : 0));
    this.pending.push({ slot, record });
  }

  /**
   * Checks a sample and stores it. Rejections throw a DatasetError before anything changes; the
   * returned promise settles once the sample is on disk.
   */
  add(payload: unknown, label?: unknown): Promise<void> {
    const { values, shape, channels } = this.features(payload);
    const target = this.target(label);
    if (!this.meta.inputShape) this.meta.inputShape = shape;
    if (channels && !this.meta.channels) this.meta.channels = channels;
    if (target.values && this.meta.targetSize === null) this.meta.targetSize = target.values.length;
    if (target.newClass !== undefined) this.meta.classes.push(target.newClass);
    const record = new Float32Array(this.recordWidth());
    record.set(values);
    if (target.classIndex !== undefined) record[values.length] = target.classIndex;
    if (target.values) record.set(target.values, values.length);
    this.place(record);
    return this.scheduleFlush();
  }

  async setNormalisation(stats: unknown): Promise<void> {
    // Checked before it is kept: a value that is not statistics (or cannot be written as JSON,
    // e.g. a BigInt64Array) would make every later write of the dataset fail.
    this.meta.normalisation = checkNormalisation(stats);
    return this.scheduleFlush();
  }

  /** Coalesces the writes of samples that arrive together into one flush. */
  private scheduleFlush(): Promise<void> {
    this.flushScheduled ??= new Promise<void>((resolve) => setImmediate(resolve)).then(() => {
      this.flushScheduled = undefined;
      return this.flush();
    });
    return this.flushScheduled;
  }

  /** Writes pending samples (then fsync) and then meta.json atomically, one flush at a time. */
  flush(): Promise<void> {
    const run = this.flushing.then(async () => {
      const batch = this.pending;
      this.pending = [];
      const meta = JSON.stringify(this.meta);
      if (batch.length > 0 && this.handle) {
        const width = this.recordWidth() * 4;
        for (const { slot, record } of batch) {
          await this.handle.write(
            new Uint8Array(record.buffer, record.byteOffset, record.byteLength),
            0,
            width,
            slot * width,
          );
        }
        await this.handle.sync();
      }
      await writeFileAtomic(this.metaPath, meta);
    });
    this.flushing = run.catch(() => undefined);
    return run;
  }

  /** Every stored sample, oldest first for a ring buffer; classes sorted (numerically when all are numbers). */
  async load(): Promise<LoadedDataset> {
    await this.flushScheduled;
    await this.flushing;
    return this.readAll(true);
  }

  private async readAll(sortClasses: boolean): Promise<LoadedDataset> {
    const { count, capacity, seen, labelKind } = this.meta;
    const inputShape = this.meta.inputShape ?? [];
    const features = sizeOf(inputShape);
    const width = this.recordWidth();
    const bytes = Buffer.alloc(count * width * 4);
    if (count > 0) {
      const handle = this.handle ?? (await fs.open(this.binPath, 'r'));
      try {
        const { bytesRead } = await handle.read(bytes, 0, bytes.length, 0);
        if (bytesRead < bytes.length)
          throw new Error(`dataset file ${this.binPath} is shorter than its meta.json says`);
      } finally {
        if (handle !== this.handle) await handle.close();
      }
    }
    const all = new Float32Array(bytes.buffer, bytes.byteOffset, count * width);
    // A full ring buffer's oldest sample sits where the next one will go.
    const start = this.meta.policy === 'ring' && seen > capacity ? seen % capacity : 0;
    const x = new Float32Array(count * features);
    const targetSize = labelKind === 'class' ? 1 : labelKind === 'vector' ? (this.meta.targetSize ?? 0) : 0;
    const y = targetSize > 0 ? new Float32Array(count * targetSize) : undefined;
    let classes = [...this.meta.classes];
    let remap: number[] = classes.map((_, i) => i);
    if (labelKind === 'class' && sortClasses) {
      const numeric = classes.every((c) => /^-?\d+$/.test(c));
      const sorted = [...classes].sort(numeric ? (a, b) => Number(a) - Number(b) : undefined);
      remap = classes.map((c) => sorted.indexOf(c));
      classes = sorted;
    }
    for (let i = 0; i < count; i++) {
      const row = all.subarray(((start + i) % count) * width, (((start + i) % count) + 1) * width);
      x.set(row.subarray(0, features), i * features);
      if (y && labelKind === 'class') y[i] = remap[row[features]] ?? 0;
      else if (y) y.set(row.subarray(features, features + targetSize), i * targetSize);
    }
    return {
      x,
      y,
      count,
      inputShape,
      classes,
      targetSize: labelKind === 'vector' ? targetSize : 0,
      channels: this.meta.channels,
      normalisation: this.meta.normalisation,
    };
  }

  /** The stored samples as plain JSON (features nested in the sample shape). */
  async export(): Promise<ExportedDataset> {
    const data = await this.load();
    const features = sizeOf(data.inputShape);
    const samples = Array.from({ length: data.count }, (_, i) => {
      const x = nest(data.x.subarray(i * features, (i + 1) * features), data.inputShape);
      if (this.meta.labelKind === 'class') return { x, y: data.classes[(data.y as Float32Array)[i]] };
      if (this.meta.labelKind === 'vector') {
        return {
          x,
          y: Array.from((data.y as Float32Array).subarray(i * data.targetSize, (i + 1) * data.targetSize)),
        };
      }
      return { x };
    });
    return {
      inputShape: this.meta.inputShape,
      labelKind: this.meta.labelKind,
      classes: data.classes,
      count: data.count,
      seen: this.meta.seen,
      capacity: this.meta.capacity,
      policy: this.meta.policy,
      samples,
    };
  }

  /** Removes every sample (and the learnt shape and classes, unless fixed by the options). */
  async clear(): Promise<void> {
    await this.flushScheduled;
    await this.flushing;
    this.pending = [];
    this.meta = {
      ...this.meta,
      inputShape: this.options.inputShape ?? null,
      channels: null,
      targetSize: null,
      classes: this.options.classes ? [...this.options.classes] : [],
      count: 0,
      seen: 0,
    };
    await this.handle?.truncate(0);
    await this.flush();
  }

  /** Writes what is pending and releases the file. */
  async close(): Promise<void> {
    await this.flushScheduled;
    await this.flushing;
    await this.handle?.close();
    this.handle = undefined;
  }
}
