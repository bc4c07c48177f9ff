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
import { missingFeeds, runSampleBySample, zeroFeeds } from './feeds';
import { sizeOf } from '../../preprocess/shape';
import { dequantizeReal, ioQuantizationOf, quantizeReal, type IoQuantization } from './io-quantization';
import { chooseQdqKernels, hasQdqNodes, type QdqKernels } from './qdq-kernels';
import type { ModelRunner, TensorSpec } from './runner';
import { resolveShape } from './tfjs-runner';

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
export function checkOnnxBytes(bytes: Uint8Array): onnx.ModelProto {
  let detail: string;
  try {
    const model = onnx.ModelProto.decode(bytes);
    if (model.graph) return model;
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
  /**
   * Quantized (QDQ) models: 'integer' lets ONNX Runtime fuse DequantizeLinear/op/QuantizeLinear
   * into integer kernels, 'float' keeps the quantize steps but computes each op in float, 'auto'
   * (default) times both on this machine at load and keeps the faster.
   */
  qdqKernels?: QdqKernels | 'auto';
}

type Dims = readonly (number | string)[];

type ValueMetadata = OrtTypes.InferenceSession.ValueMetadata | undefined;

/**
 * A value's declared dimensions, unknown ones as their symbol ('' when unnamed): ONNX Runtime Web
 * reports an unnamed one as 4294967295 (-1 read unsigned), ONNX Runtime Node as ''.
 */
function dimsOf(meta: ValueMetadata): Dims {
  if (!meta || !meta.isTensor) return [];
  return meta.shape.map((d) => (typeof d === 'number' && (d < 0 || d > 0x7fffffff) ? '' : d));
}

/**
 * A declared shape at a batch of 1, when every dimension is known but the batch: the batch
 * symbol, or an unnamed one in first place only (unnamed ones elsewhere say nothing).
 */
function declaredShape(dims: Dims, batchSymbol: string | undefined): number[] | undefined {
  const shape = dims.map((d, k) => (d === batchSymbol && (d !== '' || k === 0) ? 1 : d));
  return shape.every((d) => typeof d === 'number') ? (shape as number[]) : undefined;
}

function outputType(meta: ValueMetadata): string {
  return meta && meta.isTensor ? meta.type : 'float32';
}

function firstLine(err: unknown): string {
  return String((err as Error)?.message ?? err).split('\n')[0];
}

function describeDims(dims: Dims): string {
  return `[${dims.join(', ')}]`;
}

export class OrtRunner implements ModelRunner {
  readonly runtime: OrtRuntimeName;
  readonly inputShape: number[];
  outputShape: number[] = [];
  readonly inputs: TensorSpec[];
  outputs: TensorSpec[] = [];
  readonly notes: string[] = [];
  /** For a quantized model: the kernels it runs on ('integer' or 'float'), chosen at load. */
  qdqKernels?: QdqKernels;
  private readonly session: OrtTypes.InferenceSession;
  private queue: Promise<unknown> = Promise.resolve();
  /**
   * Buffers the quantized inputs (and small float inputs) are written into, by input name, reused
   * from run to run (runs never overlap). A small typed array made fresh for every run, as a flow
   * message's is, lives on V8's heap and is moved off it when ONNX Runtime reads it, which costs
   * about a microsecond: a tenth of a tiny model's run.
   */
  private readonly buffers = new Map<string, Uint8Array | Int8Array | Float32Array>();
  private released = false;

  private constructor(
    private readonly ort: OrtModule,
    private readonly owned: OrtSession,
    inputs: TensorSpec[],
    /** A model with a fixed batch dimension of 1 (or batch-1 state inside) runs one sample per call. */
    private readonly singleSample: boolean,
    /** Integer inputs and outputs the runner maps from and to real numbers. */
    private readonly ioQuant: Record<string, IoQuantization> = {},
  ) {
    this.session = owned.session;
    this.runtime = owned.runtime;
    this.inputs = inputs;
    this.inputShape = inputs[0].shape;
  }

  static async create(
    model: Uint8Array,
    runtime: OrtRuntimeName,
    options: OrtRunnerOptions = {},
  ): Promise<OrtRunner> {
    const proto = checkOnnxBytes(model);
    const ioQuant = ioQuantizationOf(proto);
    const qdq = hasQdqNodes(proto);
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
    let kernels: Awaited<ReturnType<typeof chooseQdqKernels>> | undefined;
    try {
      if (qdq) {
        kernels = await chooseQdqKernels(
          model,
          runtime,
          sessionOptions,
          options.qdqKernels ?? 'auto',
          ioQuant,
        );
        owned = kernels.session;
      } else owned = await createOrtSession(model, runtime, sessionOptions);
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
      if (session.inputNames.length === 0) throw new ModelLoadError('the ONNX model has no inputs');
      let singleSample = false;
      // The first input's symbolic batch dimension ('batch', 'N'...) marks the batch axis of the
      // other inputs too, e.g. an LSTM state [1, batch, hidden].
      const inputDims = session.inputNames.map((_, index) => dimsOf(session.inputMetadata?.[index]));
      const batchSymbol = typeof inputDims[0][0] === 'string' ? inputDims[0][0] : undefined;
      const inputs = session.inputNames.map((name, index): TensorSpec => {
        const meta = session.inputMetadata?.[index];
        const dims = inputDims[index];
        const dtype = ioQuant[name] ? 'float32' : meta && meta.isTensor ? meta.type : 'float32';
        if (!NUMERIC_TYPES.includes(dtype)) {
          throw new ModelLoadError(
            `the ONNX model's input ${name} is ${dtype}; numeric inputs are supported`,
          );
        }
        const batchDim = dims[0];
        const batched = dims.length > 0 && (typeof batchDim !== 'number' || batchDim < 0 || batchDim === 1);
        if (index === 0) {
          if (batchDim === 1) singleSample = true;
          if (typeof batchDim === 'number' && batchDim > 1) {
            throw new ModelLoadError(
              `the ONNX model's input ${describeDims(dims)} has a fixed batch of ${batchDim}`,
            );
          }
          const sampleDims = dims.slice(1).map((d) => (typeof d === 'number' && d >= 0 ? d : null));
          const configured = options.inputShape ?? options.fallbackInputShape;
          const shape =
            dims.length === 0 && configured
              ? configured
              : resolveShape(
                  sampleDims,
                  options.inputShape,
                  `input ${describeDims(dims)}`,
                  options.fallbackInputShape,
                );
          return { name, shape: [...shape], dtype, batched: true };
        }
        // An input with the batch symbol on any axis (e.g. an LSTM state [layers, batch, hidden])
        // is batched along it; samples still come one after another and the runner interleaves.
        const axis = batchSymbol === undefined ? -1 : dims.indexOf(batchSymbol);
        if (axis >= 0 && dims.every((d, k) => k === axis || (typeof d === 'number' && d >= 0))) {
          const shape = dims.filter((_, k) => k !== axis) as number[];
          return { name, shape, dtype, batched: true, ...(axis > 0 ? { batchAxis: axis } : {}) };
        }
        if (batchSymbol !== undefined && axis < 0 && dims.every((d) => d === 1)) {
          // One fixed value beside a model with a batch (a sample rate): the same for every sample.
          return { name, shape: dims as number[], dtype, batched: false };
        }
        if (batchDim === 1) singleSample = true;
        // Other inputs (state, constants): unknown dimensions inside are the batch of one stream.
        const rest = batched ? dims.slice(1) : dims;
        const shape = rest.map((d) => {
          if (typeof d === 'number' && d >= 0) return d;
          singleSample = true;
          return 1;
        });
        return { name, shape, dtype, batched };
      });
      const runner = new OrtRunner(ort, owned, inputs, singleSample, ioQuant);
      if (kernels) {
        runner.qdqKernels = kernels.kernels;
        runner.notes.push(kernels.note);
      }
      const outputDims = session.outputNames.map((_, index) => dimsOf(session.outputMetadata?.[index]));
      const outputSpec = (name: string, dims: number[], declared: Dims, dtype: string): TensorSpec => {
        const axis = batchSymbol !== undefined ? declared.indexOf(batchSymbol) : -1;
        if (axis > 0 && dims[axis] === 1) {
          const shape = dims.filter((_, k) => k !== axis);
          return { name, shape, dtype, batched: true, batchAxis: axis };
        }
        const batched = dims.length > 0 && dims[0] === 1;
        return { name, shape: batched ? dims.slice(1) : dims, dtype, batched };
      };
      let probed: Awaited<ReturnType<OrtRunner['runOnce']>> | undefined;
      try {
        probed = await runner.runOnce(zeroFeeds(inputs, 1), 1);
      } catch (err) {
        // A model can refuse zeros (e.g. a sample-rate input it branches on): its declared
        // output shapes serve when they are complete.
        const declared = outputDims.map((dims) => declaredShape(dims, batchSymbol));
        if (batchSymbol === undefined || declared.some((d) => d === undefined)) {
          throw new ModelLoadError(
            `the model failed on a probe of zeros and does not declare its output shapes: ${firstLine(err)}`,
            'runtime-failed',
          );
        }
        runner.notes.push(
          `output shapes as the model declares them (it refused a probe of zeros: ${firstLine(err)})`,
        );
        runner.outputs = session.outputNames.map((name, index) =>
          outputSpec(
            name,
            declared[index] as number[],
            outputDims[index],
            ioQuant[name] ? 'float32' : outputType(session.outputMetadata?.[index]),
          ),
        );
      }
      if (probed) {
        const outputs = probed;
        runner.outputs = session.outputNames.map((name, index) =>
          outputSpec(name, outputs[name].dims, outputDims[index], outputs[name].dtype),
        );
      }
      runner.outputShape = runner.outputs[0].shape;
      return runner;
    } catch (err) {
      await owned.release().catch(() => undefined);
      throw err;
    }
  }

  private feed(spec: TensorSpec, input: Float32Array, batchSize: number): OrtTypes.Tensor {
    const axis = spec.batchAxis ?? 0;
    const dims = spec.batched
      ? [...spec.shape.slice(0, axis), batchSize, ...spec.shape.slice(axis)]
      : spec.shape;
    if (spec.batched && spec.batchAxis && batchSize > 1) {
      input = interleave(input, batchSize, sizeOf(spec.shape.slice(0, spec.batchAxis)), true);
    }
    const q = this.ioQuant[spec.name];
    if (q)
      return new this.ort.Tensor(
        q.type,
        quantizeReal(input, q, this.buffer(spec.name, q.type, input.length) as Uint8Array | Int8Array),
        dims,
      );
    switch (spec.dtype) {
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
      case 'bool':
        return new this.ort.Tensor(
          'bool',
          Uint8Array.from(input, (v) => (v ? 1 : 0)),
          dims,
        );
      default:
        if (input.length <= SMALL_INPUT) {
          const copy = this.buffer(spec.name, 'float32', input.length) as Float32Array;
          copy.set(input);
          input = copy;
        }
        return new this.ort.Tensor('float32', input, dims);
    }
  }

  /** The reused off-heap buffer of an input (see `buffers`). */
  private buffer(name: string, type: 'uint8' | 'int8' | 'float32', length: number) {
    const have = this.buffers.get(name);
    if (have && have.length === length) return have;
    const made =
      type === 'uint8'
        ? new Uint8Array(new ArrayBuffer(length))
        : type === 'int8'
          ? new Int8Array(new ArrayBuffer(length))
          : new Float32Array(new ArrayBuffer(length * 4));
    this.buffers.set(name, made);
    return made;
  }

  private async runOnce(
    feeds: Readonly<Record<string, Float32Array>>,
    batchSize: number,
  ): Promise<Record<string, { data: Float32Array; dims: number[]; dtype: string }>> {
    const tensors: Record<string, OrtTypes.Tensor> = {};
    for (const spec of this.inputs) tensors[spec.name] = this.feed(spec, feeds[spec.name], batchSize);
    const results = await this.session.run(tensors);
    const out: Record<string, { data: Float32Array; dims: number[]; dtype: string }> = {};
    for (const name of this.session.outputNames) {
      const value = results[name];
      const raw = value.data as ArrayLike<number> | ArrayLike<bigint>;
      const q = this.ioQuant[name];
      let data: Float32Array;
      if (q) data = dequantizeReal(raw as ArrayLike<number>, q);
      else if (raw instanceof Float32Array) data = raw;
      else {
        data = new Float32Array(raw.length);
        for (let i = 0; i < raw.length; i++) data[i] = Number(raw[i]);
      }
      const spec = this.outputs.find((o) => o.name === name);
      if (spec?.batchAxis && batchSize > 1) {
        data = interleave(data, batchSize, sizeOf(spec.shape.slice(0, spec.batchAxis)), false);
      }
      out[name] = { data, dims: [...value.dims].map(Number), dtype: q ? 'float32' : value.type };
    }
    for (const value of Object.values(results)) (value as { dispose?: () => void }).dispose?.();
    return out;
  }

  run(
    feeds: Readonly<Record<string, Float32Array>>,
    batchSize: number,
  ): Promise<Record<string, Float32Array>> {
    const missing = missingFeeds(this.inputs, feeds);
    if (missing) return Promise.reject(missing);
    // ONNX Runtime Web refuses overlapping runs on one session; runs go one after another.
    const result = this.queue.then(async () => {
      if (this.released) throw new Error('the model was disposed');
      const data = (r: Record<string, { data: Float32Array }>): Record<string, Float32Array> =>
        Object.fromEntries(Object.entries(r).map(([k, v]) => [k, v.data]));
      if (!this.singleSample || batchSize === 1) return data(await this.runOnce(feeds, batchSize));
      return runSampleBySample(this.inputs, feeds, batchSize, async (one) =>
        data(await this.runOnce(one, 1)),
      );
    });
    this.queue = result.catch(() => undefined);
    return result;
  }

  async predict(input: Float32Array, batchSize: number): Promise<Float32Array> {
    const feeds: Record<string, Float32Array> = { [this.inputs[0].name]: input };
    return (await this.run(feeds, batchSize))[this.outputs[0].name];
  }

  async dispose(): Promise<void> {
    if (this.released) return;
    this.released = true;
    await this.queue;
    await this.owned.release();
  }
}

const NUMERIC_TYPES = ['float32', 'int32', 'int64', 'float64', 'bool'];

/** Float inputs up to this many values (64 bytes, the most V8 keeps on its heap) are copied into a reused buffer. */
const SMALL_INPUT = 16;

/**
 * Samples one after another ([n][outer][inner]) -> the batch on an inner axis ([outer][n][inner]),
 * or back (`toModel` false).
 */
function interleave(data: Float32Array, n: number, outer: number, toModel: boolean): Float32Array {
  if (n === 1 || outer === 1) return data;
  const inner = data.length / (n * outer);
  const out = new Float32Array(data.length);
  for (let s = 0; s < n; s++) {
    for (let o = 0; o < outer; o++) {
      const bySample = (s * outer + o) * inner;
      const byAxis = (o * n + s) * inner;
      if (toModel) out.set(data.subarray(bySample, bySample + inner), byAxis);
      else out.set(data.subarray(byAxis, byAxis + inner), bySample);
    }
  }
  return out;
}
