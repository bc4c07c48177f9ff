/** Recurrent layers: LSTM, GRU, SimpleRNN as ONNX LSTM/GRU/RNN nodes (tfjs-layers/src/layers/recurrent.ts). */
import { OnnxExportUnsupported } from '../../../errors';
import { attr } from '../onnx-graph';
import { configOf, weightsOf, type Exporter, type Layer, type LayerEmitter, type Value } from './core';
import { concatFloat32 } from '../../../util/arrays';

export type RnnKind = 'LSTM' | 'GRU' | 'SimpleRNN';

export interface RnnConfig {
  units: number;
  activation?: string;
  recurrentActivation?: string;
  stateful?: boolean;
  returnState?: boolean;
  resetAfter?: boolean;
  goBackwards?: boolean;
  returnSequences?: boolean;
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

/** One direction's ONNX weights and activations, with the flags that shape the output. */
export interface RnnParts {
  units: number;
  goBackwards: boolean;
  returnSequences: boolean;
  w: Float32Array;
  r: Float32Array;
  b: Float32Array;
  activations: { op: string; alpha?: number; beta?: number }[];
}

/** Checks a recurrent layer's config and returns its ONNX weights and activations (one direction). */
export function rnnParts(layer: Layer, kind: RnnKind, inDim: number): RnnParts {
  const cfg = configOf<RnnConfig>(layer);
  if (cfg.stateful) throw new OnnxExportUnsupported(`stateful ${kind} ${layer.name}`);
  if (cfg.returnState) throw new OnnxExportUnsupported(`${kind} ${layer.name} returning its state`);
  if (cfg.resetAfter) throw new OnnxExportUnsupported(`GRU ${layer.name} with resetAfter`);
  const units = cfg.units;
  const gates = GATES[kind];
  const [kernel, recurrent, bias] = weightsOf(layer);
  const acts =
    kind === 'LSTM'
      ? [cfg.recurrentActivation, cfg.activation, cfg.activation]
      : kind === 'GRU'
        ? [cfg.recurrentActivation, cfg.activation]
        : [cfg.activation];
  return {
    units,
    goBackwards: Boolean(cfg.goBackwards),
    returnSequences: Boolean(cfg.returnSequences),
    w: rnnMatrix(kernel.data, inDim, units, gates),
    r: rnnMatrix(recurrent.data, units, units, gates),
    b: rnnBias(bias?.data, units, gates),
    activations: acts.map((a) => rnnActivation(a ?? 'tanh', layer)),
  };
}

/** Adds the ONNX recurrent node; returns Y [T, dirs, B, H] and Y_h [dirs, B, H]. */
export function rnnNode(
  ex: Exporter,
  layer: Layer,
  kind: RnnKind,
  x: Value,
  parts: RnnParts[],
  direction: string,
): { y: string; yh: string } {
  const { units } = parts[0];
  const gateRows = GATES[kind].length * units;
  const inDim = x.shape[2] as number;
  const dirs = parts.length;
  const w = ex.g.floats(`${layer.name}/W`, concatFloat32(parts.map((p) => p.w)), [dirs, gateRows, inDim]);
  const r = ex.g.floats(`${layer.name}/R`, concatFloat32(parts.map((p) => p.r)), [dirs, gateRows, units]);
  const b = ex.g.floats(`${layer.name}/B`, concatFloat32(parts.map((p) => p.b)), [dirs, 2 * gateRows]);
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
  const time = ex.layout(x, [1, 0, 2]);
  const [y, yh] = ex.g.node(op, [time.name, w, r, b], { attrs, outputs: 2, name: layer.name });
  return { y, yh };
}

function rnn(kind: RnnKind): LayerEmitter {
  return (ex, layer, inputs, [out]) => {
    if (inputs.length !== 1) throw new OnnxExportUnsupported(`${kind} ${layer.name} with initial state`);
    const x = inputs[0];
    const parts = rnnParts(layer, kind, x.shape[2] as number);
    const { y, yh } = rnnNode(ex, layer, kind, x, [parts], parts.goBackwards ? 'reverse' : 'forward');
    if (!parts.returnSequences) {
      const last = ex.g.op('Squeeze', [yh, ex.g.int64s('axes', [0])]);
      return [{ name: last, shape: out, perm: [0, 1] }];
    }
    let seq = ex.g.op('Squeeze', [y, ex.g.int64s('axes', [1])]);
    if (parts.goBackwards) {
      // Keras returns a backwards layer's outputs in processing order (last time step first).
      seq = ex.g.op('Slice', [
        seq,
        ex.g.int64s('starts', [-1]),
        ex.g.int64s('ends', [-Number.MAX_SAFE_INTEGER]),
        ex.g.int64s('axes', [0]),
        ex.g.int64s('steps', [-1]),
      ]);
    }
    return [{ name: seq, shape: out, perm: [1, 0, 2] }];
  };
}

export const recurrentLayers: Record<string, LayerEmitter> = {
  LSTM: rnn('LSTM'),
  GRU: rnn('GRU'),
  SimpleRNN: rnn('SimpleRNN'),
};
