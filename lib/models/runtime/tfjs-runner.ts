import * as tfl from '@tensorflow/tfjs-layers';
import * as tfconv from '@tensorflow/tfjs-converter';
import { ModelLoadError } from '../../errors';
import type { ModelRunner, RuntimeName } from './runner';
import { activeBackend, tf, useBackend, type TfBackendName } from './tfjs';
import { shapeText, sizeOf } from '../../preprocess/shape';

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
  outputShape: number[];
  readonly notes: string[] = [];
  private disposed = false;
  private asyncGraph = false;

  private constructor(
    readonly backend: TfBackendName,
    inputShape: number[],
    outputShape: number[],
    readonly layersModel?: tfl.LayersModel,
    private readonly graphModel?: tfconv.GraphModel,
    private readonly inputDtype: tf.DataType = 'float32',
  ) {
    this.runtime = RUNTIME_OF[backend];
    this.inputShape = inputShape;
    this.outputShape = outputShape;
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
      if (graph.inputs.length !== 1) {
        throw new ModelLoadError(`the graph model has ${graph.inputs.length} inputs; one is supported`);
      }
      const input = graph.inputs[0];
      const inputShape = resolveShape(
        (input.shape ?? [-1]).slice(1),
        options.inputShape,
        'input shape',
        options.fallbackInputShape,
      );
      const runner = new TfjsRunner(backend, inputShape, [], undefined, graph, input.dtype as tf.DataType);
      if (graph.outputs.length > 1)
        runner.notes.push(`graph model has ${graph.outputs.length} outputs; using the first`);
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
      if (model.inputs.length !== 1) {
        throw new ModelLoadError(`the model has ${model.inputs.length} inputs; one is supported`);
      }
      const inputShape = resolveShape(
        model.inputs[0].shape.slice(1),
        options.inputShape,
        'input shape',
        options.fallbackInputShape,
      );
      const runner = new TfjsRunner(active, inputShape, [], model);
      if (model.outputs.length > 1)
        runner.notes.push(`model has ${model.outputs.length} outputs; using the first`);
      await runner.discoverOutputShape();
      return runner;
    } catch (err) {
      model.dispose();
      throw err;
    }
  }

  private async discoverOutputShape(): Promise<void> {
    const size = sizeOf(this.inputShape);
    const { shape } = await this.run(new Float32Array(size), 1);
    this.outputShape = shape.slice(1);
  }

  private async run(
    input: Float32Array,
    batchSize: number,
  ): Promise<{ data: Float32Array; shape: number[] }> {
    if (this.disposed) throw new Error('the model was disposed');
    const x =
      this.inputDtype === 'float32'
        ? tf.tensor(input, [batchSize, ...this.inputShape], 'float32')
        : tf.tensor(Int32Array.from(input, Math.round), [batchSize, ...this.inputShape], this.inputDtype);
    let outputs: tf.Tensor | tf.Tensor[] | tf.NamedTensorMap | undefined;
    try {
      if (this.layersModel) {
        outputs = this.layersModel.predict(x) as tf.Tensor | tf.Tensor[];
      } else if (this.graphModel) {
        if (!this.asyncGraph) {
          try {
            outputs = this.graphModel.execute(x);
          } catch (err) {
            // Graphs with control flow or dynamic shapes only run asynchronously.
            if (!/executeAsync|dynamic/i.test((err as Error).message)) throw err;
            this.asyncGraph = true;
          }
        }
        if (this.asyncGraph) outputs = await this.graphModel.executeAsync(x);
      }
      const list = outputs instanceof tf.Tensor ? [outputs] : Array.isArray(outputs) ? outputs : [];
      if (list.length === 0) throw new Error('the model returned no output');
      const first = list[0];
      const data = toFloat32(await first.data<'float32'>());
      return { data, shape: first.shape };
    } finally {
      x.dispose();
      if (outputs instanceof tf.Tensor) outputs.dispose();
      else if (Array.isArray(outputs)) tf.dispose(outputs);
    }
  }

  async predict(input: Float32Array, batchSize: number): Promise<Float32Array> {
    return (await this.run(input, batchSize)).data;
  }

  async dispose(): Promise<void> {
    if (this.disposed) return;
    this.disposed = true;
    liveRunners--;
    this.layersModel?.dispose();
    this.graphModel?.dispose();
  }
}
