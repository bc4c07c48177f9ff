/**
 * The exporter's core: values and their layouts, the graph walk, the small op helpers every
 * layer family uses, and the core layers (Dense, Flatten, Reshape, Permute, RepeatVector,
 * Dropout and noise, Embedding), as in tfjs-layers/src/layers/core.ts.
 */
import { LayersModel, type SymbolicTensor } from '@tensorflow/tfjs-layers';
import type { onnx } from '../../onnx-proto';
import { OnnxExportUnsupported } from '../../../errors';
import { attr, GraphBuilder, OnnxType } from '../onnx-graph';
import { applyActivation } from './activations';

export type Layer = SymbolicTensor['sourceLayer'];
export type Shape = (number | null)[];
export type DataFormat = 'channelsFirst' | 'channelsLast';

/**
 * A tensor of the graph being built. `shape` is the Keras (logical) shape with the batch
 * dimension first; `perm` says how the ONNX tensor stores it: physical axis j holds logical
 * axis perm[j]. Convolutions keep their output channels-first (what ONNX wants) and the
 * transpose back to channels-last is only added where a layer needs it.
 */
export interface Value {
  name: string;
  shape: Shape;
  perm: number[];
}

/** Emits one layer kind: its ONNX nodes for `inputs`; returns the layer's outputs. */
export type LayerEmitter = (ex: Exporter, layer: Layer, inputs: Value[], outShapes: Shape[]) => Value[];

/** A layer's serialized config, read through the interface of its kind. */
export function configOf<T>(layer: Layer): T {
  return layer.getConfig() as unknown as T;
}

/** The single input of a one-input layer. */
export function onlyInput(layer: Layer, inputs: Value[]): Value {
  if (inputs.length !== 1)
    throw new OnnxExportUnsupported(`${layer.getClassName()} ${layer.name} with ${inputs.length} inputs`);
  return inputs[0];
}

/** An emitter for a one-input, one-output layer. */
export function single(emit: (ex: Exporter, layer: Layer, x: Value, out: Shape) => Value): LayerEmitter {
  return (ex, layer, inputs, outShapes) => [emit(ex, layer, onlyInput(layer, inputs), outShapes[0])];
}

export function identity(rank: number): number[] {
  return Array.from({ length: rank }, (_, i) => i);
}

function sameArray(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

export function normalizeAxis(axis: number, rank: number): number {
  return axis < 0 ? axis + rank : axis;
}

export function toArray(v: unknown, n: number, what: string): number[] {
  if (typeof v === 'number') return new Array<number>(n).fill(v);
  if (Array.isArray(v) && v.length === n && v.every((x) => typeof x === 'number')) return v as number[];
  if (Array.isArray(v) && v.length === 1 && typeof v[0] === 'number') return new Array<number>(n).fill(v[0]);
  throw new OnnxExportUnsupported(`${what} ${JSON.stringify(v)}`);
}

export function weightsOf(layer: Layer): { data: Float32Array; shape: number[] }[] {
  // getWeights() returns the variables' own tensors (no copies to dispose).
  return layer.getWeights().map((w) => {
    if (w.dtype !== 'float32') throw new OnnxExportUnsupported(`${w.dtype} weights in layer ${layer.name}`);
    return { data: w.dataSync() as Float32Array, shape: w.shape.slice() };
  });
}

export class Exporter {
  readonly g = new GraphBuilder();
  private readonly transposed = new Map<string, Value>();

  constructor(private readonly emitters: Readonly<Record<string, LayerEmitter>>) {}

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
    const emit = Object.prototype.hasOwnProperty.call(this.emitters, cls) ? this.emitters[cls] : undefined;
    if (!emit) throw new OnnxExportUnsupported(`layer ${cls} (${layer.name})`);
    return emit(this, layer, inputs, outShapes);
  }

  unary(x: Value, op: string, attrs: onnx.IAttributeProto[] = []): Value {
    return { name: this.g.op(op, [x.name], attrs), shape: x.shape, perm: x.perm };
  }

  binary(x: Value, op: string, other: string): Value {
    return { name: this.g.op(op, [x.name, other]), shape: x.shape, perm: x.perm };
  }

  clip(x: Value, min: number, max: number): Value {
    const name = this.g.op('Clip', [
      x.name,
      this.g.floats('min', [min], []),
      this.g.floats('max', [max], []),
    ]);
    return { name, shape: x.shape, perm: x.perm };
  }

  softmax(x: Value, op: 'Softmax' | 'LogSoftmax', axis: number): Value {
    const logical = normalizeAxis(axis, x.shape.length);
    return this.unary(x, op, [attr.int('axis', x.perm.indexOf(logical))]);
  }
}

// ---- core layers ----

export interface DenseConfig {
  activation?: string;
}

export interface FlattenConfig {
  dataFormat?: DataFormat;
}

export interface ReshapeConfig {
  targetShape: (number | null)[];
}

export interface PermuteConfig {
  dims: number[];
}

export interface RepeatVectorConfig {
  n: number;
}

export interface EmbeddingConfig {
  maskZero?: boolean;
}

const dense = single((ex, layer, input, out) => {
  const cfg = configOf<DenseConfig>(layer);
  const x = ex.plain(input);
  const [kernel, bias] = weightsOf(layer);
  let y = ex.g.op(
    'MatMul',
    [x.name, ex.g.floats(`${layer.name}/kernel`, kernel.data, kernel.shape)],
    [],
    layer.name,
  );
  if (bias) y = ex.g.op('Add', [y, ex.g.floats(`${layer.name}/bias`, bias.data, bias.shape)], [], layer.name);
  return applyActivation(ex, { name: y, shape: out, perm: identity(out.length) }, cfg.activation, layer);
});

const flatten = single((ex, layer, input, out) => {
  const rank = input.shape.length;
  // Keras flattens channels-first data in channels-last order.
  const order =
    configOf<FlattenConfig>(layer).dataFormat === 'channelsFirst' && rank > 2
      ? [0, ...identity(rank - 2).map((i) => i + 2), 1]
      : identity(rank);
  const x = ex.layout(input, order);
  if (x.shape.length === 2) return x;
  return { name: ex.g.op('Flatten', [x.name], [attr.int('axis', 1)]), shape: out, perm: identity(2) };
});

const reshape = single((ex, layer, input, out) => {
  const target = configOf<ReshapeConfig>(layer).targetShape;
  const x = ex.plain(input);
  // TF.js keeps an inferred (-1) target dimension as null.
  const dims = out.slice(1).every((d) => d != null)
    ? [-1, ...(out.slice(1) as number[])]
    : [0, ...target.map((d) => (d == null || d < 0 ? -1 : d))];
  const name = ex.g.op('Reshape', [x.name, ex.g.int64s('shape', dims)]);
  return { name, shape: out, perm: identity(out.length) };
});

const permute = single((_ex, layer, x, out) => {
  // No data movement: only the logical meaning of the physical axes changes.
  const dims = [0, ...configOf<PermuteConfig>(layer).dims];
  const inverse = new Array<number>(dims.length);
  dims.forEach((d, i) => (inverse[d] = i));
  return { name: x.name, shape: out, perm: x.perm.map((p) => inverse[p]) };
});

const repeatVector = single((ex, layer, input, out) => {
  const x = ex.plain(input);
  const n = configOf<RepeatVectorConfig>(layer).n;
  const expanded = ex.g.op('Unsqueeze', [x.name, ex.g.int64s('axes', [1])]);
  const tiled = ex.g.op('Tile', [expanded, ex.g.int64s('repeats', [1, n, 1])]);
  return { name: tiled, shape: out, perm: identity(3) };
});

/** Identity at inference. */
const passThrough = single((_ex, _layer, x) => x);

const embedding = single((ex, layer, input, out) => {
  if (configOf<EmbeddingConfig>(layer).maskZero)
    throw new OnnxExportUnsupported(`Embedding ${layer.name} with maskZero`);
  const x = ex.plain(input);
  const [table] = weightsOf(layer);
  const indices = ex.g.op('Cast', [x.name], [attr.int('to', OnnxType.INT64)]);
  const name = ex.g.op(
    'Gather',
    [ex.g.floats(`${layer.name}/embeddings`, table.data, table.shape), indices],
    [attr.int('axis', 0)],
  );
  return { name, shape: out, perm: identity(out.length) };
});

export const coreLayers: Record<string, LayerEmitter> = {
  Dense: dense,
  Flatten: flatten,
  Reshape: reshape,
  Permute: permute,
  RepeatVector: repeatVector,
  Dropout: passThrough,
  SpatialDropout1D: passThrough,
  GaussianNoise: passThrough,
  GaussianDropout: passThrough,
  AlphaDropout: passThrough,
  Embedding: embedding,
};
