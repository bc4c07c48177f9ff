import * as tfl from '@tensorflow/tfjs-layers';
import * as tfconv from '@tensorflow/tfjs-converter';
import { ModelLoadError } from '../../errors';
import { missingFeeds, runSampleBySample, zeroFeeds } from './feeds';
import type { ModelRunner, RuntimeName, TensorSpec } from './runner';
import { activeBackend, tf, useBackend, type TfBackendName } from './tfjs';
import { shapeText } from '../../preprocess/shape';

/**
 * TF.js runner for layers and graph models. TF.js has one active backend per process and a
 * model's weights live in the backend they were created on, so the first TF.js model loaded
 * fixes the backend until every TF.js model is disposed again.
 */

const RUNTIME_OF: Record<TfBackendName, RuntimeName> = {
  tensorflow: 'tfjs-node',
  wasm: 'tfjs-wasm',
  cpu: 'tfjs-cpu',
};

export const DEFAULT_TFJS_BACKENDS: TfBackendName[] = ['tensorflow', 'wasm', 'cpu'];

let liveRunners = 0;

/** Starts the first backend of `preference` unless TF.js models already hold another one. */
async function acquireBackend(preference: readonly TfBackendName[]): Promise<TfBackendName> {
  if (liveRunners > 0) return activeBackend();
  return useBackend(preference);
}

export interface TfjsRunnerOptions {
  /** Backends to try, best first. */
  backends?: readonly TfBackendName[];
  /** Per-sample input shape for models whose input has unknown dimensions. */
  inputShape?: number[];
  /** Used for unknown dimensions when no inputShape is configured and it fits. */
  fallbackInputShape?: number[];
}

/**
 * Fills unknown (null / -1) dimensions from `override`, which must agree with the known ones;
 * without one, from `fallback` (e.g. the shape saved in meta.json) when that agrees.
 */
export function resolveShape(
  modelShape: readonly (number | null)[],
  override: number[] | undefined,
  what: string,
  fallback?: number[],
): number[] {
  const unknown = modelShape.some((d) => d === null || d === undefined || d < 0);
  const fits = (shape: number[]): boolean =>
    shape.length === modelShape.length &&
    modelShape.every((d, i) => d === null || d === undefined || d < 0 || d === shape[i]);
  const show = `[${modelShape.map((d) => (d === null || d < 0 ? '?' : d)).join(', ')}]`;
  if (override && override.length > 0) {
    if (!fits(override)) {
      throw new ModelLoadError(
        `the configured input shape ${shapeText(override)} does not fit the model's ${what} ${show}`,
      );
    }
    return [...override];
  }
  if (!unknown) return modelShape as number[];
  if (fallback && fits(fallback)) return [...fallback];
  throw new ModelLoadError(`the model's ${what} ${show} has unknown dimensions: configure the input shape`);
}

function toFloat32(data: ArrayLike<number> | ArrayLike<bigint>): Float32Array {
  if (data instanceof Float32Array) return data;
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = Number(data[i]);
  return out;
}

export class TfjsRunner implements ModelRunner {
  readonly runtime: RuntimeName;
  readonly inputShape: number[];
  outputShape: number[] = [];
  readonly inputs: TensorSpec[];
  outputs: TensorSpec[] = [];
  readonly notes: string[] = [];
  private disposed = false;
  private asyncGraph = false;

  private constructor(
    readonly backend: TfBackendName,
    inputs: TensorSpec[],
    private readonly outputNames: string[],
    /** A model whose inputs have a fixed batch of 1 runs one sample per call. */
    private readonly singleSample: boolean,
    readonly layersModel?: tfl.LayersModel,
    private readonly graphModel?: tfconv.GraphModel,
  ) {
    this.runtime = RUNTIME_OF[backend];
    this.inputs = inputs;
    this.inputShape = inputs[0].shape;
    liveRunners++;
  }

  /** Builds a runner from model.json artifacts (see readModelFiles). */
  static async fromArtifacts(
    format: 'tfjs-layers' | 'tfjs-graph',
    artifacts: tf.io.ModelArtifacts,
    options: TfjsRunnerOptions = {},
  ): Promise<TfjsRunner> {
    const backend = await acquireBackend(options.backends ?? DEFAULT_TFJS_BACKENDS);
    const handler: tf.io.IOHandler = { load: async () => artifacts };
    if (format === 'tfjs-layers') {
      let model: tfl.LayersModel;
      try {
        model = await tfl.loadLayersModel(handler);
      } catch (err) {
        throw new ModelLoadError(`TF.js could not build the layers model: ${(err as Error).message}`);
      }
      return TfjsRunner.fromLayersModel(model, options, backend);
    }
    let graph: tfconv.GraphModel;
    try {
      graph = await tfconv.loadGraphModel(handler);
    } catch (err) {
      throw new ModelLoadError(`TF.js could not build the graph model: ${(err as Error).message}`);
    }
    try {
      if (graph.inputs.length === 0) throw new ModelLoadError('the graph model has no inputs');
      const inputs = graph.inputs.map((input, i) => ({
        name: input.name,
        shape: inputShapeOf(knownRank(input, i, options).slice(1), i, options, 'input shape'),
        dtype: input.dtype ?? 'float32',
        batched: true,
      }));
      const runner = new TfjsRunner(
        backend,
        inputs,
        graph.outputs.map((o) => o.name),
        graph.inputs.some((input) => input.shape?.[0] === 1),
        undefined,
        graph,
      );
      await runner.discoverOutputShape();
      return runner;
    } catch (err) {
      graph.dispose();
      throw err;
    }
  }

  /** Wraps an in-memory layers model (ownership passes to the runner). */
  static async fromLayersModel(
    model: tfl.LayersModel,
    options: TfjsRunnerOptions = {},
    backend?: TfBackendName,
  ): Promise<TfjsRunner> {
    const active = backend ?? (await acquireBackend(options.backends ?? DEFAULT_TFJS_BACKENDS));
    try {
      const inputs = model.inputs.map((input, i) => ({
        name: uniqueName(layerName(input), i, model.inputs.map(layerName)),
        shape: inputShapeOf(input.shape.slice(1), i, options, 'input shape'),
        dtype: input.dtype ?? 'float32',
        batched: true,
      }));
      const names = model.outputs.map(layerName);
      const outputNames = names.map((name, i) => uniqueName(name, i, names));
      const singleSample = model.inputs.some((input) => input.shape[0] === 1);
      const runner = new TfjsRunner(active, inputs, outputNames, singleSample, model);
      await runner.discoverOutputShape();
      return runner;
    } catch (err) {
      model.dispose();
      throw err;
    }
  }

  private async discoverOutputShape(): Promise<void> {
    let outputs: Awaited<ReturnType<TfjsRunner['runTensors']>>;
    try {
      outputs = await this.runTensors(zeroFeeds(this.inputs, 1), 1);
    } catch (err) {
      if (err instanceof ModelLoadError) throw err;
      throw new ModelLoadError(
        `TF.js (${this.backend}) could not run the model on a probe of zeros: ${(err as Error).message}`,
        'runtime-failed',
      );
    }
    this.outputs = this.outputNames.map((name) => ({
      name,
      shape: outputs[name].shape.slice(1),
      dtype: 'float32',
      batched: true,
    }));
    this.outputShape = this.outputs[0].shape;
  }

  private async runTensors(
    feeds: Readonly<Record<string, Float32Array>>,
    batchSize: number,
  ): Promise<Record<string, { data: Float32Array; shape: number[] }>> {
    if (this.disposed) throw new Error('the model was disposed');
    const xs = this.inputs.map((spec) =>
      spec.dtype === 'float32'
        ? tf.tensor(feeds[spec.name], [batchSize, ...spec.shape], 'float32')
        : tf.tensor(
            Int32Array.from(feeds[spec.name], Math.round),
            [batchSize, ...spec.shape],
            spec.dtype as tf.DataType,
          ),
    );
    let outputs: tf.Tensor | tf.Tensor[] | tf.NamedTensorMap | undefined;
    try {
      if (this.layersModel) {
        outputs = this.layersModel.predict(xs.length === 1 ? xs[0] : xs) as tf.Tensor | tf.Tensor[];
      } else if (this.graphModel) {
        const named: tf.NamedTensorMap = {};
        this.inputs.forEach((spec, i) => (named[spec.name] = xs[i]));
        const feed = xs.length === 1 ? xs[0] : named;
        if (!this.asyncGraph) {
          try {
            outputs = this.graphModel.execute(feed, this.outputNames);
          } catch (err) {
            // Graphs with control flow or dynamic shapes only run asynchronously.
            if (!/executeAsync|dynamic/i.test((err as Error).message)) throw err;
            this.asyncGraph = true;
          }
        }
        if (this.asyncGraph) outputs = await this.graphModel.executeAsync(feed, this.outputNames);
      }
      const list = outputs instanceof tf.Tensor ? [outputs] : Array.isArray(outputs) ? outputs : [];
      if (list.length === 0) throw new Error('the model returned no output');
      const result: Record<string, { data: Float32Array; shape: number[] }> = {};
      for (let i = 0; i < list.length && i < this.outputNames.length; i++) {
        result[this.outputNames[i]] = {
          data: toFloat32(await list[i].data<'float32'>()),
          shape: list[i].shape,
        };
      }
      return result;
    } finally {
      tf.dispose(xs);
      if (outputs instanceof tf.Tensor) outputs.dispose();
      else if (Array.isArray(outputs)) tf.dispose(outputs);
    }
  }

  async run(
    feeds: Readonly<Record<string, Float32Array>>,
    batchSize: number,
  ): Promise<Record<string, Float32Array>> {
    const missing = missingFeeds(this.inputs, feeds);
    if (missing) throw missing;
    if (!this.singleSample || batchSize === 1) {
      const outputs = await this.runTensors(feeds, batchSize);
      return Object.fromEntries(Object.entries(outputs).map(([name, v]) => [name, v.data]));
    }
    return runSampleBySample(this.inputs, feeds, batchSize, async (one) => {
      const outputs = await this.runTensors(one, 1);
      return Object.fromEntries(Object.entries(outputs).map(([name, v]) => [name, v.data]));
    });
  }

  async predict(input: Float32Array, batchSize: number): Promise<Float32Array> {
    return (await this.run({ [this.inputs[0].name]: input }, batchSize))[this.outputNames[0]];
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    liveRunners--;
    this.layersModel?.dispose();
    this.graphModel?.dispose();
  }
}

/**
 * A graph input's dimensions with the batch first. Without a rank (a placeholder of any shape,
 * e.g. a recurrent state a model starts from a scalar), only the first input can run, as a batch
 * of the configured shape: feeding zeros of a guessed rank can crash the backend.
 */
function knownRank(input: tf.ModelTensorInfo, index: number, options: TfjsRunnerOptions): number[] {
  if (input.shape) return input.shape;
  if (index === 0 && options.inputShape && options.inputShape.length > 0) return [-1, ...options.inputShape];
  throw new ModelLoadError(
    `the graph model's input ${input.name} has no known rank` +
      (index === 0
        ? ': configure the input shape'
        : '; inputs of any shape other than the first are not supported'),
  );
}

/** The first input takes the configured shape; the others must have known dimensions. */
function inputShapeOf(
  dims: readonly (number | null)[],
  index: number,
  options: TfjsRunnerOptions,
  what: string,
): number[] {
  if (index === 0) return resolveShape(dims, options.inputShape, what, options.fallbackInputShape);
  return resolveShape(dims, undefined, `input ${index + 1} shape`);
}

/** A layer's name, suffixed with its position when several inputs or outputs share it. */
function uniqueName(name: string, index: number, all: readonly string[]): string {
  return all.filter((n) => n === name).length > 1 ? `${name}_${index}` : name;
}

/** The name of the layer a symbolic tensor comes from (Keras's input and output names). */
function layerName(tensor: tfl.SymbolicTensor): string {
  return tensor.sourceLayer?.name ?? tensor.name;
}
