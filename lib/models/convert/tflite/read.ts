import * as flatbuffers from 'flatbuffers';
import { BuiltinOperator, Model, TensorType } from './schema/tflite-schema';
import { TfliteError } from './errors';

/** A TFLite model read from its flatbuffer: the main subgraph, with constant data resolved. */
export interface TfliteGraph {
  version: number;
  description: string;
  tensors: TfliteTensor[];
  ops: TfliteOp[];
  inputs: number[];
  outputs: number[];
}

export interface TfliteQuant {
  scale: number[];
  zeroPoint: number[];
  /** The axis the scales run along (per-channel when scale has more than one entry). */
  axis: number;
}

export interface TfliteTensor {
  index: number;
  name: string;
  shape: number[];
  type: TensorType;
  /** Constant contents (little-endian bytes), absent for activations. */
  data?: Uint8Array;
  quant?: TfliteQuant;
  isVariable: boolean;
}

export interface TfliteOp {
  index: number;
  /** BuiltinOperator name, e.g. CONV_2D, or CUSTOM:<code> for custom ops. */
  name: string;
  code: BuiltinOperator;
  version: number;
  /** Tensor indices; -1 marks an omitted optional input. */
  inputs: number[];
  outputs: number[];
  intermediates: number[];
  /** The builtin options table unpacked into a plain object (null when the op has none). */
  options: Record<string, unknown> | null;
  /** A custom operator's own option bytes. */
  customOptions?: Uint8Array;
}

const IDENTIFIER = 'TFL3';

/** True when the bytes carry TFLite's file identifier ("TFL3" at bytes 4..8). */
export function isTfliteBuffer(bytes: Uint8Array): boolean {
  if (bytes.byteLength < 8) return false;
  return String.fromCharCode(bytes[4], bytes[5], bytes[6], bytes[7]) === IDENTIFIER;
}

/** Parses a TFLite flatbuffer with the code generated from TFLite's schema.fbs. */
export function readTflite(bytes: Uint8Array): TfliteGraph {
  if (!isTfliteBuffer(bytes)) {
    throw new TfliteError('tflite-invalid', 'not a TFLite model (no "TFL3" identifier at bytes 4..8)');
  }
  try {
    return readModel(bytes);
  } catch (err) {
    if (err instanceof TfliteError) throw err;
    throw new TfliteError('tflite-invalid', `the TFLite flatbuffer is damaged: ${(err as Error).message}`);
  }
}

function readModel(bytes: Uint8Array): TfliteGraph {
  const model = Model.getRootAsModel(new flatbuffers.ByteBuffer(bytes));
  if (model.subgraphsLength() < 1)
    throw new TfliteError('tflite-invalid', 'the TFLite model has no subgraph');
  const sub = model.subgraphs(0);
  if (!sub) throw new TfliteError('tflite-invalid', 'the TFLite model has no subgraph');

  const opCodes: { code: BuiltinOperator; name: string; version: number }[] = [];
  for (let i = 0; i < model.operatorCodesLength(); i++) {
    const oc = model.operatorCodes(i);
    if (!oc) throw new TfliteError('tflite-invalid', `operator code ${i} is missing`);
    // Old files only fill the byte-wide field; newer ones the int32 one (TFLite takes the larger).
    const code = Math.max(oc.deprecatedBuiltinCode(), oc.builtinCode()) as BuiltinOperator;
    const name =
      code === BuiltinOperator.CUSTOM
        ? `CUSTOM:${oc.customCode() ?? '?'}`
        : (BuiltinOperator[code] ?? `#${code}`);
    opCodes.push({ code, name, version: oc.version() });
  }

  const tensors: TfliteTensor[] = [];
  for (let i = 0; i < sub.tensorsLength(); i++) {
    const t = sub.tensors(i);
    if (!t) throw new TfliteError('tflite-invalid', `tensor ${i} is missing`);
    const name = t.name() ?? `tensor_${i}`;
    if (t.sparsity()) {
      throw new TfliteError(
        'tflite-unsupported',
        `tensor ${name} is sparse; sparse TFLite tensors are not supported`,
      );
    }
    const shape = Array.from(t.shapeArray() ?? []);
    const tensor: TfliteTensor = { index: i, name, shape, type: t.type(), isVariable: t.isVariable() };
    const data = bufferData(model, bytes, t.buffer());
    if (data && data.byteLength > 0) tensor.data = data;
    const q = t.quantization();
    if (q && q.scaleLength() > 0) {
      if (q.detailsType() !== 0) {
        throw new TfliteError('tflite-unsupported', `tensor ${name} uses custom quantization`);
      }
      const scale = Array.from(q.scaleArray() ?? []);
      const zeroPoint: number[] = [];
      for (let k = 0; k < q.zeroPointLength(); k++) zeroPoint.push(Number(q.zeroPoint(k) ?? 0));
      while (zeroPoint.length < scale.length) zeroPoint.push(zeroPoint[0] ?? 0);
      tensor.quant = { scale, zeroPoint, axis: q.quantizedDimension() };
    }
    tensors.push(tensor);
  }

  const ops: TfliteOp[] = [];
  for (let i = 0; i < sub.operatorsLength(); i++) {
    const op = sub.operators(i);
    if (!op) throw new TfliteError('tflite-invalid', `operator ${i} is missing`);
    const oc = opCodes[op.opcodeIndex()];
    if (!oc) throw new TfliteError('tflite-invalid', `operator ${i} names an unknown operator code`);
    const unpacked = op.unpack();
    const check = (list: number[]) =>
      list.map((ti) => {
        if (ti >= tensors.length) throw new TfliteError('tflite-invalid', `operator ${i} names tensor ${ti}`);
        return ti;
      });
    ops.push({
      index: i,
      name: oc.name,
      code: oc.code,
      version: oc.version,
      inputs: check(unpacked.inputs),
      outputs: check(unpacked.outputs),
      intermediates: unpacked.intermediates,
      options: (unpacked.builtinOptions as Record<string, unknown> | null) ?? null,
      ...(oc.code === BuiltinOperator.CUSTOM && op.customOptionsArray()
        ? { customOptions: Uint8Array.from(op.customOptionsArray() as Uint8Array) }
        : {}),
    });
  }
  return {
    version: model.version(),
    description: model.description() ?? '',
    tensors,
    ops,
    inputs: Array.from(sub.inputsArray() ?? []),
    outputs: Array.from(sub.outputsArray() ?? []),
  };
}

function bufferData(model: Model, bytes: Uint8Array, index: number): Uint8Array | undefined {
  if (index === 0 || index >= model.buffersLength()) return undefined;
  const buf = model.buffers(index);
  if (!buf) return undefined;
  // Models over 2 GB keep buffers after the flatbuffer, addressed from the start of the file.
  const offset = Number(buf.offset());
  if (offset > 1) {
    const size = Number(buf.size());
    if (offset + size > bytes.byteLength)
      throw new TfliteError('tflite-invalid', `buffer ${index} lies past the end`);
    return bytes.subarray(offset, offset + size);
  }
  return buf.dataArray() ?? undefined;
}

/** Bytes per element of the tensor types the converter handles. */
export function elementSize(type: TensorType): number {
  switch (type) {
    case TensorType.FLOAT64:
    case TensorType.INT64:
    case TensorType.UINT64:
      return 8;
    case TensorType.FLOAT32:
    case TensorType.INT32:
    case TensorType.UINT32:
      return 4;
    case TensorType.FLOAT16:
    case TensorType.INT16:
    case TensorType.UINT16:
      return 2;
    default:
      return 1;
  }
}

export type NumericArray =
  | Float32Array
  | Float64Array
  | Int8Array
  | Uint8Array
  | Int16Array
  | Uint16Array
  | Int32Array
  | Uint32Array
  | BigInt64Array;

/** The constant values of a tensor in its own type (float16 widened to float32). */
export function constValues(t: TfliteTensor): NumericArray {
  if (!t.data) throw new TfliteError('tflite-invalid', `tensor ${t.name} has no constant data`);
  // Copy: flatbuffer data need not be aligned for a typed-array view.
  const buf = t.data.slice().buffer;
  switch (t.type) {
    case TensorType.FLOAT32:
      return new Float32Array(buf);
    case TensorType.FLOAT16:
      return halfToFloat(new Uint16Array(buf));
    case TensorType.FLOAT64:
      return new Float64Array(buf);
    case TensorType.INT8:
      return new Int8Array(buf);
    case TensorType.UINT8:
    case TensorType.BOOL:
      return new Uint8Array(buf);
    case TensorType.INT16:
      return new Int16Array(buf);
    case TensorType.UINT16:
      return new Uint16Array(buf);
    case TensorType.INT32:
      return new Int32Array(buf);
    case TensorType.UINT32:
      return new Uint32Array(buf);
    case TensorType.INT64:
      return new BigInt64Array(buf);
    default:
      throw new TfliteError(
        'tflite-unsupported',
        `tensor ${t.name} has type ${TensorType[t.type]}, which is not supported`,
      );
  }
}

/** Constant integer values (shapes, axes, paddings) as numbers. */
export function constInts(t: TfliteTensor): number[] {
  return Array.from(constValues(t) as ArrayLike<number | bigint>, Number);
}

function halfToFloat(h: Uint16Array): Float32Array {
  const out = new Float32Array(h.length);
  for (let i = 0; i < h.length; i++) {
    const v = h[i];
    const sign = v & 0x8000 ? -1 : 1;
    const exp = (v >> 10) & 0x1f;
    const frac = v & 0x3ff;
    if (exp === 0) out[i] = sign * 2 ** -14 * (frac / 1024);
    else if (exp === 31) out[i] = frac ? NaN : sign * Infinity;
    else out[i] = sign * 2 ** (exp - 15) * (1 + frac / 1024);
  }
  return out;
}

/** Real values of a constant: dequantized (per channel where it is) or as stored. */
export function constReal(t: TfliteTensor): Float32Array {
  const raw = constValues(t);
  const out = new Float32Array(raw.length);
  if (!t.quant || t.type === TensorType.FLOAT32 || t.type === TensorType.FLOAT16) {
    for (let i = 0; i < raw.length; i++) out[i] = Number(raw[i]);
    return out;
  }
  const { scale, zeroPoint, axis } = t.quant;
  if (scale.length === 1) {
    for (let i = 0; i < raw.length; i++) out[i] = (Number(raw[i]) - zeroPoint[0]) * scale[0];
    return out;
  }
  const inner = t.shape.slice(axis + 1).reduce((a, b) => a * b, 1);
  const channels = t.shape[axis];
  for (let i = 0; i < raw.length; i++) {
    const c = Math.floor(i / inner) % channels;
    out[i] = (Number(raw[i]) - zeroPoint[c]) * scale[c];
  }
  return out;
}
