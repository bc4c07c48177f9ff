import { InputError, toSample } from '../../preprocess/numeric-input';
import { itemText, listText } from '../../util/text';
import { checkNormalisation, Scaler, type NormalisationStats } from '../../preprocess/scaling';
import { isTypedArray, nest, nestedShape, shapeText } from '../../preprocess/shape';

/**
 * Turning a message payload into one model input sample and one model output into a result:
 * any numeric input shape, reshaped to the model's input (row-major) with a clear error naming
 * the expected and the given shape; NaN rejected; optional normalisation statistics applied;
 * classification ({label, confidence, probabilities} + top-k), regression or raw output.
 */

export type InferenceMode = 'classify' | 'regress' | 'raw';

/** Normalisation statistics as edge-normalise exports them and meta.json stores them. */
export type Normalisation = NormalisationStats;

function flatten(value: unknown, out: number[]): void {
  if (typeof value === 'number') out.push(value);
  else if (typeof value === 'boolean') out.push(value ? 1 : 0);
  else if (isTypedArray(value)) for (let i = 0; i < value.length; i++) out.push(Number(value[i]));
  else if (Array.isArray(value)) for (const v of value) flatten(v, out);
}

interface Sample {
  values: Float32Array;
  /** Shape of the payload as given, e.g. [10, 6]. */
  shape: number[];
  /** Channel names when the payload was an object of named numbers. */
  channels?: string[];
}

/** The common cases without allocation per value: an array of numbers, or rows of numbers. */
function fastRows(payload: unknown[]): Sample | undefined {
  const n = payload.length;
  if (n === 0) return undefined;
  if (typeof payload[0] === 'number') {
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      const v = payload[i];
      if (typeof v !== 'number') return undefined;
      values[i] = v;
    }
    return { values, shape: [n] };
  }
  const first = payload[0];
  if (!Array.isArray(first) || first.length === 0) return undefined;
  const width = first.length;
  const values = new Float32Array(n * width);
  for (let r = 0; r < n; r++) {
    const row = payload[r];
    if (!Array.isArray(row) || row.length !== width) return undefined;
    for (let c = 0; c < width; c++) {
      const v = row[c];
      if (typeof v !== 'number') return undefined;
      values[r * width + c] = v;
    }
  }
  return { values, shape: [n, width] };
}

function readSample(payload: unknown, channels?: readonly string[]): Sample {
  if (payload !== null && typeof payload === 'object' && !Array.isArray(payload) && !isTypedArray(payload)) {
    const sample = toSample(payload, channels);
    return {
      values: Float32Array.from(sample.values),
      shape: [sample.values.length],
      channels: sample.channels,
    };
  }
  if (typeof payload === 'string' || payload === null || payload === undefined) {
    throw new InputError(
      `expected a number, an array of numbers, a typed array, an object of named numbers or a 2-D array, got ${
        payload === null ? 'null' : typeof payload
      }`,
    );
  }
  const fast = Array.isArray(payload) ? fastRows(payload) : undefined;
  if (fast) return fast;
  const shape = nestedShape(payload);
  const out: number[] = [];
  flatten(payload, out);
  return { values: Float32Array.from(out), shape: shape.length === 0 ? [1] : shape };
}

function describeGiven(sample: Sample): string {
  const n = sample.values.length;
  if (sample.channels) return `an object of ${n} named numbers (${listText(sample.channels)})`;
  if (sample.shape.length === 1) return n === 1 ? 'a single number' : `an array of ${n} numbers`;
  return `a ${sample.shape.join('x')} array (${n} values)`;
}

function position(index: number, sample: Sample): string {
  if (sample.channels) return `channel "${itemText(sample.channels[index])}"`;
  if (sample.shape.length <= 1) return `value ${index}`;
  const coords: number[] = [];
  let rest = index;
  for (let d = sample.shape.length - 1; d >= 0; d--) {
    coords.unshift(rest % sample.shape[d]);
    rest = Math.floor(rest / sample.shape[d]);
  }
  return `value [${coords.join('][')}]`;
}

export interface PrepareOptions {
  /** Order of named channels for object payloads. */
  channels?: readonly string[];
  /** Statistics (or a Scaler made from them) applied per channel, the model input's last axis. */
  normalisation?: Normalisation | Scaler;
}

/** One model input sample from a payload, reshaped (row-major) to `inputShape`. */
export function prepareInput(
  payload: unknown,
  inputShape: readonly number[],
  options: PrepareOptions = {},
): Float32Array {
  const scaler =
    options.normalisation instanceof Scaler
      ? options.normalisation
      : options.normalisation
        ? new Scaler(checkNormalisation(options.normalisation))
        : undefined;
  const channels = options.channels?.length ? options.channels : scaler?.channels;
  const sample = readSample(payload, channels);
  const expected = inputShape.reduce((x, y) => x * y, 1);
  if (sample.values.length !== expected) {
    throw new InputError(
      `the model expects input shape ${shapeText(inputShape)} (${expected} values per message); got ${describeGiven(sample)}`,
    );
  }
  for (let i = 0; i < sample.values.length; i++) {
    if (!Number.isFinite(sample.values[i])) {
      const what = Number.isNaN(sample.values[i]) ? 'NaN (missing or not a number)' : 'infinite';
      throw new InputError(`input ${position(i, sample)} is ${what}; the model needs finite numbers`);
    }
  }
  if (scaler) {
    const width = scaler.channels.length;
    const features = inputShape[inputShape.length - 1];
    if (width !== features && width !== expected) {
      throw new InputError(
        `normalisation statistics have ${width} channels; the model input ${shapeText(inputShape)} has ${features} features`,
      );
    }
    for (let at = 0; at < sample.values.length; at += width) {
      sample.values.set(scaler.scale(sample.values.subarray(at, at + width)), at);
    }
  }
  return sample.values;
}

export interface ClassifyResult {
  label: string;
  confidence: number;
  /** One probability per class, in the model's output order. */
  probabilities: number[];
  /** The k most likely classes, when top-k > 1. */
  top?: { label: string; confidence: number }[];
}

export interface InterpretOptions {
  labels?: readonly string[];
  topK?: number;
}

function softmax(values: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < values.length; i++) max = Math.max(max, values[i]);
  const exps = Array.from(values, (v) => Math.exp(v - max));
  const sum = exps.reduce((x, y) => x + y, 0);
  return exps.map((e) => e / sum);
}

/** Probabilities from a model output: kept if already a distribution, else softmax (or sigmoid). */
export function toProbabilities(output: ArrayLike<number>): number[] {
  if (output.length === 1) {
    const v = output[0];
    const p = v >= 0 && v <= 1 ? v : 1 / (1 + Math.exp(-v));
    return [1 - p, p];
  }
  let sum = 0;
  let inRange = true;
  for (let i = 0; i < output.length; i++) {
    sum += output[i];
    if (!(output[i] >= 0 && output[i] <= 1)) inRange = false;
  }
  return inRange && Math.abs(sum - 1) < 1e-3 ? Array.from(output) : softmax(output);
}

export function classify(output: ArrayLike<number>, options: InterpretOptions = {}): ClassifyResult {
  const probabilities = toProbabilities(output);
  const labelOf = (i: number): string => options.labels?.[i] ?? String(i);
  const order = probabilities.map((p, i) => [p, i] as const).sort((x, y) => y[0] - x[0]);
  const [confidence, best] = order[0];
  const result: ClassifyResult = { label: labelOf(best), confidence, probabilities };
  const k = Math.min(options.topK ?? 1, probabilities.length);
  if (k > 1) result.top = order.slice(0, k).map(([p, i]) => ({ label: labelOf(i), confidence: p }));
  return result;
}

export function interpretOutput(
  output: Float32Array,
  outputShape: readonly number[],
  mode: InferenceMode,
  options: InterpretOptions = {},
): unknown {
  if (mode === 'classify') return classify(output, options);
  if (mode === 'regress') return output.length === 1 ? output[0] : Array.from(output);
  return nest(output, outputShape);
}

export { nest };

/** A model input or output as the message side sees it: a name and a per-sample shape. */
export interface NamedShape {
  name: string;
  shape: readonly number[];
}

function describeInputs(inputs: readonly NamedShape[]): string {
  return inputs.map((s) => `${s.name} ${shapeText(s.shape)}`).join(', ');
}

/**
 * One sample of every input the message supplies. A single input takes the payload as
 * prepareInput does (channels and normalisation apply to it); several take an object keyed by
 * input name or an array in input order, each value any numeric shape of that input's size.
 */
export function prepareFeeds(
  payload: unknown,
  inputs: readonly NamedShape[],
  options: PrepareOptions = {},
): Record<string, Float32Array> {
  if (inputs.length === 0) return {};
  if (inputs.length === 1) return { [inputs[0].name]: prepareInput(payload, inputs[0].shape, options) };
  let values: unknown[];
  if (
    Array.isArray(payload) &&
    payload.length === inputs.length &&
    payload.every((v) => typeof v !== 'number')
  ) {
    values = payload;
  } else if (
    payload !== null &&
    typeof payload === 'object' &&
    !Array.isArray(payload) &&
    !isTypedArray(payload)
  ) {
    const byName = payload as Record<string, unknown>;
    const missing = inputs.filter((s) => byName[s.name] === undefined).map((s) => s.name);
    if (missing.length > 0) {
      throw new InputError(
        `the model has ${inputs.length} inputs (${describeInputs(inputs)}); msg.payload lacks ${missing.join(', ')}`,
      );
    }
    values = inputs.map((s) => byName[s.name]);
  } else {
    throw new InputError(
      `the model has ${inputs.length} inputs (${describeInputs(inputs)}): send an object keyed by input name or an array in input order`,
    );
  }
  const feeds: Record<string, Float32Array> = {};
  inputs.forEach((spec, i) => {
    try {
      feeds[spec.name] = prepareInput(values[i], spec.shape);
    } catch (err) {
      if (err instanceof InputError) throw new InputError(`input ${spec.name}: ${err.message}`);
      throw err;
    }
  });
  return feeds;
}

export interface NamedResult {
  /** The result of the chosen output in the node's mode. */
  value: unknown;
  /** Every output by name (nested arrays), when the model has more than one. */
  outputs?: Record<string, unknown>;
}

/**
 * Results of every output: the chosen one (`outputName`, default the first) interpreted in
 * `mode`; in raw mode with several outputs the value is an object of all of them by name.
 */
export function interpretOutputs(
  outputs: Readonly<Record<string, Float32Array>>,
  specs: readonly NamedShape[],
  mode: InferenceMode,
  options: InterpretOptions & { outputName?: string } = {},
): NamedResult {
  const chosen = options.outputName ? specs.find((s) => s.name === options.outputName) : specs[0];
  if (!chosen) {
    throw new InputError(
      `the model has no output "${options.outputName}" (outputs: ${specs.map((s) => s.name).join(', ')})`,
      'setting-invalid',
    );
  }
  if (specs.length === 1)
    return { value: interpretOutput(outputs[chosen.name], chosen.shape, mode, options) };
  const all: Record<string, unknown> = {};
  for (const spec of specs) all[spec.name] = nest(outputs[spec.name], spec.shape);
  if (mode === 'raw' && !options.outputName) return { value: all, outputs: all };
  return { value: interpretOutput(outputs[chosen.name], chosen.shape, mode, options), outputs: all };
}

/** Stacks the feeds of several samples into one batch (unbatched inputs taken from the first). */
export function stackFeeds(
  samples: readonly Readonly<Record<string, Float32Array>>[],
  inputs: readonly { name: string; batched: boolean }[],
): Record<string, Float32Array> {
  const out: Record<string, Float32Array> = {};
  for (const spec of inputs) {
    if (!spec.batched || samples.length === 1) {
      out[spec.name] = samples[0][spec.name];
      continue;
    }
    const per = samples[0][spec.name].length;
    const data = new Float32Array(per * samples.length);
    samples.forEach((s, i) => data.set(s[spec.name], i * per));
    out[spec.name] = data;
  }
  return out;
}

/** Splits a batch's outputs into one record per sample. */
export function splitOutputs(
  outputs: Readonly<Record<string, Float32Array>>,
  count: number,
): Record<string, Float32Array>[] {
  const result = Array.from({ length: count }, () => ({}) as Record<string, Float32Array>);
  for (const [name, data] of Object.entries(outputs)) {
    const per = data.length / count;
    for (let i = 0; i < count; i++) {
      result[i][name] = Number.isInteger(per) ? data.slice(i * per, (i + 1) * per) : data;
    }
  }
  return result;
}
