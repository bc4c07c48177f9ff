import type * as OrtTypes from 'onnxruntime-web';
import { ModelLoadError } from './errors';
import type { ModelRunner, RuntimeName } from './runner';
import { resolveShape } from './tfjs-runner';

/**
 * ONNX Runtime runner: `onnxruntime-node` (native, where installed) or `onnxruntime-web`
 * (WebAssembly, loaded from its own package directory, so it works offline in Node).
 */

export type OrtFlavour = 'node' | 'web';
type OrtModule = typeof OrtTypes;

const modules: Partial<Record<OrtFlavour, OrtModule | null>> = {};
const loadErrors: Partial<Record<OrtFlavour, string>> = {};
let liveSessions = 0;

/** ONNX Runtime sessions created and not yet released, in this process. */
export function liveOrtSessions(): number {
  return liveSessions;
}

/** Loads an ONNX Runtime package, or returns undefined (with the reason kept) if it cannot load. */
export function loadOrt(flavour: OrtFlavour): OrtModule | undefined {
  if (!(flavour in modules)) {
    try {
      const mod = (
        flavour === 'node' ? require('onnxruntime-node') : require('onnxruntime-web')
      ) as OrtModule;
      if (flavour === 'web') {
        // One thread, no proxy worker: nothing keeps the process alive and results stay ordered.
        mod.env.wasm.numThreads = 1;
        mod.env.wasm.proxy = false;
      }
      modules[flavour] = mod;
    } catch (err) {
      modules[flavour] = null;
      loadErrors[flavour] = (err as Error).message.split('\n')[0];
    }
  }
  return modules[flavour] ?? undefined;
}

export function ortUnavailableReason(flavour: OrtFlavour): string | undefined {
  return loadOrt(flavour) ? undefined : loadErrors[flavour];
}

export function ortRuntimeName(flavour: OrtFlavour): RuntimeName {
  return flavour === 'node' ? 'onnxruntime-node' : 'onnxruntime-web';
}

export interface OrtRunnerOptions {
  /** Per-sample input shape for models whose input has symbolic dimensions. */
  inputShape?: number[];
  /** Intra-op threads (onnxruntime-node); default lets ONNX Runtime decide. */
  threads?: number;
}

type Dims = readonly (number | string)[];

function describeDims(dims: Dims): string {
  return `[${dims.join(', ')}]`;
}

export class OrtRunner implements ModelRunner {
  readonly runtime: RuntimeName;
  readonly inputShape: number[];
  outputShape: number[] = [];
  readonly notes: string[] = [];
  /** A model with a fixed batch dimension of 1 runs one sample per call. */
  private readonly singleSample: boolean;
  private queue: Promise<unknown> = Promise.resolve();
  private released = false;

  private constructor(
    private readonly ort: OrtModule,
    private readonly session: OrtTypes.InferenceSession,
    flavour: OrtFlavour,
    inputShape: number[],
    singleSample: boolean,
    private readonly inputType: string,
  ) {
    this.runtime = ortRuntimeName(flavour);
    this.inputShape = inputShape;
    this.singleSample = singleSample;
  }

  static async create(
    model: Uint8Array,
    flavour: OrtFlavour,
    options: OrtRunnerOptions = {},
  ): Promise<OrtRunner> {
    const ort = loadOrt(flavour);
    if (!ort) throw new ModelLoadError(`${ortRuntimeName(flavour)} is not available: ${loadErrors[flavour]}`);
    const sessionOptions: OrtTypes.InferenceSession.SessionOptions = {
      graphOptimizationLevel: 'all',
      executionMode: 'sequential',
    };
    if (options.threads && flavour === 'node') sessionOptions.intraOpNumThreads = options.threads;
    let session: OrtTypes.InferenceSession;
    try {
      session = await ort.InferenceSession.create(model, sessionOptions);
    } catch (err) {
      throw new ModelLoadError(
        `ONNX Runtime could not load the model: ${(err as Error).message.split('\n')[0]}`,
      );
    }
    liveSessions++;
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
        dims.length === 0 && options.inputShape
          ? options.inputShape
          : resolveShape(sampleDims, options.inputShape, `input ${describeDims(dims)}`);
      const runner = new OrtRunner(ort, session, flavour, inputShape, singleSample, type);
      if (session.outputNames.length > 1) {
        runner.notes.push(
          `the ONNX model has ${session.outputNames.length} outputs; using ${session.outputNames[0]}`,
        );
      }
      const size = inputShape.reduce((a, b) => a * b, 1);
      const probe = await runner.runOnce(new Float32Array(size), 1);
      runner.outputShape = probe.dims.slice(1);
      return runner;
    } catch (err) {
      liveSessions--;
      await session.release().catch(() => undefined);
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
      for (let i = 0; i < batchSize; i++)
        parts.push((await this.runOnce(input.slice(i * per, (i + 1) * per), 1)).data);
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
    liveSessions--;
    await this.session.release();
  }
}
