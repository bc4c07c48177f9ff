/**
 * TF.js activation functions by their serialized names, as ONNX ops (tfjs-layers/src/activations.ts).
 * Only type imports from core.ts, so core's layers can use it without an import cycle.
 */
import { OnnxExportUnsupported } from '../../../errors';
import { attr } from '../onnx-graph';
import type { Exporter, Layer, Value } from './core';

/** Applies a TF.js activation by its serialized name; layout is kept. */
export function applyActivation(ex: Exporter, x: Value, name: string | undefined, layer: Layer): Value {
  switch (name ?? 'linear') {
    case 'linear':
      return x;
    case 'relu':
      return ex.unary(x, 'Relu');
    case 'relu6':
      return ex.clip(x, 0, 6);
    case 'sigmoid':
      return ex.unary(x, 'Sigmoid');
    case 'tanh':
      return ex.unary(x, 'Tanh');
    case 'softmax':
      return ex.softmax(x, 'Softmax', -1);
    case 'logSoftmax':
      return ex.softmax(x, 'LogSoftmax', -1);
    case 'elu':
      return ex.unary(x, 'Elu', [attr.float('alpha', 1)]);
    case 'selu':
      return ex.unary(x, 'Selu');
    case 'softplus':
      return ex.unary(x, 'Softplus');
    case 'softsign':
      return ex.unary(x, 'Softsign');
    case 'hardSigmoid':
      return ex.unary(x, 'HardSigmoid', [attr.float('alpha', 0.2), attr.float('beta', 0.5)]);
    case 'swish':
      return ex.binary(x, 'Mul', ex.unary(x, 'Sigmoid').name);
    case 'mish': {
      const t = ex.unary(ex.unary(x, 'Softplus'), 'Tanh');
      return ex.binary(x, 'Mul', t.name);
    }
    case 'gelu': {
      // x * 0.5 * (1 + erf(x / sqrt 2)), as TF.js computes it.
      const erf = ex.unary(ex.binary(x, 'Mul', ex.g.floats('inv_sqrt2', [Math.SQRT1_2], [])), 'Erf');
      const cdf = ex.binary(
        ex.binary(erf, 'Add', ex.g.floats('one', [1], [])),
        'Mul',
        ex.g.floats('half', [0.5], []),
      );
      return ex.binary(x, 'Mul', cdf.name);
    }
    case 'gelu_new': {
      // 0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
      const cube = ex.binary(ex.binary(x, 'Mul', x.name), 'Mul', x.name);
      const inner = ex.binary(ex.binary(cube, 'Mul', ex.g.floats('c', [0.044715], [])), 'Add', x.name);
      const t = ex.unary(ex.binary(inner, 'Mul', ex.g.floats('k', [Math.sqrt(2 / Math.PI)], [])), 'Tanh');
      const cdf = ex.binary(
        ex.binary(t, 'Add', ex.g.floats('one', [1], [])),
        'Mul',
        ex.g.floats('half', [0.5], []),
      );
      return ex.binary(x, 'Mul', cdf.name);
    }
    default:
      throw new OnnxExportUnsupported(`activation ${name} in layer ${layer.name}`);
  }
}
