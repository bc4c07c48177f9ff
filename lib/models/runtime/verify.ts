import { checkNormalisation, Scaler, type NormalisationStats } from '../../preprocess/scaling';
import { sizeOf } from '../../preprocess/shape';
import { seededRandom } from '../../util/random';
import { runNamed, type ModelRunner, type RuntimeName, type TensorSpec } from './runner';

/**
 * Checking that a converted model (e.g. a layers model's ONNX export) computes what the original
 * does, on inputs like the ones it will see: a sample saved with the model, values drawn from
 * its normalisation statistics, or, when neither exists, the first messages it serves (until
 * then the original runs). Random values far from the real inputs can make an export that is
 * right where it matters look wrong (a one-hot char-LSTM is 1e-3 off on uniform noise and 1e-5
 * on real text), so a random probe that fails only defers the decision to the first messages.
 * Each output is compared with a tolerance relative to its own scale.
 */

export type ProbeSource = 'sample' | 'normalisation' | 'random';

export interface RepresentativeOptions {
  /**
   * Samples saved with the model: an array of samples of the first input (each any nested
   * numeric array of its size), or an object of such arrays keyed by input name.
   */
  sample?: unknown;
  /** Statistics the node scales inputs with before the model (meta.json `normalisation`). */
  normalisation?: unknown;
  /** Samples in a random or statistics probe. */
  batch?: number;
  seed?: number;
}

export interface Probe {
  feeds: Record<string, Float32Array>;
  batch: number;
  source: ProbeSource;
}

function flat(value: unknown, out: number[]): boolean {
  if (typeof value === 'number') return out.push(value) > 0;
  if (Array.isArray(value) || ArrayBuffer.isView(value)) {
    const list = value as unknown as ArrayLike<unknown>;
    for (let i = 0; i < list.length; i++) if (!flat(list[i], out)) return false;
    return true;
  }
  return false;
}

/** Samples of each input from a saved sample, or undefined when it does not fit the inputs. */
export function sampleFeeds(sample: unknown, inputs: readonly TensorSpec[]): Probe | undefined {
  if (sample === undefined || sample === null) return undefined;
  const byName: Record<string, unknown> =
    Array.isArray(sample) && inputs.length === 1
      ? { [inputs[0].name]: sample }
      : (sample as Record<string, unknown>);
  if (typeof byName !== 'object') return undefined;
  let batch: number | undefined;
  const feeds: Record<string, Float32Array> = {};
  for (const spec of inputs) {
    const list = byName[spec.name];
    if (!Array.isArray(list) || list.length === 0) return undefined;
    const size = sizeOf(spec.shape);
    const values: number[] = [];
    if (!flat(list, values) || values.some((v) => !Number.isFinite(v))) return undefined;
    if (!spec.batched) {
      if (values.length !== size) return undefined;
      feeds[spec.name] = Float32Array.from(values);
      continue;
    }
    if (values.length % size !== 0) return undefined;
    const n = values.length / size;
    if (batch !== undefined && batch !== n) return undefined;
    batch = n;
    feeds[spec.name] = Float32Array.from(values);
  }
  return batch === undefined ? undefined : { feeds, batch, source: 'sample' };
}

/** Inputs the model sees after scaling: raw values spread over each channel's learned range. */
function statisticsFeeds(
  stats: NormalisationStats,
  inputs: readonly TensorSpec[],
  batch: number,
  seed: number,
): Probe | undefined {
  if (inputs.length !== 1) return undefined;
  const [spec] = inputs;
  const width = stats.channels.length;
  const size = sizeOf(spec.shape);
  if (size % width !== 0) return undefined;
  const scaler = new Scaler(stats);
  const uniform = seededRandom(seed);
  const values = new Float32Array(size * batch);
  const raw = new Array<number>(width);
  for (let at = 0; at < values.length; at += width) {
    for (let c = 0; c < width; c++) {
      const [low, high] =
        Number.isFinite(stats.min[c]) && stats.max[c] > stats.min[c]
          ? [stats.min[c], stats.max[c]]
          : [stats.mean[c] - 2 * stats.std[c], stats.mean[c] + 2 * stats.std[c]];
      raw[c] = low + uniform() * (high - low);
    }
    values.set(scaler.scale(raw), at);
  }
  return { feeds: { [spec.name]: values }, batch, source: 'normalisation' };
}

/** Deterministic pseudo-random values in [-1, 1) for every input. */
export function randomFeeds(inputs: readonly TensorSpec[], batch: number, seed = 12345): Probe {
  const uniform = seededRandom(seed);
  const feeds: Record<string, Float32Array> = {};
  for (const spec of inputs) {
    const n = sizeOf(spec.shape) * (spec.batched ? batch : 1);
    feeds[spec.name] = Float32Array.from({ length: n }, () => uniform() * 2 - 1);
  }
  return { feeds, batch, source: 'random' };
}

/** The most representative inputs at hand: the saved sample, the statistics, else random. */
export function representativeFeeds(
  inputs: readonly TensorSpec[],
  options: RepresentativeOptions = {},
): Probe {
  const batch = options.batch ?? 3;
  const seed = options.seed ?? 12345;
  const saved = sampleFeeds(options.sample, inputs);
  if (saved) return saved;
  if (options.normalisation !== undefined) {
    try {
      const probe = statisticsFeeds(checkNormalisation(options.normalisation), inputs, batch, seed);
      if (probe) return probe;
    } catch {
      // Unusable statistics: the random probe below.
    }
  }
  return randomFeeds(inputs, batch, seed);
}

export interface Comparison {
  ok: boolean;
  /** Largest |candidate - reference| over every output. */
  maxAbsDiff: number;
  /** The output furthest outside (or closest to) its tolerance. */
  worst?: { output: string; diff: number; tolerance: number };
}

/**
 * Compares two runs output by output: |candidate - reference| must stay within
 * `tolerance * max(1, max |reference|)` of that output.
 */
export function compareOutputs(
  reference: Readonly<Record<string, ArrayLike<number>>>,
  candidate: Readonly<Record<string, ArrayLike<number>>>,
  tolerance: number,
): Comparison {
  let ok = true;
  let maxAbsDiff = 0;
  let worst: Comparison['worst'];
  let worstRatio = -1;
  for (const [name, expected] of Object.entries(reference)) {
    const actual = candidate[name];
    let diff = actual && actual.length === expected.length ? 0 : Infinity;
    let scale = 1;
    for (let i = 0; i < expected.length && diff !== Infinity; i++) {
      const d = Math.abs(expected[i] - actual[i]);
      if (!(d <= diff)) diff = Number.isNaN(d) ? Infinity : d;
      scale = Math.max(scale, Math.abs(expected[i]));
    }
    const allowed = tolerance * scale;
    if (!(diff <= allowed)) ok = false;
    maxAbsDiff = Math.max(maxAbsDiff, diff);
    const ratio = diff / allowed;
    if (!(ratio <= worstRatio)) {
      worstRatio = Number.isNaN(ratio) ? Infinity : ratio;
      worst = { output: name, diff, tolerance: allowed };
    }
  }
  return { ok, maxAbsDiff, worst };
}

export function describeComparison(c: Comparison, what: string): string {
  const w = c.worst;
  if (!w) return `${what}: no outputs compared`;
  return `${what}: output ${w.output} differs by ${w.diff.toExponential(2)} (tolerance ${w.tolerance.toExponential(2)})`;
}

export interface VerificationDecision {
  /** The candidate took over. */
  accepted: boolean;
  runtime: RuntimeName;
  maxAbsDiff: number;
  /** Samples the decision was made on. */
  samples: number;
  reason: string;
}

/**
 * Serves with `reference` while checking `candidate` on the same inputs; once `samples` inputs
 * agree within the tolerance the candidate takes over (and the reference is disposed when its
 * last run ends); at the first disagreement the candidate is dropped. `onDecision` is told
 * either way. Outputs served are always the reference's until the switch.
 */
export class VerifyingRunner implements ModelRunner {
  private decided: VerificationDecision | undefined;
  private active: ModelRunner;
  private inFlight = 0;
  private verified = 0;
  private maxAbsDiff = 0;
  private retiring: ModelRunner | undefined;
  private disposed = false;

  constructor(
    private readonly reference: ModelRunner,
    private candidate: ModelRunner | undefined,
    private readonly options: {
      samples: number;
      tolerance: number;
      onDecision?: (decision: VerificationDecision) => void;
    },
  ) {
    this.active = reference;
  }

  get runtime(): RuntimeName {
    return this.active.runtime;
  }
  get inputShape(): number[] {
    return this.active.inputShape;
  }
  get outputShape(): number[] {
    return this.active.outputShape;
  }
  get inputs(): readonly TensorSpec[] | undefined {
    return this.active.inputs;
  }
  get outputs(): readonly TensorSpec[] | undefined {
    return this.active.outputs;
  }
  /** The decision, once made. */
  get decision(): VerificationDecision | undefined {
    return this.decided;
  }

  /** Runs both models once without counting it as verification (warm-up). */
  async warmup(feeds: Readonly<Record<string, Float32Array>>, batchSize: number): Promise<void> {
    await runNamed(this.reference, feeds, batchSize);
    if (this.candidate) await runNamed(this.candidate, feeds, batchSize);
  }

  async predict(input: Float32Array, batchSize: number): Promise<Float32Array> {
    const name = (this.active.inputs ?? [])[0]?.name ?? 'input';
    const out = await this.run({ [name]: input }, batchSize);
    const first = (this.active.outputs ?? [])[0]?.name;
    return first ? out[first] : Object.values(out)[0];
  }

  async run(
    feeds: Readonly<Record<string, Float32Array>>,
    batchSize: number,
  ): Promise<Record<string, Float32Array>> {
    if (this.decided || !this.candidate) return runNamed(this.active, feeds, batchSize);
    const reference = this.reference;
    const candidate = this.candidate;
    this.inFlight++;
    try {
      const expected = await runNamed(reference, feeds, batchSize);
      if (!this.decided && this.candidate === candidate) {
        let actual: Record<string, Float32Array> | undefined;
        let failure: string | undefined;
        try {
          actual = await runNamed(candidate, feeds, batchSize);
        } catch (err) {
          failure = `failed on a message: ${(err as Error).message}`;
        }
        if (!this.decided) {
          const c = actual ? compareOutputs(expected, actual, this.options.tolerance) : undefined;
          if (c) this.maxAbsDiff = Math.max(this.maxAbsDiff, c.maxAbsDiff);
          if (!c || !c.ok) {
            this.decide(
              false,
              failure ?? describeComparison(c as Comparison, 'differs on the first messages'),
            );
          } else {
            this.verified += batchSize;
            if (this.verified >= this.options.samples) {
              this.decide(
                true,
                `verified on the first ${this.verified} messages; max difference ${this.maxAbsDiff.toExponential(2)}`,
              );
            }
          }
        }
      }
      return expected;
    } finally {
      this.inFlight--;
      this.retireIfIdle();
    }
  }

  private decide(accepted: boolean, reason: string): void {
    const candidate = this.candidate as ModelRunner;
    this.candidate = undefined;
    if (accepted) {
      this.active = candidate;
      this.retiring = this.reference;
    } else {
      void candidate.dispose().catch(() => undefined);
    }
    this.decided = {
      accepted,
      runtime: this.active.runtime,
      maxAbsDiff: this.maxAbsDiff,
      samples: this.verified,
      reason,
    };
    this.options.onDecision?.(this.decided);
  }

  private retireIfIdle(): void {
    if (this.retiring && this.inFlight === 0) {
      const old = this.retiring;
      this.retiring = undefined;
      void old.dispose().catch(() => undefined);
    }
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    const all = [this.reference, this.active, this.candidate].filter((r): r is ModelRunner => !!r);
    this.candidate = undefined;
    this.retiring = undefined;
    await Promise.all([...new Set(all)].map((r) => r.dispose()));
  }
}
