import { InputError, ModelLoadError } from '../../errors';
import { sizeOf } from '../../preprocess/shape';
import type { TensorSpec } from '../runtime/runner';

/**
 * Recurrent state carried from one message to the next, one stream per key (e.g. msg.topic, one
 * per sensor): outputs fed back to inputs by name (hn -> h, cn -> c), constant inputs (a sample
 * rate) from settings. A stream starts from zeros, `reset` clears one or all, and at most
 * `maxStreams` are kept: the least recently used one is forgotten first.
 */

export interface StatePair {
  /** Output whose value becomes... */
  output: string;
  /** ...this input of the next message of the same stream. */
  input: string;
}

export interface StreamSettings {
  state: StatePair[];
  /** Values of inputs that never come from the message. */
  constants: Record<string, number[]>;
  maxStreams: number;
}

export const DEFAULT_MAX_STREAMS = 100;

/** Reads "hn:h, cn:c" (also "hn=h" or "hn->h"). */
export function parseStatePairs(text: string): StatePair[] {
  return text
    .split(/[,;\n]/)
    .map((part) => part.trim())
    .filter((part) => part.length > 0)
    .map((part) => {
      const m = /^([^:=>\s-]+(?:-[^:=>\s-]+)*)\s*(?:->|:|=)\s*(\S+)$/.exec(part);
      if (!m) throw new InputError(`"${part}" is not output:input (e.g. hn:h)`, 'setting-invalid');
      return { output: m[1], input: m[2] };
    });
}

/** Reads "sr=16000, bias=1 2 3" into named constant values. */
export function parseConstants(text: string): Record<string, number[]> {
  const out: Record<string, number[]> = {};
  for (const part of text.split(/[,;\n]/).map((p) => p.trim())) {
    if (!part) continue;
    const m = /^([^=:\s]+)\s*[=:]\s*(.+)$/.exec(part);
    const values = m ? m[2].trim().split(/\s+/).map(Number) : [];
    if (!m || values.length === 0 || values.some((v) => !Number.isFinite(v))) {
      throw new InputError(`"${part}" is not name=number(s) (e.g. sr=16000)`, 'setting-invalid');
    }
    out[m[1]] = values;
  }
  return out;
}

/** State pairs and constants from meta.json (`state: {hn: "h"}`, `constants: {sr: 16000}`). */
export function streamSettingsFromMeta(meta: Record<string, unknown> | undefined): Partial<StreamSettings> {
  const result: Partial<StreamSettings> = {};
  const state = meta?.state;
  if (state && typeof state === 'object' && !Array.isArray(state)) {
    result.state = Object.entries(state as Record<string, unknown>)
      .filter(([, input]) => typeof input === 'string')
      .map(([output, input]) => ({ output, input: input as string }));
  }
  const constants = meta?.constants;
  if (constants && typeof constants === 'object' && !Array.isArray(constants)) {
    result.constants = {};
    for (const [name, value] of Object.entries(constants as Record<string, unknown>)) {
      const values = (Array.isArray(value) ? value : [value]).map(Number);
      if (values.every(Number.isFinite)) result.constants[name] = values;
    }
  }
  return result;
}

/** Checks the settings against the model's inputs and outputs; throws naming what does not fit. */
export function checkStreamSettings(
  settings: StreamSettings,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
): void {
  const input = (name: string) => inputs.find((s) => s.name === name);
  const names = (list: readonly TensorSpec[]) => list.map((s) => s.name).join(', ');
  for (const pair of settings.state) {
    const out = outputs.find((s) => s.name === pair.output);
    const into = input(pair.input);
    if (!out)
      throw new ModelLoadError(
        `state output "${pair.output}" is not an output of the model (${names(outputs)})`,
      );
    if (!into)
      throw new ModelLoadError(`state input "${pair.input}" is not an input of the model (${names(inputs)})`);
    if (sizeOf(out.shape) !== sizeOf(into.shape)) {
      throw new ModelLoadError(
        `state output "${pair.output}" has ${sizeOf(out.shape)} values; input "${pair.input}" takes ${sizeOf(into.shape)}`,
      );
    }
  }
  for (const [name, values] of Object.entries(settings.constants)) {
    const spec = input(name);
    if (!spec) throw new ModelLoadError(`constant "${name}" is not an input of the model (${names(inputs)})`);
    const size = sizeOf(spec.shape);
    if (values.length !== size && values.length !== 1) {
      throw new ModelLoadError(`constant "${name}" has ${values.length} values; the input takes ${size}`);
    }
  }
}

/** The inputs a message supplies: those neither state nor constant. */
export function messageInputs(
  settings: StreamSettings | undefined,
  inputs: readonly TensorSpec[],
): TensorSpec[] {
  if (!settings) return [...inputs];
  const fed = new Set([...settings.state.map((p) => p.input), ...Object.keys(settings.constants)]);
  return inputs.filter((s) => !fed.has(s.name));
}

export class StreamStates {
  private readonly streams = new Map<string, Record<string, Float32Array>>();
  /** Streams forgotten because of the bound. */
  evicted = 0;

  constructor(readonly settings: StreamSettings) {
    if (!(settings.maxStreams >= 1)) throw new InputError('the number of streams must be at least 1');
  }

  get size(): number {
    return this.streams.size;
  }

  /** Whether stream `key` has a state kept. */
  has(key: string): boolean {
    return this.streams.has(key);
  }

  get stateful(): boolean {
    return this.settings.state.length > 0;
  }

  /** State and constant feeds for the next message of stream `key` (zeros for a new stream). */
  feedsFor(key: string, inputs: readonly TensorSpec[]): Record<string, Float32Array> {
    const feeds: Record<string, Float32Array> = {};
    for (const [name, values] of Object.entries(this.settings.constants)) {
      const spec = inputs.find((s) => s.name === name);
      const size = spec ? sizeOf(spec.shape) : values.length;
      feeds[name] =
        values.length === size ? Float32Array.from(values) : new Float32Array(size).fill(values[0]);
    }
    const state = this.streams.get(key);
    if (state) {
      // Most recently used last.
      this.streams.delete(key);
      this.streams.set(key, state);
    }
    for (const pair of this.settings.state) {
      const spec = inputs.find((s) => s.name === pair.input);
      feeds[pair.input] = state?.[pair.input] ?? new Float32Array(spec ? sizeOf(spec.shape) : 0);
    }
    return feeds;
  }

  /** Keeps the state outputs of a message of stream `key` for its next one. */
  update(key: string, outputs: Readonly<Record<string, Float32Array>>): void {
    if (!this.stateful) return;
    const state: Record<string, Float32Array> = {};
    for (const pair of this.settings.state) state[pair.input] = Float32Array.from(outputs[pair.output]);
    this.streams.delete(key);
    this.streams.set(key, state);
    while (this.streams.size > this.settings.maxStreams) {
      const oldest = this.streams.keys().next().value as string;
      this.streams.delete(oldest);
      this.evicted++;
    }
  }

  /** Forgets stream `key`, or every stream. */
  reset(key?: string): void {
    if (key === undefined) this.streams.clear();
    else this.streams.delete(key);
  }
}
