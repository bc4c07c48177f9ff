/** Merge layers: Add, Average, Maximum, Minimum, Multiply, Concatenate (tfjs-layers/src/layers/merge.ts). */
import { OnnxExportUnsupported } from '../../../errors';
import { attr } from '../onnx-graph';
import { configOf, normalizeAxis, type Exporter, type LayerEmitter, type Value } from './core';

export interface ConcatenateConfig {
  axis?: number;
}

function sameLayout(ex: Exporter, inputs: Value[]): Value[] {
  const rank = inputs[0].shape.length;
  if (inputs.some((v) => v.shape.length !== rank)) {
    throw new OnnxExportUnsupported('merging tensors of different ranks');
  }
  return inputs.map((v) => ex.layout(v, inputs[0].perm));
}

function merge(op: 'Sum' | 'Mean' | 'Max' | 'Min' | 'Mul'): LayerEmitter {
  return (ex, _layer, inputs, [out]) => {
    const xs = sameLayout(ex, inputs);
    let name: string;
    if (op === 'Mul') {
      name = xs[0].name;
      for (const x of xs.slice(1)) name = ex.g.op('Mul', [name, x.name]);
    } else {
      name = ex.g.op(
        op,
        xs.map((x) => x.name),
      );
    }
    return [{ name, shape: out, perm: xs[0].perm }];
  };
}

const concat: LayerEmitter = (ex, layer, inputs, [out]) => {
  const xs = sameLayout(ex, inputs);
  const logical = normalizeAxis(configOf<ConcatenateConfig>(layer).axis ?? -1, out.length);
  const name = ex.g.op(
    'Concat',
    xs.map((x) => x.name),
    [attr.int('axis', xs[0].perm.indexOf(logical))],
  );
  return [{ name, shape: out, perm: xs[0].perm }];
};

export const mergeLayers: Record<string, LayerEmitter> = {
  Add: merge('Sum'),
  Average: merge('Mean'),
  Maximum: merge('Max'),
  Minimum: merge('Min'),
  Multiply: merge('Mul'),
  Concatenate: concat,
};
