import { onnx } from '../onnx-proto';
import type * as OrtTypes from 'onnxruntime-web';
import { ModelLoadError } from '../../errors';
import {
  createOrtSession,
  loadOrt,
  type OrtModule,
  type OrtRuntimeName,
  type OrtSession,
} from './ort-session';
import type { ModelRunner } from './runner';
import { resolveShape } from './tfjs-runner';
import { sizeOf } from '../../preprocess/shape';

/**
 * ONNX Runtime runner: `onnxruntime-node` (native, where installed) or `onnxruntime-web`
 * (WebAssembly, loaded from its own package directory, so it works offline in Node). Sessions
 * come from createOrtSession, which pins each package to its own execution provider and counts
 * the live ones (liveOrtSessionCount).
 */

export type { OrtRuntimeName };

/**
 * Throws 'model-invalid-onnx' unless `bytes` decode as an ONNX model with a graph, so a corrupt
 * file says so whichever runtimes are installed (rather than "onnxruntime-node is not installed").
 */
export function checkOnnxBytes(bytes: Uint8Array): void {
  let detail: string;
  try {
    if (onnx.ModelProto.decode(bytes).graph) return;
    detail = 'it holds no graph';
  } catch (err) {
    detail = (err as Error).message;
  }
  throw new ModelLoadError(`not a valid ONNX file (${detail})`, 'model-invalid-onnx');
}

export function ortAvailable(runtime: OrtRuntimeName): boolean {
  return loadOrt(runtime) !== undefined;
}

export interface OrtRunnerOptions {
  /** Per-sample input shape for models whose input has symbolic dimensions. */
  inputShape?: number[];
  /** Used for symbolic dimensions when no inputShape is configured and it fits. */
  fallbackInputShape?: number[];
  /** Intra-op threads (onnxruntime-node); default lets ONNX Runtime decide. */
  threads?: number;
}

type Dims = readonly (number | string)[];

function describeDims(dims: Dims): string {
  return `[${dims.join(', ')}]`;
}

export class OrtRunner implements ModelRunner {
  readonly runtime: OrtRuntimeName;
  readonly inputShape: number[];
  outputShape: number[] = [];
  readonly notes: string[] = [];
  private readonly session: OrtTypes.InferenceSession;
  private queue: Promise<unknown> = Promise.resolve();
  private released = false;

  private constructor(
    private readonly ort: OrtModule,
    private readonly owned: OrtSession,
    inputShape: number[],
    /** A model with a fixed batch dimension of 1 runs one sample per call. */
    private readonly singleSample: boolean,
    private readonly inputType: string,
  ) {
    this.session = owned.session;
    this.runtime = owned.runtime;
    this.inputShape = inputShape;
  }

  static async create(
    model: Uint8Array,
    runtime: OrtRuntimeName,
    options: OrtRunnerOptions = {},
  ): Promise<OrtRunner> {
    checkOnnxBytes(model);
    const ort = loadOrt(runtime);
    if (!ort) {
      throw new ModelLoadError(`${runtime} is not installed or does not load here`, 'runtime-missing', {
        runtime,
      });
    }
    const sessionOptions: OrtTypes.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    };
    if (options.threads && runtime === 'onnxruntime-node') sessionOptions.intraOpNumThreads = options.threads;
    let owned: OrtSession;
    try {
      owned = await createOrtSession(model, runtime, sessionOptions);
    } catch (err) {
      const message = (err as Error).message.split('\n')[0];
      // A file the decoder accepts can still fail ONNX Runtime's own parse.
      if (/protobuf parsing failed/i.test(message)) {
        throw new ModelLoadError(`not a valid ONNX file (${message})`, 'model-invalid-onnx');
      }
      throw new ModelLoadError(`ONNX Runtime could not load the model: ${message}`, 'runtime-failed');
    }
    const session = owned.session;
    try {
      if (session.inputNames.length !== 1) {
        throw new ModelLoadError(
          `the ONNX model has ${session.inputNames.length} inputs (${session.inputNames.join(', ')}); one is supported`,
        );
      }
      const meta = session.inputMetadata?.[0];
      const dims: Dims = meta && meta.isTensor ? meta.shape : [];
      const type = meta && meta.isTensor ? meta.type : 'float32';
      if (!['float32', 'int32', 'int64', 'float64'].includes(type)) {
        throw new ModelLoadError(`the ONNX model's input is ${type}; numeric inputs are supported`);
      }
      const batchDim = dims[0];
      const singleSample = typeof batchDim === 'number' && batchDim === 1;
      if (typeof batchDim === 'number' && batchDim !== 1) {
        throw new ModelLoadError(
          `the ONNX model's input ${describeDims(dims)} has a fixed batch of ${batchDim}`,
        );
      }
      const sampleDims = dims.slice(1).map((d) => (typeof d === 'number' && d >= 0 ? d : null));
      const inputShape =
        dims.length === 0 && (options.inputShape ?? options.fallbackInputShape)
          ? ((options.inputShape ?? options.fallbackInputShape) as number[])
          : resolveShape(
              sampleDims,
              options.inputShape,
              `input ${describeDims(dims)}`,
              options.fallbackInputShape,
            );
      const runner = new OrtRunner(ort, owned, inputShape, singleSample, type);
      if (session.outputNames.length > 1) {
        runner.notes.push(
          `the ONNX model has ${session.outputNames.length} outputs; using ${session.outputNames[0]}`,
        );
      }
      const size = sizeOf(inputShape);
      const probe = await runner.runOnce(new Float32Array(size), 1);
      runner.outputShape = probe.dims.slice(1);
      return runner;
    } catch (err) {
      await owned.release().catch(() => undefined);
      throw err;
    }
  }

  private feed(input: Float32Array, batchSize: number): OrtTypes.Tensor {
    const dims = [batchSize, ...this.inputShape];
    switch (this.inputType) {
      case 'int32':
        return new this.ort.Tensor('int32', Int32Array.from(input, Math.round), dims);
      case 'int64':
        return new this.ort.Tensor(
          'int64',
          BigInt64Array.from(input, (v) => BigInt(Math.round(v))),
          dims,
        );
      case 'float64':
        return new this.ort.Tensor('float64', Float64Array.from(input), dims);
      default:
        return new this.ort.Tensor('float32', input, dims);
    }
  }

  private async runOnce(
    input: Float32Array,
    batchSize: number,
  ): Promise<{ data: Float32Array; dims: number[] }> {
    const results = await this.session.run({ [this.session.inputNames[0]]: this.feed(input, batchSize) });
    const out = results[this.session.outputNames[0]];
    const raw = out.data as ArrayLike<number> | ArrayLike<bigint>;
    let data: Float32Array;
    if (raw instanceof Float32Array) data = raw;
    else {
      data = new Float32Array(raw.length);
      for (let i = 0; i < raw.length; i++) data[i] = Number(raw[i]);
    }
    const dims = [...out.dims].map(Number);
    for (const value of Object.values(results)) (value as { dispose?: () => void }).dispose?.();
    return { data, dims };
  }

  predict(input: Float32Array, batchSize: number): Promise<Float32Array> {
    // ONNX Runtime Web refuses overlapping runs on one session; runs go one after another.
    const result = this.queue.then(async () => {
      if (this.released) throw new Error('the model was disposed');
      if (!this.singleSample || batchSize === 1) return (await this.runOnce(input, batchSize)).data;
      const per = input.length / batchSize;
      const parts: Float32Array[] = [];
      for (let i = 0; i < batchSize; i++) {
        parts.push((await this.runOnce(input.slice(i * per, (i + 1) * per), 1)).data);
      }
      const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
      let at = 0;
      for (const p of parts) {
        out.set(p, at);
        at += p.length;
      }
      return out;
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.queue;
    await this.owned.release();
  }
}
