/** Activation layers: Activation, ReLU, LeakyReLU, ELU, ThresholdedReLU, PReLU, Softmax. */
import { OnnxExportUnsupported } from '../../../errors';
import { attr } from '../onnx-graph';
import { applyActivation } from './activations';
import { configOf, single, weightsOf, type LayerEmitter } from './core';

export interface ActivationConfig {
  activation?: string;
}

export interface ReLUConfig {
  maxValue?: number | null;
}

export interface AlphaConfig {
  alpha?: number;
}

export interface ThresholdedReLUConfig {
  theta?: number;
}

export interface SoftmaxConfig {
  axis?: number | number[];
}

export const activationLayers: Record<string, LayerEmitter> = {
  Activation: single((ex, layer, x) =>
    applyActivation(ex, x, configOf<ActivationConfig>(layer).activation, layer),
  ),
  ReLU: single((ex, layer, x) => {
    const max = configOf<ReLUConfig>(layer).maxValue;
    if (max == null) return ex.unary(x, 'Relu');
    return ex.clip(x, 0, max);
  }),
  LeakyReLU: single((ex, layer, x) =>
    ex.unary(x, 'LeakyRelu', [attr.float('alpha', configOf<AlphaConfig>(layer).alpha ?? 0.3)]),
  ),
  ELU: single((ex, layer, x) =>
    ex.unary(x, 'Elu', [attr.float('alpha', configOf<AlphaConfig>(layer).alpha ?? 1)]),
  ),
  ThresholdedReLU: single((ex, layer, x) =>
    ex.unary(x, 'ThresholdedRelu', [attr.float('alpha', configOf<ThresholdedReLUConfig>(layer).theta ?? 1)]),
  ),
  PReLU: single((ex, layer, input) => {
    const x = ex.plain(input);
    const [alpha] = weightsOf(layer);
    const slope = ex.g.floats(`${layer.name}/alpha`, alpha.data, alpha.shape);
    return { name: ex.g.op('PRelu', [x.name, slope]), shape: x.shape, perm: x.perm };
  }),
  Softmax: single((ex, layer, x) => {
    const axis = configOf<SoftmaxConfig>(layer).axis;
    const a = Array.isArray(axis) ? (axis.length === 1 ? axis[0] : NaN) : (axis ?? -1);
    if (!Number.isInteger(a)) throw new OnnxExportUnsupported(`Softmax over axes ${JSON.stringify(axis)}`);
    return ex.softmax(x, 'Softmax', a);
  }),
};
