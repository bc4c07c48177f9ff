/** Wrapper layers: Bidirectional, TimeDistributed (tfjs-layers/src/layers/wrappers.ts). */
import { OnnxExportUnsupported } from '../../../errors';
import { attr } from '../onnx-graph';
import { configOf, identity, single, type Layer, type LayerEmitter, type Shape } from './core';
import { rnnNode, rnnParts, type RnnKind } from './recurrent';

export interface BidirectionalConfig {
  mergeMode?: string | null;
}

const bidirectional: LayerEmitter = (ex, layer, inputs, [out]) => {
  if (inputs.length !== 1) throw new OnnxExportUnsupported(`Bidirectional ${layer.name} with initial state`);
  const wrapper = layer as Layer & { forwardLayer: Layer; backwardLayer: Layer; mergeMode: string | null };
  const kind = wrapper.forwardLayer.getClassName();
  if (kind !== 'LSTM' && kind !== 'GRU' && kind !== 'SimpleRNN') {
    throw new OnnxExportUnsupported(`Bidirectional ${kind} (${layer.name})`);
  }
  const x = inputs[0];
  const fwd = rnnParts(wrapper.forwardLayer, kind, x.shape[2] as number);
  const bwd = rnnParts(wrapper.backwardLayer, kind, x.shape[2] as number);
  if (fwd.goBackwards || !bwd.goBackwards)
    throw new OnnxExportUnsupported(`Bidirectional ${layer.name} directions`);
  const mode = configOf<BidirectionalConfig>(layer).mergeMode ?? wrapper.mergeMode;
  const { y, yh } = rnnNode(ex, layer, kind as RnnKind, x, [fwd, bwd], 'bidirectional');
  // Both directions' outputs are aligned with the input time steps, as Keras returns them.
  const merge = (value: string, dirAxis: number, rank: number): string => {
    switch (mode) {
      case 'concat': {
        const perm = identity(rank);
        perm.splice(dirAxis, 1);
        perm.splice(rank - 2, 0, dirAxis);
        const moved = ex.g.op('Transpose', [value], [attr.ints('perm', perm)]);
        const shape = new Array<number>(rank - 2).fill(0).concat([-1]);
        return ex.g.op('Reshape', [moved, ex.g.int64s('shape', shape)]);
      }
      case 'sum':
        return ex.g.op('ReduceSum', [value, ex.g.int64s('axes', [dirAxis])], [attr.int('keepdims', 0)]);
      case 'ave':
        return ex.g.op('ReduceMean', [value], [attr.ints('axes', [dirAxis]), attr.int('keepdims', 0)]);
      case 'mul':
        return ex.g.op('ReduceProd', [value], [attr.ints('axes', [dirAxis]), attr.int('keepdims', 0)]);
      default:
        throw new OnnxExportUnsupported(`Bidirectional ${layer.name} merge mode ${String(mode)}`);
    }
  };
  if (fwd.returnSequences) return [{ name: merge(y, 1, 4), shape: out, perm: [1, 0, 2] }];
  return [{ name: merge(yh, 0, 3), shape: out, perm: [0, 1] }];
};

const timeDistributed = single((ex, layer, input, out) => {
  const inner = (layer as Layer & { layer: Layer }).layer;
  const x = ex.plain(input);
  if (inner.getClassName() === 'Dense') {
    // Dense acts on the last axis of any rank: no reshaping needed.
    return ex.layer(inner, [x], [out])[0];
  }
  const steps = x.shape[1];
  const innerIn = x.shape.slice(2);
  if (steps == null || innerIn.some((d) => d == null)) {
    throw new OnnxExportUnsupported(`TimeDistributed ${layer.name} over unknown sizes`);
  }
  const merged = ex.g.op('Reshape', [x.name, ex.g.int64s('shape', [-1, ...(innerIn as number[])])]);
  const innerOutShape = inner.computeOutputShape([null, ...innerIn]) as Shape;
  const [y] = ex.layer(
    inner,
    [{ name: merged, shape: [null, ...innerIn], perm: identity(innerIn.length + 1) }],
    [innerOutShape],
  );
  const flat = ex.plain(y);
  const name = ex.g.op('Reshape', [
    flat.name,
    ex.g.int64s('shape', [-1, steps, ...(innerOutShape.slice(1) as number[])]),
  ]);
  return { name, shape: out, perm: identity(out.length) };
});

export const wrapperLayers: Record<string, LayerEmitter> = {
  Bidirectional: bidirectional,
  TimeDistributed: timeDistributed,
};
