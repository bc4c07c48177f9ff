import { onnx } from '../onnx-proto';

/** Small helpers to build and read ONNX graphs with the onnx-proto classes. */

export const OnnxType = onnx.TensorProto.DataType;
const AttrType = onnx.AttributeProto.AttributeType;

export const attr = {
  int: (name: string, i: number): onnx.IAttributeProto => ({ name, type: AttrType.INT, i }),
  ints: (name: string, ints: readonly number[]): onnx.IAttributeProto => ({
    name,
    type: AttrType.INTS,
    ints: [...ints],
  }),
  float: (name: string, f: number): onnx.IAttributeProto => ({ name, type: AttrType.FLOAT, f }),
  floats: (name: string, floats: readonly number[]): onnx.IAttributeProto => ({
    name,
    type: AttrType.FLOATS,
    floats: [...floats],
  }),
  string: (name: string, s: string): onnx.IAttributeProto => ({ name, type: AttrType.STRING, s: utf8(s) }),
  strings: (name: string, strings: readonly string[]): onnx.IAttributeProto => ({
    name,
    type: AttrType.STRINGS,
    strings: strings.map(utf8),
  }),
};

function utf8(s: string): Uint8Array {
  return new Uint8Array(Buffer.from(s, 'utf8'));
}

/** Reads an attribute of a node (undefined when absent). */
function getAttr(node: onnx.INodeProto, name: string): onnx.IAttributeProto | undefined {
  return node.attribute?.find((a) => a.name === name);
}

export function attrInt(node: onnx.INodeProto, name: string, fallback: number): number {
  const a = getAttr(node, name);
  return a?.i == null ? fallback : Number(a.i);
}

export function attrFloat(node: onnx.INodeProto, name: string, fallback: number): number {
  const a = getAttr(node, name);
  return a?.f == null ? fallback : a.f;
}

/** Copies the bytes of a typed array (little-endian hosts, like every supported board). */
function bytesOf(data: ArrayBufferView): Uint8Array {
  return new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
}

function makeTensor(
  name: string,
  dataType: number,
  dims: readonly number[],
  data: ArrayBufferView,
): onnx.ITensorProto {
  return { name, dataType, dims: [...dims], rawData: bytesOf(data) };
}

export function tensorDims(t: onnx.ITensorProto): number[] {
  return (t.dims ?? []).map(Number);
}

/** The float32 values of an initializer, whether stored as raw bytes or as float_data. */
export function tensorFloats(t: onnx.ITensorProto): Float32Array {
  if (t.dataType !== OnnxType.FLOAT) throw new Error(`tensor ${t.name} is not float32`);
  if (t.rawData && t.rawData.byteLength > 0) {
    const raw = t.rawData;
    return new Float32Array(raw.buffer.slice(raw.byteOffset, raw.byteOffset + raw.byteLength));
  }
  return Float32Array.from(t.floatData ?? []);
}

export function tensorValueInfo(
  name: string,
  elemType: number,
  dims: readonly (number | string)[],
): onnx.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

/** Collects nodes and initializers under unique names. */
export class GraphBuilder {
  readonly nodes: onnx.INodeProto[] = [];
  readonly initializers: onnx.ITensorProto[] = [];
  private readonly names = new Set<string>();

  /** Reserves names already present (inputs, outputs, existing graph values). */
  reserve(...names: string[]): void {
    for (const n of names) this.names.add(n);
  }

  uniqueName(base: string): string {
    let name = base;
    for (let i = 1; this.names.has(name); i++) name = `${base}_${i}`;
    this.names.add(name);
    return name;
  }

  initializer(base: string, dataType: number, dims: readonly number[], data: ArrayBufferView): string {
    const name = this.uniqueName(base);
    this.initializers.push(makeTensor(name, dataType, dims, data));
    return name;
  }

  floats(base: string, data: Float32Array | readonly number[], dims: readonly number[]): string {
    const values = data instanceof Float32Array ? data : Float32Array.from(data);
    return this.initializer(base, OnnxType.FLOAT, dims, values);
  }

  int64s(base: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    return this.initializer(base, OnnxType.INT64, dims, BigInt64Array.from(values.map((v) => BigInt(v))));
  }

  /** Adds a node; `outputs` is a count of fresh names or explicit names. Returns the output names. */
  node(
    opType: string,
    inputs: readonly string[],
    opts: {
      attrs?: onnx.IAttributeProto[];
      outputs?: number | string[];
      name?: string;
      domain?: string;
    } = {},
  ): string[] {
    const base = opts.name ?? opType;
    const outputs =
      typeof opts.outputs === 'object'
        ? opts.outputs
        : Array.from({ length: opts.outputs ?? 1 }, (_, i) => this.uniqueName(`${base}:${i}`));
    this.nodes.push({
      opType,
      domain: opts.domain ?? '',
      name: this.uniqueName(`${base}/${opType}`),
      input: [...inputs],
      output: outputs,
      attribute: opts.attrs ?? [],
    });
    return outputs;
  }

  /** Shortcut for single-output nodes. */
  op(opType: string, inputs: readonly string[], attrs: onnx.IAttributeProto[] = [], name?: string): string {
    return this.node(opType, inputs, { attrs, name })[0];
  }
}

/** Permutes a dense row-major array: out[i_0..i_n] = data[i_perm0..], as numpy.transpose. */
export function transposeData(
  data: Float32Array,
  dims: readonly number[],
  perm: readonly number[],
): Float32Array {
  const rank = dims.length;
  const outDims = perm.map((p) => dims[p]);
  const inStrides = new Array<number>(rank);
  let s = 1;
  for (let i = rank - 1; i >= 0; i--) {
    inStrides[i] = s;
    s *= dims[i];
  }
  const stridesByOut = perm.map((p) => inStrides[p]);
  const out = new Float32Array(data.length);
  const idx = new Array<number>(rank).fill(0);
  for (let o = 0; o < out.length; o++) {
    let src = 0;
    for (let k = 0; k < rank; k++) src += idx[k] * stridesByOut[k];
    out[o] = data[src];
    for (let k = rank - 1; k >= 0; k--) {
      if (++idx[k] < outDims[k]) break;
      idx[k] = 0;
    }
  }
  return out;
}

/**
 * ONNX ConvTranspose padding for TensorFlow's transposed convolution from `n` to `m` pixels:
 * the padding of the forward convolution from m to n (the extra pixel after, as TensorFlow
 * pads), and the output_padding that makes up the rest. Undefined when no such padding exists.
 */
export function transposedConvPads(
  n: number,
  m: number,
  k: number,
  stride: number,
  same: boolean,
): { before: number; after: number; extra: number } | undefined {
  const total = same ? Math.max((n - 1) * stride + k - m, 0) : 0;
  const before = Math.floor(total / 2);
  const extra = m - ((n - 1) * stride + k - total);
  return extra >= 0 && extra < stride ? { before, after: total - before, extra } : undefined;
}
