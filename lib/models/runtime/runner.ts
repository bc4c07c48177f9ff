/**
 * What every inference runtime offers, whatever the model format. Inputs and outputs are
 * flat row-major Float32Arrays of a whole batch; shapes exclude the batch dimension.
 */
export type RuntimeName = 'onnxruntime-node' | 'onnxruntime-web' | 'tfjs-node' | 'tfjs-wasm' | 'tfjs-cpu';

/** One named input or output of a model. */
export interface TensorSpec {
  name: string;
  /** Per-sample shape without the batch dimension; the whole shape when the tensor has none. */
  shape: number[];
  /** Element type the model takes or gives (values travel as float32 either way). */
  dtype: string;
  /** False for a tensor without a leading batch dimension (e.g. a scalar sample rate). */
  batched: boolean;
  /**
   * Where the batch dimension sits when not first (e.g. 1 for an LSTM state [1, batch, hidden]);
   * only size-1 axes come before it, so samples still lie one after another.
   */
  batchAxis?: number;
}

export interface ModelRunner {
  readonly runtime: RuntimeName;
  /** Per-sample input shape, without the batch dimension, e.g. [50, 6]. */
  readonly inputShape: number[];
  /** Per-sample output shape, without the batch dimension, e.g. [10]. */
  readonly outputShape: number[];
  /** Every input in the model's order (the first is the one `predict` feeds), when known. */
  readonly inputs?: readonly TensorSpec[];
  /** Every output in the model's order (the first is the one `predict` returns), when known. */
  readonly outputs?: readonly TensorSpec[];
  /** Runs `batchSize` samples laid out one after another; returns their outputs the same way. */
  predict(input: Float32Array, batchSize: number): Promise<Float32Array>;
  /**
   * Runs named inputs (each `batchSize` samples one after another; unbatched inputs once) and
   * returns every output by name.
   */
  run?(
    feeds: Readonly<Record<string, Float32Array>>,
    batchSize: number,
  ): Promise<Record<string, Float32Array>>;
  /** Releases tensors, sessions and backends' memory held for this model. */
  dispose(): Promise<void>;
}

/** The inputs of a runner, the single one when it does not list them. */
export function inputsOf(runner: ModelRunner): readonly TensorSpec[] {
  return runner.inputs ?? [{ name: 'input', shape: runner.inputShape, dtype: 'float32', batched: true }];
}

/** The outputs of a runner, the single one when it does not list them. */
export function outputsOf(runner: ModelRunner): readonly TensorSpec[] {
  return runner.outputs ?? [{ name: 'output', shape: runner.outputShape, dtype: 'float32', batched: true }];
}

/** Runs named feeds on any runner: through `run` when it has one, else its single input. */
export async function runNamed(
  runner: ModelRunner,
  feeds: Readonly<Record<string, Float32Array>>,
  batchSize: number,
): Promise<Record<string, Float32Array>> {
  if (runner.run) return runner.run(feeds, batchSize);
  const [input] = inputsOf(runner);
  const [output] = outputsOf(runner);
  return { [output.name]: await runner.predict(feeds[input.name], batchSize) };
}

/**
 * `runner` under the input and output names and order of another model of the same signature
 * (e.g. a layers model's ONNX export under the layers model's names). Names both share are
 * matched by name (a converted graph keeps its names but may list them in another order), the
 * others by position.
 */
export function renamedRunner(
  runner: ModelRunner,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
): ModelRunner {
  const innerIn = inputsOf(runner);
  const innerOut = outputsOf(runner);
  const pair = (inner: readonly TensorSpec[], outer: readonly TensorSpec[]): TensorSpec[] => {
    const sameNames =
      outer.length === inner.length && outer.every((o) => inner.some((s) => s.name === o.name));
    return inner.map((_, i) => {
      const spec = sameNames ? (inner.find((s) => s.name === outer[i].name) as TensorSpec) : inner[i];
      return { ...spec, name: outer[i]?.name ?? spec.name, inner: spec.name } as TensorSpec & {
        inner: string;
      };
    });
  };
  const ins = pair(innerIn, inputs) as (TensorSpec & { inner: string })[];
  const outs = pair(innerOut, outputs) as (TensorSpec & { inner: string })[];
  const run = async (
    feeds: Readonly<Record<string, Float32Array>>,
    batchSize: number,
  ): Promise<Record<string, Float32Array>> => {
    const inner: Record<string, Float32Array> = {};
    for (const spec of ins) inner[spec.inner] = feeds[spec.name];
    const result = await runNamed(runner, inner, batchSize);
    const out: Record<string, Float32Array> = {};
    for (const spec of outs) out[spec.name] = result[spec.inner];
    return out;
  };
  const strip = ({ inner: _inner, ...spec }: TensorSpec & { inner: string }): TensorSpec => spec;
  return {
    get runtime() {
      return runner.runtime;
    },
    inputShape: ins[0].shape,
    outputShape: outs[0].shape,
    inputs: ins.map(strip),
    outputs: outs.map(strip),
    predict:
      ins[0].inner === innerIn[0].name && outs[0].inner === innerOut[0].name
        ? (input, batchSize) => runner.predict(input, batchSize)
        : async (input, batchSize) => (await run({ [ins[0].name]: input }, batchSize))[outs[0].name],
    run,
    dispose: () => runner.dispose(),
  };
}
