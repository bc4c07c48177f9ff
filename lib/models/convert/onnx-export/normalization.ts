/** Normalization layers: BatchNormalization, LayerNormalization (tfjs-layers/src/layers/normalization.ts). */
import { OnnxExportUnsupported } from '../../../errors';
import { sizeOf } from '../../../preprocess/shape';
import { attr } from '../onnx-graph';
import { configOf, normalizeAxis, single, weightsOf, type LayerEmitter } from './core';

export interface NormalizationConfig {
  axis?: number | number[];
  scale?: boolean;
  center?: boolean;
  epsilon?: number;
}

const batchNorm = single((ex, layer, input) => {
  const cfg = configOf<NormalizationConfig>(layer);
  const rank = input.shape.length;
  const axisCfg = cfg.axis ?? -1;
  const axis = normalizeAxis(
    Array.isArray(axisCfg) && axisCfg.length === 1 ? axisCfg[0] : (axisCfg as number),
    rank,
  );
  if (!Number.isInteger(axis))
    throw new OnnxExportUnsupported(`BatchNormalization over axes ${JSON.stringify(axisCfg)}`);
  const weights = weightsOf(layer);
  let i = 0;
  const gamma = cfg.scale !== false ? weights[i++] : undefined;
  const beta = cfg.center !== false ? weights[i++] : undefined;
  const mean = weights[i++];
  const variance = weights[i++];
  const eps = cfg.epsilon ?? 1e-3;
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
  const y = ex.g.op('Mul', [input.name, ex.g.floats(`${layer.name}/scale`, scale, dims)], [], layer.name);
  const z = ex.g.op('Add', [y, ex.g.floats(`${layer.name}/shift`, shift, dims)], [], layer.name);
  return { name: z, shape: input.shape, perm: input.perm };
});

const layerNorm = single((ex, layer, input) => {
  const cfg = configOf<NormalizationConfig>(layer);
  const x = ex.plain(input);
  const rank = x.shape.length;
  const axes = (Array.isArray(cfg.axis) ? cfg.axis : [cfg.axis ?? -1])
    .map((a) => normalizeAxis(a, rank))
    .sort((a, b) => a - b);
  const first = axes[0];
  if (first < 1 || !axes.every((a, i) => a === first + i) || axes[axes.length - 1] !== rank - 1) {
    throw new OnnxExportUnsupported(`LayerNormalization over axes ${JSON.stringify(cfg.axis)}`);
  }
  const normShape = x.shape.slice(first) as number[];
  const size = sizeOf(normShape);
  const weights = weightsOf(layer);
  let i = 0;
  const gamma = cfg.scale !== false ? weights[i++].data : new Float32Array(size).fill(1);
  const beta = cfg.center !== false ? weights[i++].data : new Float32Array(size);
  const name = ex.g.op(
    'LayerNormalization',
    [
      x.name,
      ex.g.floats(`${layer.name}/gamma`, gamma, normShape),
      ex.g.floats(`${layer.name}/beta`, beta, normShape),
    ],
    [attr.int('axis', first), attr.float('epsilon', cfg.epsilon ?? 1e-3)],
    layer.name,
  );
  return { name, shape: x.shape, perm: x.perm };
});

export const normalizationLayers: Record<string, LayerEmitter> = {
  BatchNormalization: batchNorm,
  LayerNormalization: layerNorm,
};
