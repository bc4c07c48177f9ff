import { LayersModel, type SymbolicTensor } from '@tensorflow/tfjs-layers';
import { onnx } from 'onnx-proto';
import { attr, GraphBuilder, OnnxType, tensorValueInfo, transposeData } from './onnx-graph';
import { OnnxExportUnsupported } from '../../errors';
import { sizeOf } from '../../preprocess/shape';

export { OnnxExportUnsupported };

export const ONNX_EXPORT_OPSET = 17;
export const ONNX_EXPORT_IR_VERSION = 8;

type Layer = SymbolicTensor['sourceLayer'];
type Shape = (number | null)[];
type Config = Record<string, unknown>;

/**
 * A tensor of the graph being built. `shape` is the Keras (logical) shape with the batch
 * dimension first; `perm` says how the ONNX tensor stores it: physical axis j holds logical
 * axis perm[j]. Convolutions keep their output channels-first (what ONNX wants) and the
 * transpose back to channels-last is only added where a layer needs it.
 */
interface Value {
  name: string;
  shape: Shape;
  perm: number[];
}

/**
 * Converts a TF.js layers model to an ONNX model (bytes of a ModelProto) with one input of
 * shape [batch, ...inputShape] and one output, computing the same function.
 */
export function exportLayersModelToOnnx(model: LayersModel): Uint8Array {
  if (model.inputs.length !== 1)
    throw new OnnxExportUnsupported(`${model.inputs.length} inputs (one is supported)`);
  if (model.outputs.length !== 1) {
    throw new OnnxExportUnsupported(`${model.outputs.length} outputs (one is supported)`);
  }
  const ex = new Exporter();
  ex.g.reserve('input', 'output');
  const inShape = model.inputs[0].shape as Shape;
  const input: Value = { name: 'input', shape: inShape, perm: identity(inShape.length) };
  const [result] = ex.container(model, [input]);
  const out = ex.layout(result, identity(result.shape.length));
  ex.g.node('Identity', [out.name], { outputs: ['output'], name: 'output' });

  // Unknown sizes get their own names: a shared dim_param would claim the sizes are equal.
  const dims = (shape: Shape, prefix: string) =>
    shape.map((d, i) => (i === 0 ? 'batch' : (d ?? `${prefix}${i}`)));
  const graph: onnx.IGraphProto = {
    name: model.name || 'model',
    node: ex.g.nodes,
    initializer: ex.g.initializers,
    input: [tensorValueInfo('input', OnnxType.FLOAT, dims(inShape, 'input_'))],
    output: [tensorValueInfo('output', OnnxType.FLOAT, dims(out.shape, 'output_'))],
  };
  const proto = onnx.ModelProto.create({
    irVersion: ONNX_EXPORT_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_EXPORT_OPSET }],
    producerName: 'node-red-contrib-edge-ai',
    graph,
  });
  return onnx.ModelProto.encode(proto).finish();
}

function identity(rank: number): number[] {
  return Array.from({ length: rank }, (_, i) => i);
}

/** Channels-first storage of a channels-last tensor: [0, last, 1, ..., last-1]. */
function channelsFirstPerm(rank: number): number[] {
  return [0, rank - 1, ...identity(rank - 2).map((i) => i + 1)];
}

function sameArray(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function normalizeAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

function toArray(v: unknown, n: number, what: string): number[] {
  if (typeof v === 'number') return new Array<number>(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number')) return v as number[];
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'number') return new Array<number>(n).fill(v[0]);
  throw new OnnxExportUnsupported(`${what} ${JSON.stringify(v)}`);
}

function weightsOf(layer: Layer): { data: Float32Array; shape: number[] }[] {
  // getWeights() returns the variables' own tensors (no copies to dispose).
  return layer.getWeights().map((w) => {
    if (w.dtype !== 'float32') throw new OnnxExportUnsupported(`${w.dtype} weights in layer ${layer.name}`);
    return { data: w.dataSync() as Float32Array, shape: w.shape.slice() };
  });
}

/** TF 'SAME' padding: the extra pixel goes at the end, as ONNX SAME_UPPER. */
function samePads(inSize: number, k: number, stride: number, dilation: number): [number, number] {
  const kEff = (k - 1) * dilation + 1;
  const out = Math.ceil(inSize / stride);
  const total = Math.max((out - 1) * stride + kEff - inSize, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** ONNX names of recurrent activations, with the alpha/beta ORT reads for each (in order). */
function rnnActivation(name: string, layer: Layer): { op: string; alpha?: number; beta?: number } {
  switch (name) {
    case 'tanh':
      return { op: 'Tanh' };
    case 'sigmoid':
      return { op: 'Sigmoid' };
    case 'hardSigmoid':
      // TF.js: clip(0.2 * x + 0.5, 0, 1) — ONNX HardSigmoid with the same slope and offset.
      return { op: 'HardSigmoid', alpha: 0.2, beta: 0.5 };
    case 'relu':
      return { op: 'Relu' };
    case 'linear':
      return { op: 'Affine', alpha: 1, beta: 0 };
    case 'softsign':
      return { op: 'Softsign' };
    case 'softplus':
      return { op: 'Softplus' };
    case 'elu':
      return { op: 'Elu', alpha: 1 };
    default:
      throw new OnnxExportUnsupported(`activation ${name} inside recurrent layer ${layer.name}`);
  }
}

type RnnKind = 'LSTM' | 'GRU' | 'SimpleRNN';

/** ONNX gate order per kind, as indices into the Keras gate order (LSTM: Keras ifco, ONNX iofc). */
const GATES: Record<RnnKind, number[]> = { LSTM: [0, 3, 1, 2], GRU: [0, 1, 2], SimpleRNN: [0] };

/** Keras [in, gates*units] -> ONNX [gates*units, in] in ONNX gate order. */
function rnnMatrix(
  kernel: Float32Array,
  inDim: number,
  units: number,
  gates: readonly number[],
): Float32Array {
  const n = gates.length * units;
  const out = new Float32Array(n * inDim);
  for (let g = 0; g < gates.length; g++) {
    for (let u = 0; u < units; u++) {
      const col = gates[g] * units + u;
      const row = g * units + u;
      for (let f = 0; f < inDim; f++) out[row * inDim + f] = kernel[f * n + col];
    }
  }
  return out;
}

function rnnBias(bias: Float32Array | undefined, units: number, gates: readonly number[]): Float32Array {
  // ONNX B = [Wb, Rb]; Keras has one bias (added with the input term), so Rb = 0.
  const out = new Float32Array(2 * gates.length * units);
  if (bias) {
    for (let g = 0; g < gates.length; g++)
      out.set(bias.subarray(gates[g] * units, (gates[g] + 1) * units), g * units);
  }
  return out;
}

class Exporter {
  readonly g = new GraphBuilder();
  private readonly transposed = new Map<string, Value>();

  /** The value stored with physical order `perm` (a Transpose when needed, cached). */
  layout(v: Value, perm: readonly number[]): Value {
    if (sameArray(v.perm, perm)) return v;
    const key = `${v.name}|${v.perm.join(',')}|${perm.join(',')}`;
    const cached = this.transposed.get(key);
    if (cached) return cached;
    const physicalOf = new Array<number>(v.perm.length);
    v.perm.forEach((logical, j) => (physicalOf[logical] = j));
    const t = perm.map((logical) => physicalOf[logical]);
    const name = this.g.op('Transpose', [v.name], [attr.ints('perm', t)]);
    const out = { name, shape: v.shape, perm: [...perm] };
    this.transposed.set(key, out);
    return out;
  }

  plain(v: Value): Value {
    return this.layout(v, identity(v.shape.length));
  }

  /** Emits a (possibly nested) model's graph with its inputs bound to `inputs`. */
  container(model: LayersModel, inputs: Value[]): Value[] {
    const done = new Map<Layer, Map<number, Value[]>>();
    const remember = (layer: Layer, nodeIndex: number, values: Value[]) => {
      if (!done.has(layer)) done.set(layer, new Map());
      done.get(layer)!.set(nodeIndex, values);
    };
    model.inputs.forEach((t, i) => remember(t.sourceLayer, t.nodeIndex, [inputs[i]]));
    const visit = (t: SymbolicTensor): Value => {
      let values = done.get(t.sourceLayer)?.get(t.nodeIndex);
      if (!values) {
        const layer = t.sourceLayer;
        const node = layer.inboundNodes[t.nodeIndex];
        if (!node || layer.getClassName() === 'InputLayer') {
          throw new OnnxExportUnsupported(`unbound input ${layer.name}`);
        }
        const ins = node.inputTensors.map(visit);
        values = this.layer(
          layer,
          ins,
          node.outputTensors.map((o) => o.shape as Shape),
        );
        remember(layer, t.nodeIndex, values);
      }
      return values[t.tensorIndex];
    };
    return model.outputs.map(visit);
  }

  /** Emits one layer; returns its outputs. */
  layer(layer: Layer, inputs: Value[], outShapes: Shape[]): Value[] {
    if (layer instanceof LayersModel) return this.container(layer, inputs);
    const cls = layer.getClassName();
    const cfg = layer.getConfig() as Config;
    const one = (): Value => {
      if (inputs.length !== 1)
        throw new OnnxExportUnsupported(`${cls} ${layer.name} with ${inputs.length} inputs`);
      return inputs[0];
    };
    const out = outShapes[0];
    switch (cls) {
      case 'Dense':
        return [this.dense(layer, one(), out, cfg)];
      case 'Conv1D':
      case 'Conv2D':
      case 'Conv3D':
        return [this.conv(layer, one(), out, cfg)];
      case 'Conv2DTranspose':
        return [this.convTranspose(layer, one(), out, cfg)];
      case 'DepthwiseConv2D':
      case 'SeparableConv2D':
        return [this.depthwiseConv(layer, one(), out, cfg, cls === 'SeparableConv2D')];
      case 'MaxPooling1D':
      case 'MaxPooling2D':
      case 'MaxPooling3D':
      case 'AveragePooling1D':
      case 'AveragePooling2D':
      case 'AveragePooling3D':
        return [this.pool(layer, one(), out, cfg, cls.startsWith('Max') ? 'MaxPool' : 'AveragePool')];
      case 'GlobalAveragePooling1D':
      case 'GlobalAveragePooling2D':
      case 'GlobalMaxPooling1D':
      case 'GlobalMaxPooling2D':
        return [this.globalPool(one(), out, cfg, cls.includes('Max') ? 'ReduceMax' : 'ReduceMean')];
      case 'Flatten': {
        const input = one();
        const rank = input.shape.length;
        // Keras flattens channels-first data in channels-last order.
        const order =
          cfg['dataFormat'] === 'channelsFirst' && rank > 2
            ? [0, ...identity(rank - 2).map((i) => i + 2), 1]
            : identity(rank);
        const x = this.layout(input, order);
        if (x.shape.length === 2) return [x];
        return [
          { name: this.g.op('Flatten', [x.name], [attr.int('axis', 1)]), shape: out, perm: identity(2) },
        ];
      }
      case 'Reshape':
        return [this.reshape(one(), out, cfg['targetShape'] as (number | null)[])];
      case 'Permute': {
        // No data movement: only the logical meaning of the physical axes changes.
        const x = one();
        const dims = [0, ...(cfg['dims'] as number[])];
        const inverse = new Array<number>(dims.length);
        dims.forEach((d, i) => (inverse[d] = i));
        return [{ name: x.name, shape: out, perm: x.perm.map((p) => inverse[p]) }];
      }
      case 'RepeatVector': {
        const x = this.plain(one());
        const n = cfg['n'] as number;
        const expanded = this.g.op('Unsqueeze', [x.name, this.g.int64s('axes', [1])]);
        const tiled = this.g.op('Tile', [expanded, this.g.int64s('repeats', [1, n, 1])]);
        return [{ name: tiled, shape: out, perm: identity(3) }];
      }
      case 'Dropout':
      case 'SpatialDropout1D':
      case 'GaussianNoise':
      case 'GaussianDropout':
      case 'AlphaDropout':
        return [one()]; // identity at inference
      case 'Activation':
        return [this.activation(one(), cfg['activation'] as string, layer)];
      case 'ReLU': {
        const max = cfg['maxValue'] as number | null | undefined;
        const x = one();
        if (max == null) return [this.unary(x, 'Relu')];
        return [this.clip(x, 0, max)];
      }
      case 'LeakyReLU':
        return [this.unary(one(), 'LeakyRelu', [attr.float('alpha', (cfg['alpha'] as number) ?? 0.3)])];
      case 'ELU':
        return [this.unary(one(), 'Elu', [attr.float('alpha', (cfg['alpha'] as number) ?? 1)])];
      case 'ThresholdedReLU':
        return [this.unary(one(), 'ThresholdedRelu', [attr.float('alpha', (cfg['theta'] as number) ?? 1)])];
      case 'PReLU': {
        const x = this.plain(one());
        const [alpha] = weightsOf(layer);
        const slope = this.g.floats(`${layer.name}/alpha`, alpha.data, alpha.shape);
        return [{ name: this.g.op('PRelu', [x.name, slope]), shape: x.shape, perm: x.perm }];
      }
      case 'Softmax': {
        const axis = cfg['axis'];
        const a = Array.isArray(axis) ? (axis.length === 1 ? axis[0] : NaN) : ((axis as number) ?? -1);
        if (!Number.isInteger(a))
          throw new OnnxExportUnsupported(`Softmax over axes ${JSON.stringify(axis)}`);
        return [this.softmax(one(), 'Softmax', a)];
      }
      case 'BatchNormalization':
        return [this.batchNorm(layer, one(), cfg)];
      case 'LayerNormalization':
        return [this.layerNorm(layer, one(), cfg)];
      case 'Add':
        return [this.merge(inputs, out, 'Sum')];
      case 'Average':
        return [this.merge(inputs, out, 'Mean')];
      case 'Maximum':
        return [this.merge(inputs, out, 'Max')];
      case 'Minimum':
        return [this.merge(inputs, out, 'Min')];
      case 'Multiply':
        return [this.merge(inputs, out, 'Mul')];
      case 'Concatenate':
        return [this.concat(inputs, out, (cfg['axis'] as number) ?? -1)];
      case 'ZeroPadding2D':
        return [this.zeroPad(one(), out, cfg)];
      case 'Cropping2D':
        return [this.crop(one(), out, cfg)];
      case 'UpSampling2D':
        return [this.upsample(one(), out, cfg)];
      case 'Embedding':
        return [this.embedding(layer, one(), out, cfg)];
      case 'LSTM':
      case 'GRU':
      case 'SimpleRNN':
        return [this.rnn(layer, inputs, out, cls)];
      case 'Bidirectional':
        return [this.bidirectional(layer, inputs, out, cfg)];
      case 'TimeDistributed':
        return [this.timeDistributed(layer, one(), out)];
      default:
        throw new OnnxExportUnsupported(`layer ${cls} (${layer.name})`);
    }
  }

  private unary(x: Value, op: string, attrs: onnx.IAttributeProto[] = []): Value {
    return { name: this.g.op(op, [x.name], attrs), shape: x.shape, perm: x.perm };
  }

  private binary(x: Value, op: string, other: string): Value {
    return { name: this.g.op(op, [x.name, other]), shape: x.shape, perm: x.perm };
  }

  private clip(x: Value, min: number, max: number): Value {
    const name = this.g.op('Clip', [
      x.name,
      this.g.floats('min', [min], []),
      this.g.floats('max', [max], []),
    ]);
    return { name, shape: x.shape, perm: x.perm };
  }

  private softmax(x: Value, op: 'Softmax' | 'LogSoftmax', axis: number): Value {
    const logical = normalizeAxis(axis, x.shape.length);
    return this.unary(x, op, [attr.int('axis', x.perm.indexOf(logical))]);
  }

  /** Applies a TF.js activation by its serialized name; layout is kept. */
  activation(x: Value, name: string | undefined, layer: Layer): Value {
    switch (name ?? 'linear') {
      case 'linear':
        return x;
      case 'relu':
        return this.unary(x, 'Relu');
      case 'relu6':
        return this.clip(x, 0, 6);
      case 'sigmoid':
        return this.unary(x, 'Sigmoid');
      case 'tanh':
        return this.unary(x, 'Tanh');
      case 'softmax':
        return this.softmax(x, 'Softmax', -1);
      case 'logSoftmax':
        return this.softmax(x, 'LogSoftmax', -1);
      case 'elu':
        return this.unary(x, 'Elu', [attr.float('alpha', 1)]);
      case 'selu':
        return this.unary(x, 'Selu');
      case 'softplus':
        return this.unary(x, 'Softplus');
      case 'softsign':
        return this.unary(x, 'Softsign');
      case 'hardSigmoid':
        return this.unary(x, 'HardSigmoid', [attr.float('alpha', 0.2), attr.float('beta', 0.5)]);
      case 'swish':
        return this.binary(x, 'Mul', this.unary(x, 'Sigmoid').name);
      case 'mish': {
        const t = this.unary(this.unary(x, 'Softplus'), 'Tanh');
        return this.binary(x, 'Mul', t.name);
      }
      case 'gelu': {
        // x * 0.5 * (1 + erf(x / sqrt 2)), as TF.js computes it.
        const erf = this.unary(this.binary(x, 'Mul', this.g.floats('inv_sqrt2', [Math.SQRT1_2], [])), 'Erf');
        const cdf = this.binary(
          this.binary(erf, 'Add', this.g.floats('one', [1], [])),
          'Mul',
          this.g.floats('half', [0.5], []),
        );
        return this.binary(x, 'Mul', cdf.name);
      }
      case 'gelu_new': {
        // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
        const cube = this.binary(this.binary(x, 'Mul', x.name), 'Mul', x.name);
        const inner = this.binary(
          this.binary(cube, 'Mul', this.g.floats('c', [0.044715], [])),
          'Add',
          x.name,
        );
        const t = this.unary(
          this.binary(inner, 'Mul', this.g.floats('k', [Math.sqrt(2 / Math.PI)], [])),
          'Tanh',
        );
        const cdf = this.binary(
          this.binary(t, 'Add', this.g.floats('one', [1], [])),
          'Mul',
          this.g.floats('half', [0.5], []),
        );
        return this.binary(x, 'Mul', cdf.name);
      }
      default:
        throw new OnnxExportUnsupported(`activation ${name} in layer ${layer.name}`);
    }
  }

  private dense(layer: Layer, input: Value, out: Shape, cfg: Config): Value {
    const x = this.plain(input);
    const [kernel, bias] = weightsOf(layer);
    let y = this.g.op(
      'MatMul',
      [x.name, this.g.floats(`${layer.name}/kernel`, kernel.data, kernel.shape)],
      [],
      layer.name,
    );
    if (bias)
      y = this.g.op('Add', [y, this.g.floats(`${layer.name}/bias`, bias.data, bias.shape)], [], layer.name);
    return this.activation(
      { name: y, shape: out, perm: identity(out.length) },
      cfg['activation'] as string,
      layer,
    );
  }

  /** Layout, spatial input sizes and channel axis of a convolution-like layer's input. */
  private convLayout(x: Value, cfg: Config): { perm: number[]; spatial: Shape } {
    const rank = x.shape.length;
    if ((cfg['dataFormat'] ?? 'channelsLast') === 'channelsFirst') {
      return { perm: identity(rank), spatial: x.shape.slice(2) };
    }
    return { perm: channelsFirstPerm(rank), spatial: x.shape.slice(1, rank - 1) };
  }

  private convPads(
    layer: Layer,
    padding: string,
    spatial: Shape,
    kernel: number[],
    strides: number[],
    dilations: number[],
  ): onnx.IAttributeProto {
    const n = kernel.length;
    if (padding === 'valid') return attr.ints('pads', new Array<number>(2 * n).fill(0));
    if (padding === 'causal') {
      return attr.ints('pads', [
        ...kernel.map((k, i) => (k - 1) * dilations[i]),
        ...new Array<number>(n).fill(0),
      ]);
    }
    if (padding !== 'same') throw new OnnxExportUnsupported(`padding ${padding} in ${layer.name}`);
    if (spatial.some((d) => d == null)) return attr.string('auto_pad', 'SAME_UPPER');
    const pads = spatial.map((d, i) => samePads(d as number, kernel[i], strides[i], dilations[i]));
    return attr.ints('pads', [...pads.map((p) => p[0]), ...pads.map((p) => p[1])]);
  }

  private conv(layer: Layer, input: Value, out: Shape, cfg: Config): Value {
    const { perm, spatial } = this.convLayout(input, cfg);
    const x = this.layout(input, perm);
    const n = spatial.length;
    const kernelSize = toArray(cfg['kernelSize'], n, 'kernel size');
    const strides = toArray(cfg['strides'] ?? 1, n, 'strides');
    const dilations = toArray(cfg['dilationRate'] ?? 1, n, 'dilation rate');
    const [kernel, bias] = weightsOf(layer);
    // Keras [k..., in, out] -> ONNX [out, in, k...]
    const r = kernel.shape.length;
    const wPerm = [r - 1, r - 2, ...identity(r - 2)];
    const w = this.g.floats(
      `${layer.name}/kernel`,
      transposeData(kernel.data, kernel.shape, wPerm),
      wPerm.map((p) => kernel.shape[p]),
    );
    const ins = [x.name, w];
    if (bias) ins.push(this.g.floats(`${layer.name}/bias`, bias.data, bias.shape));
    const y = this.g.op(
      'Conv',
      ins,
      [
        attr.ints('kernel_shape', kernelSize),
        attr.ints('strides', strides),
        attr.ints('dilations', dilations),
        this.convPads(layer, cfg['padding'] as string, spatial, kernelSize, strides, dilations),
      ],
      layer.name,
    );
    // TF.js reports a causal convolution's output length as if it were 'valid'.
    const shape = cfg['padding'] === 'causal' ? [out[0], input.shape[1], out[2]] : out;
    return this.activation({ name: y, shape, perm }, cfg['activation'] as string, layer);
  }

  private convTranspose(layer: Layer, input: Value, out: Shape, cfg: Config): Value {
    const { perm, spatial } = this.convLayout(input, cfg);
    const x = this.layout(input, perm);
    const n = spatial.length;
    const kernelSize = toArray(cfg['kernelSize'], n, 'kernel size');
    const strides = toArray(cfg['strides'] ?? 1, n, 'strides');
    const dilations = toArray(cfg['dilationRate'] ?? 1, n, 'dilation rate');
    if (dilations.some((d) => d !== 1))
      throw new OnnxExportUnsupported(`dilated transposed convolution ${layer.name}`);
    const [kernel, bias] = weightsOf(layer);
    // Keras [k..., out, in] -> ONNX [in, out, k...]
    const r = kernel.shape.length;
    const wPerm = [r - 1, r - 2, ...identity(r - 2)];
    const w = this.g.floats(
      `${layer.name}/kernel`,
      transposeData(kernel.data, kernel.shape, wPerm),
      wPerm.map((p) => kernel.shape[p]),
    );
    const ins = [x.name, w];
    if (bias) ins.push(this.g.floats(`${layer.name}/bias`, bias.data, bias.shape));
    const padsBegin: number[] = [];
    const padsEnd: number[] = [];
    const outputPadding: number[] = [];
    for (let i = 0; i < n; i++) {
      const k = kernelSize[i];
      const s = strides[i];
      if (cfg['padding'] === 'same') {
        // Output = input * stride, as the gradient of a SAME convolution.
        const total = Math.max(k - s, 0);
        padsBegin.push(Math.floor(total / 2));
        padsEnd.push(total - Math.floor(total / 2));
        outputPadding.push(Math.max(s - k, 0));
      } else if (cfg['padding'] === 'valid') {
        padsBegin.push(0);
        padsEnd.push(0);
        outputPadding.push(Math.max(s - k, 0));
      } else {
        throw new OnnxExportUnsupported(`padding ${String(cfg['padding'])} in ${layer.name}`);
      }
    }
    const y = this.g.op(
      'ConvTranspose',
      ins,
      [
        attr.ints('kernel_shape', kernelSize),
        attr.ints('strides', strides),
        attr.ints('pads', [...padsBegin, ...padsEnd]),
        attr.ints('output_padding', outputPadding),
      ],
      layer.name,
    );
    return this.activation({ name: y, shape: out, perm }, cfg['activation'] as string, layer);
  }

  private depthwiseConv(layer: Layer, input: Value, out: Shape, cfg: Config, separable: boolean): Value {
    const { perm, spatial } = this.convLayout(input, cfg);
    const x = this.layout(input, perm);
    const kernelSize = toArray(cfg['kernelSize'], 2, 'kernel size');
    const strides = toArray(cfg['strides'] ?? 1, 2, 'strides');
    const dilations = toArray(cfg['dilationRate'] ?? 1, 2, 'dilation rate');
    const weights = weightsOf(layer);
    const depthwise = weights[0];
    const [kh, kw, channels, multiplier] = depthwise.shape;
    // [kh, kw, in, mult] -> [in * mult, 1, kh, kw]: output channel c * mult + m, one group per input channel.
    const w = this.g.floats(
      `${layer.name}/depthwise_kernel`,
      transposeData(depthwise.data, depthwise.shape, [2, 3, 0, 1]),
      [channels * multiplier, 1, kh, kw],
    );
    const ins = [x.name, w];
    const bias = separable ? undefined : weights[1];
    if (bias) ins.push(this.g.floats(`${layer.name}/bias`, bias.data, bias.shape));
    let y = this.g.op(
      'Conv',
      ins,
      [
        attr.ints('kernel_shape', kernelSize),
        attr.ints('strides', strides),
        attr.ints('dilations', dilations),
        attr.int('group', channels),
        this.convPads(layer, cfg['padding'] as string, spatial, kernelSize, strides, dilations),
      ],
      layer.name,
    );
    if (separable) {
      const pointwise = weights[1];
      const filters = pointwise.shape[3];
      const pw = this.g.floats(
        `${layer.name}/pointwise_kernel`,
        transposeData(pointwise.data, pointwise.shape, [3, 2, 0, 1]),
        [filters, channels * multiplier, 1, 1],
      );
      const pwIns = [y, pw];
      if (weights[2]) pwIns.push(this.g.floats(`${layer.name}/bias`, weights[2].data, weights[2].shape));
      y = this.g.op('Conv', pwIns, [attr.ints('kernel_shape', [1, 1])], layer.name);
    }
    return this.activation({ name: y, shape: out, perm }, cfg['activation'] as string, layer);
  }

  private pool(layer: Layer, input: Value, out: Shape, cfg: Config, op: 'MaxPool' | 'AveragePool'): Value {
    const { perm, spatial } = this.convLayout(input, cfg);
    const x = this.layout(input, perm);
    const n = spatial.length;
    const size = toArray(cfg['poolSize'], n, 'pool size');
    const strides = toArray(cfg['strides'] ?? size, n, 'strides');
    const ones = new Array<number>(n).fill(1);
    const attrs = [
      attr.ints('kernel_shape', size),
      attr.ints('strides', strides),
      this.convPads(layer, cfg['padding'] as string, spatial, size, strides, ones),
    ];
    // TF averages over the valid (unpadded) cells only; ONNX does so with count_include_pad = 0.
    if (op === 'AveragePool') attrs.push(attr.int('count_include_pad', 0));
    return { name: this.g.op(op, [x.name], attrs, layer.name), shape: out, perm };
  }

  private globalPool(input: Value, out: Shape, cfg: Config, op: 'ReduceMean' | 'ReduceMax'): Value {
    const rank = input.shape.length;
    const spatial =
      cfg['dataFormat'] === 'channelsFirst'
        ? identity(rank - 2).map((i) => i + 2)
        : identity(rank - 2).map((i) => i + 1);
    const axes = spatial.map((a) => input.perm.indexOf(a));
    const name = this.g.op(op, [input.name], [attr.ints('axes', axes), attr.int('keepdims', 0)]);
    const kept = input.perm.filter((a) => !spatial.includes(a));
    return { name, shape: out, perm: kept.map((a) => kept.filter((b) => b < a).length) };
  }

  private reshape(input: Value, out: Shape, target: (number | null)[]): Value {
    const x = this.plain(input);
    // TF.js keeps an inferred (-1) target dimension as null.
    const dims = out.slice(1).every((d) => d != null)
      ? [-1, ...(out.slice(1) as number[])]
      : [0, ...target.map((d) => (d == null || d < 0 ? -1 : d))];
    const name = this.g.op('Reshape', [x.name, this.g.int64s('shape', dims)]);
    return { name, shape: out, perm: identity(out.length) };
  }

  private batchNorm(layer: Layer, input: Value, cfg: Config): Value {
    const rank = input.shape.length;
    const axisCfg = cfg['axis'] ?? -1;
    const axis = normalizeAxis(
      Array.isArray(axisCfg) && axisCfg.length === 1 ? axisCfg[0] : (axisCfg as number),
      rank,
    );
    if (!Number.isInteger(axis))
      throw new OnnxExportUnsupported(`BatchNormalization over axes ${JSON.stringify(axisCfg)}`);
    const weights = weightsOf(layer);
    let i = 0;
    const gamma = cfg['scale'] !== false ? weights[i++] : undefined;
    const beta = cfg['center'] !== false ? weights[i++] : undefined;
    const mean = weights[i++];
    const variance = weights[i++];
    const eps = (cfg['epsilon'] as number) ?? 1e-3;
    const c = mean.data.length;
    const scale = new Float32Array(c);
    const shift = new Float32Array(c);
    for (let k = 0; k < c; k++) {
      scale[k] = (gamma ? gamma.data[k] : 1) / Math.sqrt(variance.data[k] + eps);
      shift[k] = (beta ? beta.data[k] : 0) - mean.data[k] * scale[k];
    }
    // Folded into one multiply-add, broadcast along wherever the channel axis is stored.
    const physical = input.perm.indexOf(axis);
    const dims = [c, ...new Array<number>(rank - 1 - physical).fill(1)];
    const y = this.g.op(
      'Mul',
      [input.name, this.g.floats(`${layer.name}/scale`, scale, dims)],
      [],
      layer.name,
    );
    const z = this.g.op('Add', [y, this.g.floats(`${layer.name}/shift`, shift, dims)], [], layer.name);
    return { name: z, shape: input.shape, perm: input.perm };
  }

  private layerNorm(layer: Layer, input: Value, cfg: Config): Value {
    const x = this.plain(input);
    const rank = x.shape.length;
    const axes = (Array.isArray(cfg['axis']) ? (cfg['axis'] as number[]) : [(cfg['axis'] as number) ?? -1])
      .map((a) => normalizeAxis(a, rank))
      .sort((a, b) => a - b);
    const first = axes[0];
    if (first < 1 || !axes.every((a, i) => a === first + i) || axes[axes.length - 1] !== rank - 1) {
      throw new OnnxExportUnsupported(`LayerNormalization over axes ${JSON.stringify(cfg['axis'])}`);
    }
    const normShape = x.shape.slice(first) as number[];
    const size = sizeOf(normShape);
    const weights = weightsOf(layer);
    let i = 0;
    const gamma = cfg['scale'] !== false ? weights[i++].data : new Float32Array(size).fill(1);
    const beta = cfg['center'] !== false ? weights[i++].data : new Float32Array(size);
    const name = this.g.op(
      'LayerNormalization',
      [
        x.name,
        this.g.floats(`${layer.name}/gamma`, gamma, normShape),
        this.g.floats(`${layer.name}/beta`, beta, normShape),
      ],
      [attr.int('axis', first), attr.float('epsilon', (cfg['epsilon'] as number) ?? 1e-3)],
      layer.name,
    );
    return { name, shape: x.shape, perm: x.perm };
  }

  private sameLayout(inputs: Value[]): Value[] {
    const rank = inputs[0].shape.length;
    if (inputs.some((v) => v.shape.length !== rank)) {
      throw new OnnxExportUnsupported('merging tensors of different ranks');
    }
    return inputs.map((v) => this.layout(v, inputs[0].perm));
  }

  private merge(inputs: Value[], out: Shape, op: 'Sum' | 'Mean' | 'Max' | 'Min' | 'Mul'): Value {
    const xs = this.sameLayout(inputs);
    let name: string;
    if (op === 'Mul') {
      name = xs[0].name;
      for (const x of xs.slice(1)) name = this.g.op('Mul', [name, x.name]);
    } else {
      name = this.g.op(
        op,
        xs.map((x) => x.name),
      );
    }
    return { name, shape: out, perm: xs[0].perm };
  }

  private concat(inputs: Value[], out: Shape, axis: number): Value {
    const xs = this.sameLayout(inputs);
    const logical = normalizeAxis(axis, out.length);
    const name = this.g.op(
      'Concat',
      xs.map((x) => x.name),
      [attr.int('axis', xs[0].perm.indexOf(logical))],
    );
    return { name, shape: out, perm: xs[0].perm };
  }

  /** Spatial logical axes of a 2-D image layer. */
  private imageAxes(cfg: Config): [number, number] {
    return cfg['dataFormat'] === 'channelsFirst' ? [2, 3] : [1, 2];
  }

  private zeroPad(x: Value, out: Shape, cfg: Config): Value {
    const [[top, bottom], [left, right]] = cfg['padding'] as [[number, number], [number, number]];
    const [hAxis, wAxis] = this.imageAxes(cfg);
    const begin = x.perm.map((a) => (a === hAxis ? top : a === wAxis ? left : 0));
    const end = x.perm.map((a) => (a === hAxis ? bottom : a === wAxis ? right : 0));
    const name = this.g.op('Pad', [x.name, this.g.int64s('pads', [...begin, ...end])]);
    return { name, shape: out, perm: x.perm };
  }

  private crop(x: Value, out: Shape, cfg: Config): Value {
    const [[top, bottom], [left, right]] = cfg['cropping'] as [[number, number], [number, number]];
    const [hAxis, wAxis] = this.imageAxes(cfg);
    const axes = [x.perm.indexOf(hAxis), x.perm.indexOf(wAxis)];
    const endOf = (n: number) => (n > 0 ? -n : Number.MAX_SAFE_INTEGER);
    const name = this.g.op('Slice', [
      x.name,
      this.g.int64s('starts', [top, left]),
      this.g.int64s('ends', [endOf(bottom), endOf(right)]),
      this.g.int64s('axes', axes),
    ]);
    return { name, shape: out, perm: x.perm };
  }

  private upsample(x: Value, out: Shape, cfg: Config): Value {
    const [sh, sw] = toArray(cfg['size'] ?? 2, 2, 'upsampling size');
    const [hAxis, wAxis] = this.imageAxes(cfg);
    const scales = x.perm.map((a) => (a === hAxis ? sh : a === wAxis ? sw : 1));
    const nearest = (cfg['interpolation'] ?? 'nearest') === 'nearest';
    // TF.js resizes without align-corners or half-pixel centres: ONNX 'asymmetric'.
    const attrs = [
      attr.string('mode', nearest ? 'nearest' : 'linear'),
      attr.string('coordinate_transformation_mode', 'asymmetric'),
    ];
    if (nearest) attrs.push(attr.string('nearest_mode', 'floor'));
    const name = this.g.op('Resize', [x.name, '', this.g.floats('scales', scales, [scales.length])], attrs);
    return { name, shape: out, perm: x.perm };
  }

  private embedding(layer: Layer, input: Value, out: Shape, cfg: Config): Value {
    if (cfg['maskZero']) throw new OnnxExportUnsupported(`Embedding ${layer.name} with maskZero`);
    const x = this.plain(input);
    const [table] = weightsOf(layer);
    const indices = this.g.op('Cast', [x.name], [attr.int('to', OnnxType.INT64)]);
    const name = this.g.op(
      'Gather',
      [this.g.floats(`${layer.name}/embeddings`, table.data, table.shape), indices],
      [attr.int('axis', 0)],
    );
    return { name, shape: out, perm: identity(out.length) };
  }

  /** Checks a recurrent layer's config and returns its ONNX weights and activations (one direction). */
  private rnnParts(layer: Layer, kind: RnnKind, inDim: number) {
    const cfg = layer.getConfig() as Config;
    if (cfg['stateful']) throw new OnnxExportUnsupported(`stateful ${kind} ${layer.name}`);
    if (cfg['returnState']) throw new OnnxExportUnsupported(`${kind} ${layer.name} returning its state`);
    if (cfg['resetAfter']) throw new OnnxExportUnsupported(`GRU ${layer.name} with resetAfter`);
    const units = cfg['units'] as number;
    const gates = GATES[kind];
    const [kernel, recurrent, bias] = weightsOf(layer);
    const acts =
      kind === 'LSTM'
        ? [cfg['recurrentActivation'], cfg['activation'], cfg['activation']]
        : kind === 'GRU'
          ? [cfg['recurrentActivation'], cfg['activation']]
          : [cfg['activation']];
    return {
      units,
      goBackwards: Boolean(cfg['goBackwards']),
      returnSequences: Boolean(cfg['returnSequences']),
      w: rnnMatrix(kernel.data, inDim, units, gates),
      r: rnnMatrix(recurrent.data, units, units, gates),
      b: rnnBias(bias?.data, units, gates),
      activations: acts.map((a) => rnnActivation((a as string) ?? 'tanh', layer)),
    };
  }

  /** Adds the ONNX recurrent node; returns Y [T, dirs, B, H] and Y_h [dirs, B, H]. */
  private rnnNode(
    layer: Layer,
    kind: RnnKind,
    x: Value,
    parts: ReturnType<Exporter['rnnParts']>[],
    direction: string,
  ): { y: string; yh: string } {
    const { units } = parts[0];
    const gateRows = GATES[kind].length * units;
    const inDim = x.shape[2] as number;
    const concat = (key: 'w' | 'r' | 'b') => {
      const arrays = parts.map((p) => p[key]);
      const out = new Float32Array(arrays.reduce((n, a) => n + a.length, 0));
      let offset = 0;
      for (const a of arrays) {
        out.set(a, offset);
        offset += a.length;
      }
      return out;
    };
    const dirs = parts.length;
    const w = this.g.floats(`${layer.name}/W`, concat('w'), [dirs, gateRows, inDim]);
    const r = this.g.floats(`${layer.name}/R`, concat('r'), [dirs, gateRows, units]);
    const b = this.g.floats(`${layer.name}/B`, concat('b'), [dirs, 2 * gateRows]);
    const acts = parts.flatMap((p) => p.activations);
    const attrs = [
      attr.int('hidden_size', units),
      attr.string('direction', direction),
      attr.strings(
        'activations',
        acts.map((a) => a.op),
      ),
    ];
    const alphas = acts.filter((a) => a.alpha !== undefined).map((a) => a.alpha as number);
    const betas = acts.filter((a) => a.beta !== undefined).map((a) => a.beta as number);
    if (alphas.length) attrs.push(attr.floats('activation_alpha', alphas));
    if (betas.length) attrs.push(attr.floats('activation_beta', betas));
    const op = kind === 'SimpleRNN' ? 'RNN' : kind;
    // Time-major input [T, B, F]: ORT's CPU kernels do not take the batch-major layout.
    const time = this.layout(x, [1, 0, 2]);
    const [y, yh] = this.g.node(op, [time.name, w, r, b], { attrs, outputs: 2, name: layer.name });
    return { y, yh };
  }

  private rnn(layer: Layer, inputs: Value[], out: Shape, kind: RnnKind): Value {
    if (inputs.length !== 1) throw new OnnxExportUnsupported(`${kind} ${layer.name} with initial state`);
    const x = inputs[0];
    const parts = this.rnnParts(layer, kind, x.shape[2] as number);
    const { y, yh } = this.rnnNode(layer, kind, x, [parts], parts.goBackwards ? 'reverse' : 'forward');
    if (!parts.returnSequences) {
      const last = this.g.op('Squeeze', [yh, this.g.int64s('axes', [0])]);
      return { name: last, shape: out, perm: [0, 1] };
    }
    let seq = this.g.op('Squeeze', [y, this.g.int64s('axes', [1])]);
    if (parts.goBackwards) {
      // Keras returns a backwards layer's outputs in processing order (last time step first).
      seq = this.g.op('Slice', [
        seq,
        this.g.int64s('starts', [-1]),
        this.g.int64s('ends', [-Number.MAX_SAFE_INTEGER]),
        this.g.int64s('axes', [0]),
        this.g.int64s('steps', [-1]),
      ]);
    }
    return { name: seq, shape: out, perm: [1, 0, 2] };
  }

  private bidirectional(layer: Layer, inputs: Value[], out: Shape, cfg: Config): Value {
    if (inputs.length !== 1)
      throw new OnnxExportUnsupported(`Bidirectional ${layer.name} with initial state`);
    const wrapper = layer as Layer & { forwardLayer: Layer; backwardLayer: Layer; mergeMode: string | null };
    const kind = wrapper.forwardLayer.getClassName();
    if (kind !== 'LSTM' && kind !== 'GRU' && kind !== 'SimpleRNN') {
      throw new OnnxExportUnsupported(`Bidirectional ${kind} (${layer.name})`);
    }
    const x = inputs[0];
    const fwd = this.rnnParts(wrapper.forwardLayer, kind, x.shape[2] as number);
    const bwd = this.rnnParts(wrapper.backwardLayer, kind, x.shape[2] as number);
    if (fwd.goBackwards || !bwd.goBackwards)
      throw new OnnxExportUnsupported(`Bidirectional ${layer.name} directions`);
    const mode = (cfg['mergeMode'] as string | null | undefined) ?? wrapper.mergeMode;
    const { y, yh } = this.rnnNode(layer, kind as RnnKind, x, [fwd, bwd], 'bidirectional');
    // Both directions' outputs are aligned with the input time steps, as Keras returns them.
    const merge = (value: string, dirAxis: number, rank: number): string => {
      switch (mode) {
        case 'concat': {
          const perm = identity(rank);
          perm.splice(dirAxis, 1);
          perm.splice(rank - 2, 0, dirAxis);
          const moved = this.g.op('Transpose', [value], [attr.ints('perm', perm)]);
          const shape = new Array<number>(rank - 2).fill(0).concat([-1]);
          return this.g.op('Reshape', [moved, this.g.int64s('shape', shape)]);
        }
        case 'sum':
          return this.g.op('ReduceSum', [value, this.g.int64s('axes', [dirAxis])], [attr.int('keepdims', 0)]);
        case 'ave':
          return this.g.op('ReduceMean', [value], [attr.ints('axes', [dirAxis]), attr.int('keepdims', 0)]);
        case 'mul':
          return this.g.op('ReduceProd', [value], [attr.ints('axes', [dirAxis]), attr.int('keepdims', 0)]);
        default:
          throw new OnnxExportUnsupported(`Bidirectional ${layer.name} merge mode ${String(mode)}`);
      }
    };
    if (fwd.returnSequences) return { name: merge(y, 1, 4), shape: out, perm: [1, 0, 2] };
    return { name: merge(yh, 0, 3), shape: out, perm: [0, 1] };
  }

  private timeDistributed(layer: Layer, input: Value, out: Shape): Value {
    const inner = (layer as Layer & { layer: Layer }).layer;
    const x = this.plain(input);
    if (inner.getClassName() === 'Dense') {
      // Dense acts on the last axis of any rank: no reshaping needed.
      return this.layer(inner, [x], [out])[0];
    }
    const steps = x.shape[1];
    const innerIn = x.shape.slice(2);
    if (steps == null || innerIn.some((d) => d == null)) {
      throw new OnnxExportUnsupported(`TimeDistributed ${layer.name} over unknown sizes`);
    }
    const merged = this.g.op('Reshape', [x.name, this.g.int64s('shape', [-1, ...(innerIn as number[])])]);
    const innerOutShape = inner.computeOutputShape([null, ...innerIn]) as Shape;
    const [y] = this.layer(
      inner,
      [{ name: merged, shape: [null, ...innerIn], perm: identity(innerIn.length + 1) }],
      [innerOutShape],
    );
    const flat = this.plain(y);
    const name = this.g.op('Reshape', [
      flat.name,
      this.g.int64s('shape', [-1, steps, ...(innerOutShape.slice(1) as number[])]),
    ]);
    return { name, shape: out, perm: identity(out.length) };
  }
}
