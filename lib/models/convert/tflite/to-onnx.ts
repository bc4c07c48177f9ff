import { onnx } from '../../onnx-proto';
import { attr, GraphBuilder, OnnxType, tensorValueInfo, transposedConvPads } from '../onnx-graph';
import { TfliteError } from './errors';
import {
  constInts,
  constReal,
  constValues,
  readTflite,
  type NumericArray,
  type TfliteGraph,
  type TfliteOp,
  type TfliteTensor,
} from './read';
import { IO_QUANTIZATION_KEY, type IoQuantization } from '../../runtime/io-quantization';
import { ActivationFunctionType as Act, Padding, TensorType } from './schema/tflite-schema';
import { concatFloat32 } from '../../../util/arrays';

/** Opset of converted models: 21 for int16 QuantizeLinear/DequantizeLinear (16x8 models). */
export const TFLITE_ONNX_OPSET = 21;

export { IO_QUANTIZATION_KEY, type IoQuantization };

/** With io 'quantized': the largest input or output left as integers for the caller to map. */
export const QUANTIZED_IO_MAX_ELEMENTS = 256;

export interface TfliteConvertOptions {
  /**
   * 'real' (default): a quantized input or output becomes float32 and the graph applies its
   * scale and zero point, so callers send and receive real numbers. 'raw': TFLite's own types.
   * 'quantized': small int8/uint8 inputs and outputs (up to QUANTIZED_IO_MAX_ELEMENTS values)
   * stay integers in the graph and the conversion's `ioQuantization` (also stored in the model's
   * metadata under IO_QUANTIZATION_KEY) says how to map them to real numbers; larger ones are
   * real as with 'real'. A graph node costs about a microsecond whatever its size, which is most
   * of a tiny model's run, while mapping in JavaScript costs a few nanoseconds per value.
   */
  io?: 'real' | 'raw' | 'quantized';
  /** Compute in float with the weights dequantized: the float twin of a quantized model. */
  dequantize?: boolean;
  /**
   * How int8 activations are carried. 'uint8' (default): as uint8 with the zero point moved by
   * 128 (the same real values, bit for bit), because ONNX Runtime's x86 integer kernels take
   * uint8 activations with int8 weights and fuse DequantizeLinear/op/QuantizeLinear into one
   * QLinearConv/QGemm only then. 'int8': as TFLite stores them.
   */
  activations?: 'uint8' | 'int8';
}

export interface TfliteIo {
  /** The TFLite tensor name. */
  name: string;
  /** The ONNX input or output name. */
  onnxName: string;
  shape: number[];
  /** TFLite type, e.g. float32, int8. */
  type: string;
  /** Scale and zero point of a quantized tensor. */
  quantization?: { scale: number; zeroPoint: number };
}

export interface TfliteConversion {
  /** ONNX ModelProto bytes. */
  onnx: Uint8Array;
  inputs: TfliteIo[];
  outputs: TfliteIo[];
  /** How many of each TFLite operator the model has. */
  opCounts: Record<string, number>;
  /** float, int8 (full-integer), int16x8, hybrid (int8 weights, float activations), float16 weights. */
  quantization: 'float' | 'int8' | 'int16x8' | 'hybrid' | 'float16';
  /** With io 'quantized': the graph inputs and outputs that hold integers, by ONNX name. */
  ioQuantization?: Record<string, IoQuantization>;
}

/** Converts a TFLite flatbuffer to an ONNX model computing the same function. */
export function convertTfliteToOnnx(bytes: Uint8Array, options: TfliteConvertOptions = {}): TfliteConversion {
  return convertTfliteGraph(readTflite(bytes), options);
}

export function convertTfliteGraph(graph: TfliteGraph, options: TfliteConvertOptions = {}): TfliteConversion {
  return new Converter(graph, options).run();
}

type Options = Record<string, unknown>;

function opt<T>(op: TfliteOp, key: string, fallback: T): T {
  const v = op.options?.[key];
  return v === undefined || v === null ? fallback : (v as T);
}

const QUANT_TYPES = new Set([TensorType.INT8, TensorType.UINT8, TensorType.INT16, TensorType.INT32]);

function onnxTypeOf(type: TensorType): number {
  switch (type) {
    case TensorType.FLOAT32:
    case TensorType.FLOAT16:
      return OnnxType.FLOAT;
    case TensorType.FLOAT64:
      return OnnxType.DOUBLE;
    case TensorType.INT8:
      return OnnxType.INT8;
    case TensorType.UINT8:
      return OnnxType.UINT8;
    case TensorType.INT16:
      return OnnxType.INT16;
    case TensorType.UINT16:
      return OnnxType.UINT16;
    case TensorType.INT32:
      return OnnxType.INT32;
    case TensorType.UINT32:
      return OnnxType.UINT32;
    case TensorType.INT64:
      return OnnxType.INT64;
    case TensorType.BOOL:
      return OnnxType.BOOL;
    default:
      throw new TfliteError('tflite-unsupported', `TFLite tensor type ${TensorType[type]} is not supported`);
  }
}

function typeName(type: TensorType): string {
  return (TensorType[type] ?? String(type)).toLowerCase();
}

function product(dims: readonly number[]): number {
  return dims.reduce((a, b) => a * b, 1);
}

function sanitize(name: string): string {
  return name.replace(/[^A-Za-z0-9_./:-]/g, '_') || 'tensor';
}

/** Permutes any dense row-major typed array (as numpy.transpose). */
function permute<T extends NumericArray>(data: T, dims: readonly number[], perm: readonly number[]): T {
  const rank = dims.length;
  const outDims = perm.map((p) => dims[p]);
  const strides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    strides[i] = s;
    s *= dims[i];
  }
  const byOut = perm.map((p) => strides[p]);
  const out = new (data.constructor as new (n: number) => T)(data.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < data.length; o++) {
    let src = 0;
    for (let k = 0; k < rank; k++) src += idx[k] * byOut[k];
    out[o] = data[src];
    for (let k = rank - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

const NHWC_TO_NCHW = [0, 3, 1, 2];
const NCHW_TO_NHWC = [0, 2, 3, 1];

class Converter {
  private readonly g = new GraphBuilder();
  /** ONNX value holding each TFLite tensor in its stored type (float in dequantize mode). */
  private readonly values = new Map<number, string>();
  private readonly reals = new Map<number, string>();
  private readonly scalars = new Map<string, string>();
  private readonly floatMode: boolean;
  private readonly realIo: boolean;
  private readonly u8Acts: boolean;
  private readonly quantIo: boolean;
  private readonly ioQuant: Record<string, IoQuantization> = {};

  constructor(
    private readonly m: TfliteGraph,
    options: TfliteConvertOptions,
  ) {
    this.floatMode = options.dequantize === true;
    this.realIo = options.io !== 'raw' || this.floatMode;
    this.u8Acts = !this.floatMode && options.activations !== 'int8';
    this.quantIo = !this.floatMode && options.io === 'quantized';
  }

  /** The type a tensor has in the graph: int8 activations are carried as uint8 (see options). */
  private storedType(t: TfliteTensor): TensorType {
    return this.u8Acts && t.type === TensorType.INT8 && !t.data && !!t.quant && t.quant.scale.length === 1
      ? TensorType.UINT8
      : t.type;
  }

  /** The zero points of a quantized tensor in its graph type. */
  private zeroPoints(t: TfliteTensor): number[] {
    const shift = this.storedType(t) === t.type ? 0 : 128;
    return t.quant ? t.quant.zeroPoint.map((z) => z + shift) : [];
  }

  /** A raw int8 graph input -> its uint8 graph form (exact: +128), or the reverse for an output. */
  private shiftInt8(value: string, t: TfliteTensor, toGraph: boolean): string {
    if (this.storedType(t) === t.type) return value;
    const wide = this.g.op('Cast', [value], [attr.int('to', OnnxType.INT32)]);
    const offset = this.g.initializer('int8_offset', OnnxType.INT32, [], Int32Array.of(128));
    const moved = this.g.op(toGraph ? 'Add' : 'Sub', [wide, offset]);
    return this.g.op('Cast', [moved], [attr.int('to', toGraph ? OnnxType.UINT8 : OnnxType.INT8)]);
  }

  /** With io 'quantized': whether this input or output stays integers in the graph (noted in ioQuant). */
  private integerIo(t: TfliteTensor, name: string): boolean {
    const type = this.storedType(t);
    if (!this.quantIo || !t.quant || t.quant.scale.length !== 1) return false;
    if (product(t.shape) > QUANTIZED_IO_MAX_ELEMENTS) return false;
    if (type !== TensorType.UINT8 && type !== TensorType.INT8) return false;
    this.ioQuant[name] = {
      scale: t.quant.scale[0],
      zeroPoint: this.zeroPoints(t)[0],
      type: type === TensorType.UINT8 ? 'uint8' : 'int8',
    };
    return true;
  }

  private t(i: number): TfliteTensor {
    const t = this.m.tensors[i];
    if (!t) throw new TfliteError('tflite-invalid', `tensor ${i} does not exist`);
    return t;
  }

  /** Whether a tensor is carried quantized (integers with scale and zero point) in the graph. */
  private quantAct(t: TfliteTensor): boolean {
    return !this.floatMode && !!t.quant && QUANT_TYPES.has(t.type);
  }

  /** int8/uint8 activations: the ops ONNX Runtime runs in integer arithmetic (QLinear*). */
  private int8Act(t: TfliteTensor): boolean {
    return this.quantAct(t) && (t.type === TensorType.INT8 || t.type === TensorType.UINT8);
  }

  run(): TfliteConversion {
    const { m, g } = this;
    const inputs: TfliteIo[] = [];
    const outputs: TfliteIo[] = [];
    const graphInputs: onnx.IValueInfoProto[] = [];
    const graphOutputs: onnx.IValueInfoProto[] = [];
    const io = (t: TfliteTensor, onnxName: string): TfliteIo => ({
      name: t.name,
      onnxName,
      shape: t.shape.slice(),
      type: typeName(t.type),
      ...(t.quant && t.quant.scale.length === 1 && QUANT_TYPES.has(t.type)
        ? { quantization: { scale: t.quant.scale[0], zeroPoint: t.quant.zeroPoint[0] } }
        : {}),
    });
    const ioNames = [...m.inputs, ...m.outputs].map((i) => sanitize(this.t(i).name));
    g.reserve(...ioNames);

    for (const ti of m.inputs) {
      const t = this.t(ti);
      const name = sanitize(t.name);
      const quantized = !!t.quant && QUANT_TYPES.has(t.type);
      if (this.integerIo(t, name)) {
        graphInputs.push(tensorValueInfo(name, onnxTypeOf(this.storedType(t)), t.shape));
        this.values.set(ti, name);
      } else if (quantized && this.realIo) {
        graphInputs.push(tensorValueInfo(name, OnnxType.FLOAT, t.shape));
        this.values.set(ti, this.floatMode ? name : this.quantize(name, t));
      } else {
        graphInputs.push(tensorValueInfo(name, onnxTypeOf(t.type), t.shape));
        this.values.set(ti, quantized && !this.floatMode ? this.shiftInt8(name, t, true) : name);
      }
      inputs.push(io(t, name));
    }

    const opCounts: Record<string, number> = {};
    for (const op of m.ops) opCounts[op.name] = (opCounts[op.name] ?? 0) + 1;
    for (const op of m.ops) this.convertOp(op);

    for (const ti of m.outputs) {
      const t = this.t(ti);
      const name = sanitize(t.name);
      const quantized = !!t.quant && QUANT_TYPES.has(t.type);
      let value = this.stored(ti);
      let type = onnxTypeOf(t.type);
      if (this.integerIo(t, name)) {
        type = onnxTypeOf(this.storedType(t));
      } else if (quantized && this.realIo) {
        if (!this.floatMode) value = this.dequantize(value, t);
        type = OnnxType.FLOAT;
      } else if (quantized && !this.floatMode) {
        value = this.shiftInt8(value, t, false);
      }
      g.node('Identity', [value], { outputs: [name], name: `output_${name}` });
      graphOutputs.push(tensorValueInfo(name, type, t.shape));
      outputs.push(io(t, name));
    }

    const proto = onnx.ModelProto.create({
      irVersion: 10,
      opsetImport: [{ domain: '', version: TFLITE_ONNX_OPSET }],
      producerName: 'node-red-contrib-edge-ai (tflite)',
      metadataProps: Object.keys(this.ioQuant).length
        ? [{ key: IO_QUANTIZATION_KEY, value: JSON.stringify(this.ioQuant) }]
        : [],
      graph: {
        name: 'tflite',
        node: g.nodes,
        initializer: g.initializers,
        input: graphInputs,
        output: graphOutputs,
      },
    });
    return {
      onnx: onnx.ModelProto.encode(proto).finish(),
      inputs,
      outputs,
      opCounts,
      quantization: this.kind(),
      ...(Object.keys(this.ioQuant).length ? { ioQuantization: { ...this.ioQuant } } : {}),
    };
  }

  private kind(): TfliteConversion['quantization'] {
    const acts = this.m.tensors.filter((t) => !t.data);
    const consts = this.m.tensors.filter((t) => t.data);
    if (acts.some((t) => t.quant && t.type === TensorType.INT16)) return 'int16x8';
    if (acts.some((t) => t.quant && (t.type === TensorType.INT8 || t.type === TensorType.UINT8)))
      return 'int8';
    if (consts.some((t) => t.quant && (t.type === TensorType.INT8 || t.type === TensorType.UINT8)))
      return 'hybrid';
    if (consts.some((t) => t.type === TensorType.FLOAT16)) return 'float16';
    return 'float';
  }

  // ---- values ----------------------------------------------------------------------------

  /** The ONNX value of a tensor in its stored type (constants become initializers). */
  private stored(ti: number): string {
    const have = this.values.get(ti);
    if (have) return have;
    const t = this.t(ti);
    if (!t.data) {
      throw new TfliteError('tflite-invalid', `tensor ${t.name} is read before any operator writes it`);
    }
    let name: string;
    if ((t.quant && this.floatMode && QUANT_TYPES.has(t.type)) || t.type === TensorType.FLOAT16) {
      name = this.g.floats(sanitize(t.name), constReal(t), t.shape);
    } else {
      name = this.g.initializer(sanitize(t.name), onnxTypeOf(t.type), t.shape, constValues(t));
    }
    this.values.set(ti, name);
    return name;
  }

  /**
   * The real (float) value of a tensor. Quantized constants are dequantized here at conversion
   * time unless `keepInt8` asks for a DequantizeLinear node, which ONNX Runtime fuses with the
   * consuming op into an int8 kernel.
   */
  private real(ti: number, keepInt8 = false): string {
    const t = this.t(ti);
    if (t.data && t.quant && QUANT_TYPES.has(t.type) && !(keepInt8 && !this.floatMode)) {
      const cached = this.reals.get(ti);
      if (cached) return cached;
      const name = this.g.floats(sanitize(t.name) + '_real', constReal(t), t.shape);
      this.reals.set(ti, name);
      return name;
    }
    const cached = this.reals.get(ti);
    if (cached) return cached;
    const name = this.toReal(this.stored(ti), t);
    this.reals.set(ti, name);
    return name;
  }

  /** Stored value -> float: DequantizeLinear for quantized tensors, Cast for plain integers. */
  private toReal(value: string, t: TfliteTensor, axis?: number): string {
    const quantized = !!t.quant && QUANT_TYPES.has(t.type);
    if (t.type === TensorType.FLOAT32 || t.type === TensorType.FLOAT16) return value;
    if (quantized) return this.floatMode ? value : this.dequantize(value, t, axis);
    return this.g.op('Cast', [value], [attr.int('to', OnnxType.FLOAT)]);
  }

  private quantParams(t: TfliteTensor): [string, string] {
    const q = t.quant;
    if (!q) throw new TfliteError('tflite-invalid', `tensor ${t.name} has no quantization parameters`);
    const per = q.scale.length > 1;
    const dims = per ? [q.scale.length] : [];
    const scale = this.g.floats(
      sanitize(t.name) + '_scale',
      q.scale.slice(0, per ? q.scale.length : 1),
      dims,
    );
    const type = this.storedType(t);
    const zpType = onnxTypeOf(type);
    const zps = this.zeroPoints(t).slice(0, per ? q.zeroPoint.length : 1);
    const zpData =
      type === TensorType.INT8
        ? Int8Array.from(zps)
        : type === TensorType.UINT8
          ? Uint8Array.from(zps)
          : type === TensorType.INT16
            ? Int16Array.from(zps)
            : Int32Array.from(zps);
    const zp = this.g.initializer(sanitize(t.name) + '_zero_point', zpType, dims, zpData);
    return [scale, zp];
  }

  private dequantize(value: string, t: TfliteTensor, axis?: number): string {
    const [scale, zp] = this.quantParams(t);
    const attrs = t.quant && t.quant.scale.length > 1 ? [attr.int('axis', axis ?? t.quant.axis)] : [];
    return this.g.op('DequantizeLinear', [value, scale, zp], attrs);
  }

  /** Float -> the tensor's stored type (QuantizeLinear; int32 by hand, ONNX has no int32 Quantize). */
  private quantize(value: string, t: TfliteTensor): string {
    if (t.type === TensorType.INT32) {
      const q = t.quant!;
      const scaled = this.g.op('Round', [this.g.op('Div', [value, this.scalar(q.scale[0])])]);
      const shifted = this.g.op('Add', [scaled, this.scalar(q.zeroPoint[0])]);
      const clipped = this.g.op('Clip', [shifted, this.scalar(-2147483648), this.scalar(2147483520)]);
      return this.g.op('Cast', [clipped], [attr.int('to', OnnxType.INT32)]);
    }
    const [scale, zp] = this.quantParams(t);
    return this.g.op('QuantizeLinear', [value, scale, zp]);
  }

  /** Sets a tensor from a float result, quantizing it when the tensor is quantized. */
  private emit(ti: number, value: string, after?: (stored: string) => string): void {
    const t = this.t(ti);
    let stored: string;
    if (this.quantAct(t)) stored = this.quantize(value, t);
    else if (t.type === TensorType.FLOAT32 || this.floatMode) stored = value;
    else stored = this.g.op('Cast', [value], [attr.int('to', onnxTypeOf(t.type))]);
    this.values.set(ti, after ? after(stored) : stored);
  }

  private scalar(v: number): string {
    const key = `f${v}`;
    let name = this.scalars.get(key);
    if (!name) {
      name = this.g.floats('const', [v], []);
      this.scalars.set(key, name);
    }
    return name;
  }

  private ints(values: readonly number[]): string {
    return this.g.int64s('ints', values);
  }

  private sameQuant(a: TfliteTensor, b: TfliteTensor): boolean {
    if (this.floatMode) return true;
    if (this.storedType(a) !== this.storedType(b)) return false;
    if (!a.quant || !b.quant) return !a.quant && !b.quant;
    const bz = this.zeroPoints(b);
    return (
      a.quant.scale.length === b.quant.scale.length &&
      a.quant.scale.every((s, i) => Math.abs(s - b.quant!.scale[i]) <= 1e-6 * Math.abs(s)) &&
      this.zeroPoints(a).every((z, i) => z === bz[i])
    );
  }

  /**
   * A data-movement op (reshape, transpose, slice...): applied to the stored integers when input
   * and output share quantization, else through real values.
   */
  private move(inIndex: number, outIndex: number, f: (value: string) => string): void {
    const a = this.t(inIndex);
    const b = this.t(outIndex);
    if (this.sameQuant(a, b)) this.values.set(outIndex, f(this.stored(inIndex)));
    else this.emit(outIndex, f(this.real(inIndex)));
  }

  private activation(value: string, fn: Act, op: TfliteOp): string {
    switch (fn) {
      case Act.NONE:
        return value;
      case Act.RELU:
        return this.g.op('Relu', [value]);
      case Act.RELU6:
        return this.g.op('Clip', [value, this.scalar(0), this.scalar(6)]);
      case Act.RELU_N1_TO_1:
        return this.g.op('Clip', [value, this.scalar(-1), this.scalar(1)]);
      case Act.TANH:
        return this.g.op('Tanh', [value]);
      default:
        throw new TfliteError(
          'tflite-unsupported-op',
          `${op.name} with fused activation ${Act[fn] ?? fn} is not supported`,
        );
    }
  }

  private fused(op: TfliteOp): Act {
    return opt(op, 'fusedActivationFunction', Act.NONE);
  }

  // ---- operators ---------------------------------------------------------------------------

  private convertOp(op: TfliteOp): void {
    const handler = HANDLERS[op.name];
    if (!handler) {
      const custom = op.name.startsWith('CUSTOM:');
      throw new TfliteError(
        'tflite-unsupported-op',
        custom
          ? `the TFLite model uses the custom operator ${op.name.slice(7)}, which is not supported`
          : `the TFLite operator ${op.name} is not supported (operator ${op.index})`,
        { op: op.name },
      );
    }
    handler(this, op);
  }

  conv(op: TfliteOp, depthwise: boolean): void {
    const [xi, wi, bi] = op.inputs;
    const x = this.t(xi);
    const w = this.t(wi);
    const out = op.outputs[0];
    const int8 = this.int8Act(x);
    const [, inH, inW, inC] = x.shape;
    // TFLite [O,KH,KW,I] (depthwise [1,KH,KW,C*M]) -> ONNX [O,I,KH,KW] ([C*M,1,KH,KW]).
    const perm = depthwise ? [3, 0, 1, 2] : [0, 3, 1, 2];
    const kh = w.shape[1];
    const kw = w.shape[2];
    const group = depthwise ? inC : inC / w.shape[3];
    if (!Number.isInteger(group) || group < 1) {
      throw new TfliteError(
        'tflite-invalid',
        `${op.name} ${op.index}: ${inC} input channels, filter ${w.shape}`,
      );
    }
    const weight = this.weight(wi, perm, int8);
    const inputs = [
      this.toRealIfQuant(this.g.op('Transpose', [this.stored(xi)], [attr.ints('perm', NHWC_TO_NCHW)]), x),
      weight,
    ];
    if (bi !== undefined && bi >= 0) inputs.push(this.bias(bi, int8));
    const sh = opt(op, 'strideH', 1);
    const sw = opt(op, 'strideW', 1);
    const dh = opt(op, 'dilationHFactor', 1);
    const dw = opt(op, 'dilationWFactor', 1);
    const same = opt(op, 'padding', Padding.SAME) === Padding.SAME;
    const [pt, pb] = same ? samePads(inH, kh, sh, dh) : [0, 0];
    const [pl, pr] = same ? samePads(inW, kw, sw, dw) : [0, 0];
    const y = this.g.op('Conv', inputs, [
      attr.ints('kernel_shape', [kh, kw]),
      attr.ints('strides', [sh, sw]),
      attr.ints('dilations', [dh, dw]),
      attr.ints('pads', [pt, pl, pb, pr]),
      attr.int('group', group),
    ]);
    this.emit(out, this.activation(y, this.fused(op), op), (s) =>
      this.g.op('Transpose', [s], [attr.ints('perm', NCHW_TO_NHWC)]),
    );
  }

  /**
   * A transposed convolution: TRANSPOSE_CONV (output shape, weights, input, bias) or MediaPipe's
   * custom Convolution2DTransposeBias (input, weights, bias; TfLiteTransposeConvParams as raw
   * int32s: padding, stride width, stride height). Weights [O, KH, KW, I].
   */
  transposeConv(op: TfliteOp, custom: boolean): void {
    const [xi, wi, bi] = custom ? op.inputs : [op.inputs[2], op.inputs[1], op.inputs[3]];
    const x = this.t(xi);
    const w = this.t(wi);
    const out = op.outputs[0];
    const int8 = this.int8Act(x);
    let same: boolean;
    let sh: number;
    let sw: number;
    if (custom) {
      const raw = op.customOptions;
      if (!raw || raw.byteLength < 12) {
        throw new TfliteError('tflite-invalid', `${op.name} ${op.index}: its options are missing`);
      }
      const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
      same = view.getInt32(0, true) === Padding.SAME + 1;
      sw = view.getInt32(4, true);
      sh = view.getInt32(8, true);
    } else {
      same = opt(op, 'padding', Padding.SAME) === Padding.SAME;
      sh = opt(op, 'strideH', 1);
      sw = opt(op, 'strideW', 1);
    }
    const [, inH, inW] = x.shape;
    const [, outH, outW] = this.t(out).shape;
    const [, kh, kw] = w.shape;
    const padH = transposedConvPads(inH, outH, kh, sh, same);
    const padW = transposedConvPads(inW, outW, kw, sw, same);
    if (!padH || !padW) {
      throw new TfliteError(
        'tflite-invalid',
        `${op.name} ${op.index}: output ${outH}x${outW} from ${inH}x${inW}`,
      );
    }
    const inputs = [
      this.toRealIfQuant(this.g.op('Transpose', [this.stored(xi)], [attr.ints('perm', NHWC_TO_NCHW)]), x),
      // [O, KH, KW, I] -> ONNX ConvTranspose's [I, O, KH, KW].
      this.weight(wi, [3, 0, 1, 2], int8),
    ];
    if (bi !== undefined && bi >= 0) inputs.push(this.bias(bi, int8));
    const y = this.g.op('ConvTranspose', inputs, [
      attr.ints('kernel_shape', [kh, kw]),
      attr.ints('strides', [sh, sw]),
      attr.ints('pads', [padH.before, padW.before, padH.after, padW.after]),
      attr.ints('output_padding', [padH.extra, padW.extra]),
    ]);
    this.emit(out, custom ? y : this.activation(y, this.fused(op), op), (v) =>
      this.g.op('Transpose', [v], [attr.ints('perm', NCHW_TO_NHWC)]),
    );
  }

  private toRealIfQuant(value: string, t: TfliteTensor): string {
    return this.toReal(value, t);
  }

  /** A weight tensor permuted to ONNX layout: int8 + DequantizeLinear for int8 compute, else float. */
  weight(wi: number, perm: number[] | null, int8: boolean): string {
    const w = this.t(wi);
    const dims = perm ? perm.map((p) => w.shape[p]) : w.shape;
    if (!w.data) {
      const r = this.real(wi);
      return perm ? this.g.op('Transpose', [r], [attr.ints('perm', perm)]) : r;
    }
    if (int8 && w.quant && (w.type === TensorType.INT8 || w.type === TensorType.UINT8)) {
      const raw = constValues(w);
      const data = perm ? permute(raw, w.shape, perm) : raw;
      const name = this.g.initializer(sanitize(w.name), onnxTypeOf(w.type), dims, data);
      const axis = perm ? perm.indexOf(w.quant.axis) : w.quant.axis;
      return this.dequantize(name, w, axis);
    }
    const real = constReal(w);
    return this.g.floats(sanitize(w.name), perm ? permute(real, w.shape, perm) : real, dims);
  }

  bias(bi: number, int8: boolean): string {
    const b = this.t(bi);
    if (int8 && b.data && b.quant && b.type === TensorType.INT32) {
      return this.dequantize(this.stored(bi), b, 0);
    }
    return this.real(bi);
  }

  pool(op: TfliteOp, type: 'AveragePool' | 'MaxPool'): void {
    const xi = op.inputs[0];
    const x = this.t(xi);
    const [, inH, inW] = x.shape;
    const kh = opt(op, 'filterHeight', 1);
    const kw = opt(op, 'filterWidth', 1);
    const sh = opt(op, 'strideH', 1);
    const sw = opt(op, 'strideW', 1);
    const same = opt(op, 'padding', Padding.SAME) === Padding.SAME;
    const [pt, pb] = same ? samePads(inH, kh, sh, 1) : [0, 0];
    const [pl, pr] = same ? samePads(inW, kw, sw, 1) : [0, 0];
    const xT = this.toReal(this.g.op('Transpose', [this.stored(xi)], [attr.ints('perm', NHWC_TO_NCHW)]), x);
    // TFLite averages over the valid part of a padded window (count_include_pad = 0).
    const y = this.g.op(
      type,
      [xT],
      [
        attr.ints('kernel_shape', [kh, kw]),
        attr.ints('strides', [sh, sw]),
        attr.ints('pads', [pt, pl, pb, pr]),
      ],
    );
    this.emit(op.outputs[0], this.activation(y, this.fused(op), op), (s) =>
      this.g.op('Transpose', [s], [attr.ints('perm', NCHW_TO_NHWC)]),
    );
  }

  /** RESIZE_BILINEAR / RESIZE_NEAREST_NEIGHBOR to the output tensor's (static) height and width. */
  resize(op: TfliteOp, mode: 'linear' | 'nearest'): void {
    const xi = op.inputs[0];
    const [n, h, w, ch] = this.t(op.outputs[0]).shape;
    const align = opt(op, 'alignCorners', false);
    const half = opt(op, 'halfPixelCenters', false);
    // TensorFlow's coordinate conventions; nearest picks floor (round with corners aligned).
    const attrs =
      mode === 'linear'
        ? [
            attr.string(
              'coordinate_transformation_mode',
              align ? 'align_corners' : half ? 'half_pixel' : 'asymmetric',
            ),
          ]
        : [
            attr.string(
              'coordinate_transformation_mode',
              align ? 'align_corners' : half ? 'tf_half_pixel_for_nn' : 'asymmetric',
            ),
            attr.string('nearest_mode', align ? 'round_prefer_ceil' : 'floor'),
          ];
    const xT = this.toReal(
      this.g.op('Transpose', [this.stored(xi)], [attr.ints('perm', NHWC_TO_NCHW)]),
      this.t(xi),
    );
    const y = this.g.op(
      'Resize',
      [xT, '', '', this.ints([n, ch, h, w])],
      [attr.string('mode', mode), ...attrs],
    );
    this.emit(op.outputs[0], y, (v) => this.g.op('Transpose', [v], [attr.ints('perm', NCHW_TO_NHWC)]));
  }

  fullyConnected(op: TfliteOp): void {
    const [xi, wi, bi] = op.inputs;
    const x = this.t(xi);
    const w = this.t(wi);
    const outIndex = op.outputs[0];
    const out = this.t(outIndex);
    const int8 = this.int8Act(x);
    const inner = w.shape[w.shape.length - 1];
    const rows = product(x.shape) / inner;
    const x2 =
      x.shape.length === 2 && x.shape[0] === rows
        ? this.stored(xi)
        : this.g.op('Reshape', [this.stored(xi), this.ints([rows, inner])]);
    const inputs = [this.toReal(x2, x), this.weight(wi, null, int8)];
    if (bi !== undefined && bi >= 0) inputs.push(this.bias(bi, int8));
    const y = this.g.op('Gemm', inputs, [attr.int('transB', 1)]);
    const same = out.shape.length === 2 && out.shape[0] === rows;
    this.emit(outIndex, this.activation(y, this.fused(op), op), (s) =>
      same ? s : this.g.op('Reshape', [s, this.ints(out.shape)]),
    );
  }

  binary(op: TfliteOp, onnxOp: string): void {
    const [ai, bi] = op.inputs;
    const int8 = this.int8Act(this.t(ai)) || this.int8Act(this.t(bi));
    const y = this.g.op(onnxOp, [this.real(ai, int8), this.real(bi, int8)]);
    this.emit(op.outputs[0], this.activation(y, this.fused(op), op));
  }

  unary(op: TfliteOp, onnxOp: string, attrs: onnx.IAttributeProto[] = []): void {
    this.emit(op.outputs[0], this.g.op(onnxOp, [this.real(op.inputs[0])], attrs));
  }

  clip(op: TfliteOp, lo: number, hi: number): void {
    this.emit(op.outputs[0], this.g.op('Clip', [this.real(op.inputs[0]), this.scalar(lo), this.scalar(hi)]));
  }

  reshape(op: TfliteOp): void {
    const out = this.t(op.outputs[0]);
    this.move(op.inputs[0], op.outputs[0], (v) => this.g.op('Reshape', [v, this.ints(out.shape)]));
  }

  transpose(op: TfliteOp): void {
    const perm = constInts(this.t(op.inputs[1]));
    this.move(op.inputs[0], op.outputs[0], (v) => this.g.op('Transpose', [v], [attr.ints('perm', perm)]));
  }

  concat(op: TfliteOp): void {
    const outIndex = op.outputs[0];
    const out = this.t(outIndex);
    let axis = opt(op, 'axis', 0);
    if (axis < 0) axis += out.shape.length;
    const act = this.fused(op);
    if (act === Act.NONE && op.inputs.every((i) => this.sameQuant(this.t(i), out))) {
      const values = op.inputs.map((i) => this.stored(i));
      this.values.set(outIndex, this.g.op('Concat', values, [attr.int('axis', axis)]));
      return;
    }
    const y = this.g.op(
      'Concat',
      op.inputs.map((i) => this.real(i, true)),
      [attr.int('axis', axis)],
    );
    this.emit(outIndex, this.activation(y, act, op));
  }

  pad(op: TfliteOp, mode: 'constant' | 'reflect'): void {
    const [xi, pi, vi] = op.inputs;
    const x = this.t(xi);
    const outIndex = op.outputs[0];
    const out = this.t(outIndex);
    const p = constInts(this.t(pi));
    const rank = x.shape.length;
    const pads = [
      ...Array.from({ length: rank }, (_, i) => p[2 * i]),
      ...Array.from({ length: rank }, (_, i) => p[2 * i + 1]),
    ];
    const padsName = this.ints(pads);
    if (mode === 'reflect') {
      this.move(xi, outIndex, (v) => this.g.op('Pad', [v, padsName], [attr.string('mode', 'reflect')]));
      return;
    }
    const realValue = vi !== undefined && vi >= 0 ? constReal(this.t(vi))[0] : 0;
    if (this.sameQuant(x, out) && this.quantAct(x)) {
      const q = x.quant!;
      const type = this.storedType(x);
      const qv = Math.round(realValue / q.scale[0]) + this.zeroPoints(x)[0];
      const typed =
        type === TensorType.INT8
          ? Int8Array.of(Math.max(-128, Math.min(127, qv)))
          : type === TensorType.UINT8
            ? Uint8Array.of(Math.max(0, Math.min(255, qv)))
            : type === TensorType.INT16
              ? Int16Array.of(Math.max(-32768, Math.min(32767, qv)))
              : Int32Array.of(qv);
      const valueName = this.g.initializer('pad_value', onnxTypeOf(type), [], typed);
      this.values.set(outIndex, this.g.op('Pad', [this.stored(xi), padsName, valueName]));
      return;
    }
    if (x.type !== TensorType.FLOAT32 && !this.quantAct(x) && !this.floatMode) {
      this.values.set(outIndex, this.g.op('Pad', [this.stored(xi), padsName]));
      return;
    }
    this.emit(outIndex, this.g.op('Pad', [this.real(xi), padsName, this.scalar(realValue)]));
  }

  reduce(op: TfliteOp, onnxOp: string): void {
    const [xi, ai] = op.inputs;
    const rank = this.t(xi).shape.length;
    const axes = [...new Set(constInts(this.t(ai)).map((a) => (a < 0 ? a + rank : a)))];
    const keep = opt(op, 'keepDims', false);
    const y = this.g.op(onnxOp, [this.real(xi), this.ints(axes)], [attr.int('keepdims', keep ? 1 : 0)]);
    const out = this.t(op.outputs[0]);
    // A scalar result keeps TFLite's shape (ONNX reduces to rank 0 where TFLite may say [1]).
    this.emit(op.outputs[0], y, (s) => this.g.op('Reshape', [s, this.ints(out.shape)]));
  }

  stridedSlice(op: TfliteOp): void {
    const [xi, bi, ei, si] = op.inputs;
    const x = this.t(xi);
    const out = this.t(op.outputs[0]);
    const begin = constInts(this.t(bi));
    const end = constInts(this.t(ei));
    const strides = si !== undefined && si >= 0 ? constInts(this.t(si)) : begin.map(() => 1);
    const beginMask = opt(op, 'beginMask', 0);
    const endMask = opt(op, 'endMask', 0);
    const shrinkMask = opt(op, 'shrinkAxisMask', 0);
    const offset = opt(op, 'offset', false);
    if (opt(op, 'ellipsisMask', 0) !== 0 || opt(op, 'newAxisMask', 0) !== 0) {
      throw new TfliteError(
        'tflite-unsupported-op',
        `STRIDED_SLICE with an ellipsis or new-axis mask is not supported (operator ${op.index})`,
      );
    }
    const starts: number[] = [];
    const ends: number[] = [];
    const steps: number[] = [];
    const axes: number[] = [];
    for (let i = 0; i < begin.length; i++) {
      const n = x.shape[i];
      const s = strides[i];
      if (s === 0) throw new TfliteError('tflite-invalid', `STRIDED_SLICE ${op.index} has stride 0`);
      const clampIdx = (v: number) =>
        s > 0 ? Math.max(0, Math.min(n, v)) : Math.max(-1, Math.min(n - 1, v));
      let b = begin[i];
      if (beginMask & (1 << i)) b = s > 0 ? 0 : n - 1;
      else b = clampIdx(b < 0 ? b + n : b);
      let e: number;
      if (shrinkMask & (1 << i)) {
        e = b + 1;
      } else if (offset) {
        e = clampIdx(b + end[i]);
      } else if (endMask & (1 << i)) {
        e = s > 0 ? n : -1;
      } else {
        e = clampIdx(end[i] < 0 ? end[i] + n : end[i]);
      }
      const step = shrinkMask & (1 << i) ? 1 : s;
      if (step === 1 && b === 0 && e >= n) continue;
      axes.push(i);
      starts.push(b);
      // ONNX reads a negative end as counting from the back: "before index 0" needs INT_MIN.
      ends.push(step < 0 && e < 0 ? -(2 ** 31) : e);
      steps.push(step);
    }
    this.move(xi, op.outputs[0], (v) => {
      const sliced = axes.length
        ? this.g.op('Slice', [v, this.ints(starts), this.ints(ends), this.ints(axes), this.ints(steps)])
        : v;
      return this.g.op('Reshape', [sliced, this.ints(out.shape)]);
    });
  }

  slice(op: TfliteOp): void {
    const [xi, bi, zi] = op.inputs;
    const x = this.t(xi);
    const begin = constInts(this.t(bi));
    const size = constInts(this.t(zi));
    const ends = size.map((s, i) => (s < 0 ? x.shape[i] : begin[i] + s));
    this.move(xi, op.outputs[0], (v) =>
      this.g.op('Slice', [v, this.ints(begin), this.ints(ends), this.ints(begin.map((_, i) => i))]),
    );
  }

  softmax(op: TfliteOp, onnxOp: 'Softmax' | 'LogSoftmax'): void {
    const beta = opt(op, 'beta', 1);
    let x = this.real(op.inputs[0]);
    if (onnxOp === 'Softmax' && beta !== 1) x = this.g.op('Mul', [x, this.scalar(beta)]);
    this.emit(op.outputs[0], this.g.op(onnxOp, [x], [attr.int('axis', -1)]));
  }

  split(op: TfliteOp, sizesGiven: boolean): void {
    // SPLIT: (axis, x); SPLIT_V: (x, size_splits, axis).
    const xi = sizesGiven ? op.inputs[0] : op.inputs[1];
    const x = this.t(xi);
    let axis = constInts(this.t(sizesGiven ? op.inputs[2] : op.inputs[0]))[0];
    if (axis < 0) axis += x.shape.length;
    const sizes = op.outputs.map((o) => this.t(o).shape[axis]);
    const same = op.outputs.every((o) => this.sameQuant(x, this.t(o)));
    const parts = this.g.node('Split', [same ? this.stored(xi) : this.real(xi), this.ints(sizes)], {
      attrs: [attr.int('axis', axis)],
      outputs: op.outputs.length,
    });
    op.outputs.forEach((o, k) => (same ? this.values.set(o, parts[k]) : this.emit(o, parts[k])));
  }

  pack(op: TfliteOp): void {
    const out = this.t(op.outputs[0]);
    let axis = opt(op, 'axis', 0);
    if (axis < 0) axis += out.shape.length;
    const same = op.inputs.every((i) => this.sameQuant(this.t(i), out));
    const parts = op.inputs.map((i) => {
      const shape = this.t(i).shape.slice();
      shape.splice(axis, 0, 1);
      return this.g.op('Reshape', [same ? this.stored(i) : this.real(i), this.ints(shape)]);
    });
    const y = this.g.op('Concat', parts, [attr.int('axis', axis)]);
    if (same) this.values.set(op.outputs[0], y);
    else this.emit(op.outputs[0], y);
  }

  unpack(op: TfliteOp): void {
    const xi = op.inputs[0];
    const x = this.t(xi);
    let axis = opt(op, 'axis', 0);
    if (axis < 0) axis += x.shape.length;
    const same = op.outputs.every((o) => this.sameQuant(x, this.t(o)));
    const parts = this.g.node(
      'Split',
      [same ? this.stored(xi) : this.real(xi), this.ints(op.outputs.map(() => 1))],
      {
        attrs: [attr.int('axis', axis)],
        outputs: op.outputs.length,
      },
    );
    op.outputs.forEach((o, k) => {
      const r = this.g.op('Reshape', [parts[k], this.ints(this.t(o).shape)]);
      if (same) this.values.set(o, r);
      else this.emit(o, r);
    });
  }

  batchMatMul(op: TfliteOp): void {
    const [ai, bi] = op.inputs;
    const int8 = this.int8Act(this.t(ai));
    const swapLast = (v: string, rank: number) =>
      this.g.op(
        'Transpose',
        [v],
        [attr.ints('perm', [...Array.from({ length: rank - 2 }, (_, i) => i), rank - 1, rank - 2])],
      );
    let a = this.real(ai, int8);
    let b = this.real(bi, int8);
    if (opt(op, 'adjX', false)) a = swapLast(a, this.t(ai).shape.length);
    if (opt(op, 'adjY', false)) b = swapLast(b, this.t(bi).shape.length);
    this.emit(op.outputs[0], this.g.op('MatMul', [a, b]));
  }

  gather(op: TfliteOp): void {
    const [xi, ii] = op.inputs;
    if (opt(op, 'batchDims', 0) !== 0) {
      throw new TfliteError(
        'tflite-unsupported-op',
        `GATHER with batch_dims is not supported (operator ${op.index})`,
      );
    }
    let axis = opt(op, 'axis', 0);
    if (axis < 0) axis += this.t(xi).shape.length;
    const indices = this.stored(ii);
    this.move(xi, op.outputs[0], (v) => this.g.op('Gather', [v, indices], [attr.int('axis', axis)]));
  }

  lstm(op: TfliteOp): void {
    lstmToOnnx(this, op);
  }

  // Accessors for the LSTM builder (kept outside the class for length).
  tensor(i: number): TfliteTensor {
    return this.t(i);
  }
  graph(): GraphBuilder {
    return this.g;
  }
  realOf(i: number): string {
    return this.real(i);
  }
  emitReal(i: number, value: string, after?: (s: string) => string): void {
    this.emit(i, value, after);
  }
  setStored(i: number, value: string): void {
    this.values.set(i, value);
  }
  storedOf(i: number): string {
    return this.stored(i);
  }
  scalarOf(v: number): string {
    return this.scalar(v);
  }
  int64s(v: readonly number[]): string {
    return this.ints(v);
  }
  act(value: string, fn: Act, op: TfliteOp): string {
    return this.activation(value, fn, op);
  }
  options(op: TfliteOp): Options {
    return op.options ?? {};
  }
}

/** TFLite SAME padding: the extra pixel goes after (ONNX SAME_UPPER). */
function samePads(size: number, k: number, stride: number, dilation: number): [number, number] {
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + (k - 1) * dilation + 1 - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before];
}

type Handler = (c: Converter, op: TfliteOp) => void;

const unaryOp =
  (onnxOp: string, attrs: () => onnx.IAttributeProto[] = () => []): Handler =>
  (c, op) =>
    c.unary(op, onnxOp, attrs());

const HANDLERS: Record<string, Handler> = {
  CONV_2D: (c, op) => c.conv(op, false),
  DEPTHWISE_CONV_2D: (c, op) => c.conv(op, true),
  FULLY_CONNECTED: (c, op) => c.fullyConnected(op),
  AVERAGE_POOL_2D: (c, op) => c.pool(op, 'AveragePool'),
  MAX_POOL_2D: (c, op) => c.pool(op, 'MaxPool'),
  TRANSPOSE_CONV: (c, op) => c.transposeConv(op, false),
  'CUSTOM:Convolution2DTransposeBias': (c, op) => c.transposeConv(op, true),
  RESIZE_BILINEAR: (c, op) => c.resize(op, 'linear'),
  RESIZE_NEAREST_NEIGHBOR: (c, op) => c.resize(op, 'nearest'),
  ADD: (c, op) => c.binary(op, 'Add'),
  SUB: (c, op) => c.binary(op, 'Sub'),
  MUL: (c, op) => c.binary(op, 'Mul'),
  DIV: (c, op) => c.binary(op, 'Div'),
  MAXIMUM: (c, op) => c.binary(op, 'Max'),
  MINIMUM: (c, op) => c.binary(op, 'Min'),
  POW: (c, op) => c.binary(op, 'Pow'),
  SQUARED_DIFFERENCE: (c, op) => {
    const d = c.graph().op('Sub', [c.realOf(op.inputs[0]), c.realOf(op.inputs[1])]);
    c.emitReal(op.outputs[0], c.graph().op('Mul', [d, d]));
  },
  PRELU: (c, op) => c.binary(op, 'PRelu'),
  RESHAPE: (c, op) => c.reshape(op),
  SQUEEZE: (c, op) => c.reshape(op),
  EXPAND_DIMS: (c, op) => c.reshape(op),
  TRANSPOSE: (c, op) => c.transpose(op),
  CONCATENATION: (c, op) => c.concat(op),
  PAD: (c, op) => c.pad(op, 'constant'),
  PADV2: (c, op) => c.pad(op, 'constant'),
  MIRROR_PAD: (c, op) => {
    if (opt(op, 'mode', 0) !== 0) {
      throw new TfliteError(
        'tflite-unsupported-op',
        `MIRROR_PAD in SYMMETRIC mode is not supported (operator ${op.index})`,
      );
    }
    c.pad(op, 'reflect');
  },
  MEAN: (c, op) => c.reduce(op, 'ReduceMean'),
  SUM: (c, op) => c.reduce(op, 'ReduceSum'),
  REDUCE_MAX: (c, op) => c.reduce(op, 'ReduceMax'),
  REDUCE_MIN: (c, op) => c.reduce(op, 'ReduceMin'),
  REDUCE_PROD: (c, op) => c.reduce(op, 'ReduceProd'),
  STRIDED_SLICE: (c, op) => c.stridedSlice(op),
  SLICE: (c, op) => c.slice(op),
  SOFTMAX: (c, op) => c.softmax(op, 'Softmax'),
  LOG_SOFTMAX: (c, op) => c.softmax(op, 'LogSoftmax'),
  LOGISTIC: unaryOp('Sigmoid'),
  TANH: unaryOp('Tanh'),
  RELU: unaryOp('Relu'),
  RELU6: (c, op) => c.clip(op, 0, 6),
  RELU_N1_TO_1: (c, op) => c.clip(op, -1, 1),
  RELU_0_TO_1: (c, op) => c.clip(op, 0, 1),
  LEAKY_RELU: (c, op) => c.unary(op, 'LeakyRelu', [attr.float('alpha', opt(op, 'alpha', 0.2))]),
  HARD_SWISH: unaryOp('HardSwish'),
  ELU: unaryOp('Elu'),
  GELU: (c, op) =>
    c.unary(op, 'Gelu', [attr.string('approximate', opt(op, 'approximate', false) ? 'tanh' : 'none')]),
  EXP: unaryOp('Exp'),
  LOG: unaryOp('Log'),
  SQRT: unaryOp('Sqrt'),
  RSQRT: (c, op) =>
    c.emitReal(op.outputs[0], c.graph().op('Reciprocal', [c.graph().op('Sqrt', [c.realOf(op.inputs[0])])])),
  ABS: unaryOp('Abs'),
  NEG: unaryOp('Neg'),
  FLOOR: unaryOp('Floor'),
  CEIL: unaryOp('Ceil'),
  SIN: unaryOp('Sin'),
  COS: unaryOp('Cos'),
  SQUARE: (c, op) => {
    const x = c.realOf(op.inputs[0]);
    c.emitReal(op.outputs[0], c.graph().op('Mul', [x, x]));
  },
  L2_NORMALIZATION: unaryOp('LpNormalization', () => [attr.int('axis', -1), attr.int('p', 2)]),
  QUANTIZE: (c, op) => c.emitReal(op.outputs[0], c.realOf(op.inputs[0])),
  DEQUANTIZE: (c, op) => c.setStored(op.outputs[0], c.realOf(op.inputs[0])),
  SPLIT: (c, op) => c.split(op, false),
  SPLIT_V: (c, op) => c.split(op, true),
  PACK: (c, op) => c.pack(op),
  UNPACK: (c, op) => c.unpack(op),
  BATCH_MATMUL: (c, op) => c.batchMatMul(op),
  GATHER: (c, op) => c.gather(op),
  UNIDIRECTIONAL_SEQUENCE_LSTM: (c, op) => c.lstm(op),
};

/** The TFLite operators the converter handles. */
export const SUPPORTED_TFLITE_OPS: readonly string[] = Object.keys(HANDLERS);

// ---- UNIDIRECTIONAL_SEQUENCE_LSTM -> ONNX LSTM -------------------------------------------

/** Input slots of TFLite's LSTM (tensorflow/lite/kernels/lstm_shared.h). */
const L = {
  input: 0,
  wi: 1,
  wf: 2,
  wc: 3,
  wo: 4,
  ri: 5,
  rf: 6,
  rc: 7,
  ro: 8,
  pi: 9,
  pf: 10,
  po: 11,
  bi: 12,
  bf: 13,
  bc: 14,
  bo: 15,
  projW: 16,
  projB: 17,
  hState: 18,
  cState: 19,
  lnI: 20,
  lnF: 21,
  lnC: 22,
  lnO: 23,
};

function lstmToOnnx(c: Converter, op: TfliteOp): void {
  const at = (slot: number) => (op.inputs[slot] ?? -1) as number;
  const unsupported = (what: string) =>
    new TfliteError(
      'tflite-unsupported-op',
      `UNIDIRECTIONAL_SEQUENCE_LSTM with ${what} is not supported (operator ${op.index})`,
    );
  const o = c.options(op);
  const fn = Number(o.fusedActivationFunction ?? Act.TANH) as Act;
  const constF = (slot: number, what: string): Float32Array => {
    const t = c.tensor(at(slot));
    if (!t.data) throw unsupported(`non-constant ${what}`);
    return constReal(t);
  };
  const x = c.tensor(at(L.input));
  const timeMajor = o.timeMajor === true;
  const hidden = c.tensor(at(L.wf)).shape[0];
  const inputSize = c.tensor(at(L.wf)).shape[1];
  const outSize = c.tensor(at(L.rf)).shape[1];
  const batch = timeMajor ? x.shape[1] : x.shape[0];
  const steps = timeMajor ? x.shape[0] : x.shape[1];
  const spec: LstmSpec = {
    hidden,
    inputSize,
    outSize,
    batch,
    steps,
    timeMajor,
    cifg: at(L.wi) < 0,
    cellClip: Number(o.cellClip ?? 0),
    projClip: Number(o.projClip ?? 0),
    act: fn,
    w: (gate) => constF([L.wi, L.wf, L.wc, L.wo][gate], 'weights'),
    r: (gate) => constF([L.ri, L.rf, L.rc, L.ro][gate], 'weights'),
    b: (gate) => {
      const slot = [L.bi, L.bf, L.bc, L.bo][gate];
      return at(slot) >= 0 ? constF(slot, 'bias') : new Float32Array(hidden);
    },
    peep: (gate) => {
      const slot = [L.pi, L.pf, -1, L.po][gate];
      return slot >= 0 && at(slot) >= 0 ? constF(slot, 'peephole weights') : undefined;
    },
    ln: (gate) => {
      const slot = [L.lnI, L.lnF, L.lnC, L.lnO][gate];
      return at(slot) >= 0 ? constF(slot, 'layer norm weights') : undefined;
    },
    projW: at(L.projW) >= 0 ? constF(L.projW, 'projection weights') : undefined,
    projB: at(L.projB) >= 0 ? constF(L.projB, 'projection bias') : undefined,
    state: (slot) => {
      const t = at(slot) >= 0 ? c.tensor(at(slot)) : undefined;
      return t?.data ? constReal(t) : undefined;
    },
  };
  const actName: Partial<Record<Act, string>> = { [Act.TANH]: 'Tanh', [Act.RELU]: 'Relu' };
  const plain =
    !spec.cifg &&
    !spec.projW &&
    spec.cellClip === 0 &&
    spec.projClip === 0 &&
    [0, 1, 2, 3].every((k) => !spec.ln(k)) &&
    actName[fn] !== undefined;
  if (!actName[fn] && fn !== Act.NONE && fn !== Act.RELU6 && fn !== Act.RELU_N1_TO_1) {
    throw unsupported(`activation ${Act[fn] ?? fn}`);
  }
  const y = plain
    ? fusedLstm(c, spec, c.realOf(at(L.input)), actName[fn]!)
    : unrolledLstm(c, spec, c.realOf(at(L.input)), op);
  const out = c.tensor(op.outputs[0]);
  c.emitReal(op.outputs[0], c.graph().op('Reshape', [y, c.int64s(out.shape)]));
}

interface LstmSpec {
  hidden: number;
  inputSize: number;
  outSize: number;
  batch: number;
  steps: number;
  timeMajor: boolean;
  /** Coupled input and forget gates: no input gate weights, i = 1 - f. */
  cifg: boolean;
  cellClip: number;
  projClip: number;
  act: Act;
  /** Gate k in TFLite order: 0 input, 1 forget, 2 cell, 3 output. */
  w(gate: number): Float32Array;
  r(gate: number): Float32Array;
  b(gate: number): Float32Array;
  peep(gate: number): Float32Array | undefined;
  ln(gate: number): Float32Array | undefined;
  projW?: Float32Array;
  projB?: Float32Array;
  state(slot: number): Float32Array | undefined;
}

/** ONNX's own LSTM (one fused kernel) for the plain configuration. Returns Y without the direction axis folded. */
function fusedLstm(c: Converter, s: LstmSpec, input: string, act: string): string {
  const g = c.graph();
  const { hidden, batch, timeMajor } = s;
  // ONNX gate order is i, o, f, c.
  const order = [0, 3, 1, 2];
  const W = concatFloat32(order.map((k) => s.w(k)));
  const R = concatFloat32(order.map((k) => s.r(k)));
  const B = concatFloat32([...order.map((k) => s.b(k)), new Float32Array(4 * hidden)]);
  const inputs = [
    input,
    g.floats('lstm_W', W, [1, 4 * hidden, s.inputSize]),
    g.floats('lstm_R', R, [1, 4 * hidden, hidden]),
    g.floats('lstm_B', B, [1, 8 * hidden]),
  ];
  const state = (slot: number) => {
    const values = s.state(slot);
    if (!values || values.every((v) => v === 0)) return '';
    // The state tensors start from their stored value: [batch, 1, hidden] (layout 1) or [1, batch, hidden].
    return g.floats('lstm_state', values, timeMajor ? [1, batch, hidden] : [batch, 1, hidden]);
  };
  inputs.push('', state(L.hState), state(L.cState));
  const peeps = [0, 3, 1].map((k) => s.peep(k));
  if (peeps.some((p) => p)) {
    inputs.push(
      g.floats('lstm_P', concatFloat32(peeps.map((p) => p ?? new Float32Array(hidden))), [1, 3 * hidden]),
    );
  }
  while (inputs[inputs.length - 1] === '') inputs.pop();
  const [y] = g.node('LSTM', inputs, {
    attrs: [
      attr.int('hidden_size', hidden),
      attr.int('layout', timeMajor ? 0 : 1),
      attr.strings('activations', ['Sigmoid', act, act]),
    ],
    outputs: 1,
  });
  return y;
}

/**
 * The LSTM unrolled over its (static) time steps, as TFLite's kernel computes it: cell clipping
 * on the cell state, CIFG, peepholes, layer normalization and projection.
 */
function unrolledLstm(c: Converter, s: LstmSpec, input: string, op: TfliteOp): string {
  const g = c.graph();
  const { hidden, batch, steps, timeMajor, outSize } = s;
  const gates = s.cifg ? [1, 2, 3] : [0, 1, 2, 3];
  const n = gates.length;
  const hasLn = gates.some((k) => s.ln(k));
  // Input weights of all gates at once, transposed to [inputSize, n*hidden].
  const wT = permute(concatFloat32(gates.map((k) => s.w(k))), [n * hidden, s.inputSize], [1, 0]);
  const rT = permute(concatFloat32(gates.map((k) => s.r(k))), [n * hidden, outSize], [1, 0]);
  const bias = concatFloat32(gates.map((k) => s.b(k)));
  let xw = g.op('MatMul', [input, g.floats('lstm_Wt', wT, [s.inputSize, n * hidden])]);
  if (!hasLn) xw = g.op('Add', [xw, g.floats('lstm_bias', bias, [n * hidden])]);
  const rName = g.floats('lstm_Rt', rT, [outSize, n * hidden]);
  const zeros = (size: number) => new Float32Array(batch * size);
  let h = g.floats('lstm_h0', s.state(L.hState) ?? zeros(outSize), [batch, outSize]);
  let cell = g.floats('lstm_c0', s.state(L.cState) ?? zeros(hidden), [batch, hidden]);
  const gateAct = (v: string) => {
    if (s.act === Act.NONE) return v;
    return c.act(v, s.act, op);
  };
  const peep = (k: number) => {
    const p = s.peep(k);
    return p ? g.floats('lstm_peep', p, [hidden]) : undefined;
  };
  const peeps = [peep(0), peep(1), undefined, peep(3)];
  const lnW = [0, 1, 2, 3].map((k) => {
    const w = s.ln(k);
    return w ? g.floats('lstm_ln', w, [hidden]) : undefined;
  });
  const gateBias = [0, 1, 2, 3].map((k) =>
    hasLn ? g.floats('lstm_gate_bias', s.b(k), [hidden]) : undefined,
  );
  const layerNorm = (v: string, k: number) => {
    const w = lnW[k];
    if (!w) return gateBias[k] ? g.op('Add', [v, gateBias[k]!]) : v;
    const axes = c.int64s([1]);
    const mean = g.op('ReduceMean', [v, axes]);
    const centred = g.op('Sub', [v, mean]);
    const variance = g.op('ReduceMean', [g.op('Mul', [centred, centred]), axes]);
    const norm = g.op('Div', [centred, g.op('Sqrt', [g.op('Add', [variance, c.scalarOf(1e-8)])])]);
    return g.op('Add', [g.op('Mul', [norm, w]), gateBias[k]!]);
  };
  const hs: string[] = [];
  const timeAxis = timeMajor ? 0 : 1;
  const splitSizes = c.int64s(gates.map(() => hidden));
  for (let t = 0; t < steps; t++) {
    const xt = g.op('Reshape', [
      g.op('Slice', [xw, c.int64s([t]), c.int64s([t + 1]), c.int64s([timeAxis])]),
      c.int64s([batch, n * hidden]),
    ]);
    const pre = g.op('Add', [xt, g.op('MatMul', [h, rName])]);
    const parts = g.node('Split', [pre, splitSizes], { attrs: [attr.int('axis', 1)], outputs: n });
    const part: (string | undefined)[] = [undefined, undefined, undefined, undefined];
    gates.forEach((k, j) => (part[k] = parts[j]));
    const withPeep = (k: number, state: string) => {
      const p = peeps[k];
      const v = p ? g.op('Add', [part[k]!, g.op('Mul', [state, p])]) : part[k]!;
      return layerNorm(v, k);
    };
    const f = g.op('Sigmoid', [withPeep(1, cell)]);
    const i = s.cifg ? g.op('Sub', [c.scalarOf(1), f]) : g.op('Sigmoid', [withPeep(0, cell)]);
    const cand = gateAct(layerNorm(part[2]!, 2));
    let next = g.op('Add', [g.op('Mul', [f, cell]), g.op('Mul', [i, cand])]);
    if (s.cellClip > 0) next = g.op('Clip', [next, c.scalarOf(-s.cellClip), c.scalarOf(s.cellClip)]);
    const og = g.op('Sigmoid', [withPeep(3, next)]);
    let out = g.op('Mul', [og, gateAct(next)]);
    if (s.projW) {
      const pT = permute(s.projW, [outSize, hidden], [1, 0]);
      out = g.op('MatMul', [out, g.floats('lstm_proj', pT, [hidden, outSize])]);
      if (s.projB) out = g.op('Add', [out, g.floats('lstm_proj_bias', s.projB, [outSize])]);
      if (s.projClip > 0) out = g.op('Clip', [out, c.scalarOf(-s.projClip), c.scalarOf(s.projClip)]);
    }
    cell = next;
    h = out;
    hs.push(g.op('Reshape', [out, c.int64s(timeMajor ? [1, batch, outSize] : [batch, 1, outSize])]));
  }
  return hs.length === 1 ? hs[0] : g.op('Concat', hs, [attr.int('axis', timeAxis)]);
}
