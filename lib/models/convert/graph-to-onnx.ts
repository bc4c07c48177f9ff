import { onnx } from '../onnx-proto';
import { OnnxExportUnsupported } from '../../errors';
import { tf } from '../runtime/tfjs';
import {
  attr,
  GraphBuilder,
  OnnxType,
  tensorValueInfo,
  transposeData,
  transposedConvPads,
} from './onnx-graph';
import { ONNX_EXPORT_IR_VERSION, ONNX_EXPORT_OPSET } from './onnx-export';

/**
 * TF.js graph models (model.json with `format: graph-model`, a TensorFlow GraphDef) to ONNX, so
 * they run on ONNX Runtime. TensorFlow computes images as NHWC and ONNX as NCHW: each
 * convolution and pooling is wrapped in a pair of Transposes, which ONNX Runtime's optimizer
 * cancels between neighbours. Weights come from the model's own shards. An op without a
 * translation is an OnnxExportUnsupported error naming it; the caller then keeps TF.js.
 */

interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, AttrValue>;
}

interface AttrValue {
  type?: string;
  b?: boolean;
  i?: string | number;
  f?: number;
  s?: string;
  list?: { i?: (string | number)[]; s?: string[]; f?: number[] };
  shape?: { dim?: { size?: string | number }[]; unknownRank?: boolean };
}

interface Constant {
  values: Float32Array | Int32Array;
  dims: number[];
}

/** TensorFlow dtypes a Cast may produce, as ONNX element types. */
const CAST_TYPES: Record<string, number> = {
  DT_FLOAT: OnnxType.FLOAT,
  DT_INT32: OnnxType.INT32,
  DT_BOOL: OnnxType.BOOL,
};

const NHWC_TO_NCHW = [0, 3, 1, 2];
const NCHW_TO_NHWC = [0, 2, 3, 1];

function ints(a: AttrValue | undefined): number[] {
  return (a?.list?.i ?? []).map(Number);
}

function text(a: AttrValue | undefined): string {
  return a?.s ? Buffer.from(a.s, 'base64').toString('utf8') : '';
}

function texts(a: AttrValue | undefined): string[] {
  return (a?.list?.s ?? []).map((s) => Buffer.from(s, 'base64').toString('utf8'));
}

/** A tensor reference "name:1" or "^control" to the value name used in the ONNX graph. */
function ref(input: string): string {
  return input.endsWith(':0') ? input.slice(0, -2) : input;
}

export function convertGraphModelToOnnx(artifacts: tf.io.ModelArtifacts): Uint8Array {
  const topology = artifacts.modelTopology as { node?: GraphNode[] } | undefined;
  const nodes = topology?.node;
  if (!Array.isArray(nodes)) throw new OnnxExportUnsupported('the graph model has no nodes');
  if ((topology as { library?: { function?: unknown[] } }).library?.function?.length) {
    throw new OnnxExportUnsupported('graph functions (control flow)');
  }
  const constants = new Map<string, Constant>();
  if (artifacts.weightSpecs && artifacts.weightData) {
    const decoded = tf.io.decodeWeights(artifacts.weightData, artifacts.weightSpecs);
    for (const [name, tensor] of Object.entries(decoded)) {
      const data = tensor.dataSync();
      constants.set(name, {
        values: tensor.dtype === 'int32' ? Int32Array.from(data) : Float32Array.from(data),
        dims: tensor.shape,
      });
      tensor.dispose();
    }
  }
  const g = new GraphBuilder();
  const used = new Set<string>();
  for (const node of nodes) for (const i of node.input ?? []) used.add(ref(i.replace(/^\^/, '')));
  for (const node of nodes) g.reserve(node.name);

  const inputs: onnx.IValueInfoProto[] = [];
  const emitted = new Map<string, string>();
  const constOf = (name: string): Constant => {
    const c = constants.get(ref(name));
    if (!c) throw new OnnxExportUnsupported(`"${name}" is computed, not a constant`);
    return c;
  };
  /** The ONNX value of a TF input: constants become initializers on first use. */
  const value = (input: string): string => {
    const name = ref(input);
    const known = emitted.get(name);
    if (known) return known;
    const c = constants.get(name);
    if (!c) return name;
    const init =
      c.values instanceof Int32Array
        ? g.initializer(name, OnnxType.INT32, c.dims, c.values)
        : g.floats(name, c.values, c.dims);
    emitted.set(name, init);
    return init;
  };
  const int64Const = (base: string, values: readonly number[]): string => g.int64s(base, values);
  const activation = (x: string, op: string, node: GraphNode, out?: string): string => {
    const outputs = out ? [out] : 1;
    const one = (type: string, attrs: onnx.IAttributeProto[] = []) =>
      g.node(type, [x], { attrs, outputs, name: node.name })[0];
    switch (op) {
      case 'Relu':
      case 'Sigmoid':
      case 'Tanh':
      case 'Elu':
      case 'Exp':
      case 'Log':
      case 'Sqrt':
      case 'Neg':
      case 'Abs':
      case 'Identity':
        return one(op);
      case 'Relu6':
        return g.node('Clip', [x, g.floats('zero', [0], []), g.floats('six', [6], [])], {
          outputs,
          name: node.name,
        })[0];
      case 'LeakyRelu':
        return one('LeakyRelu', [
          attr.float('alpha', node.attr?.alpha?.f ?? node.attr?.leakyrelu_alpha?.f ?? 0.2),
        ]);
      case 'Softmax':
        return one('Softmax', [attr.int('axis', -1)]);
      case 'Rsqrt':
        return g.node('Reciprocal', [g.op('Sqrt', [x])], { outputs, name: node.name })[0];
      case 'Square':
        return g.node('Mul', [x, x], { outputs, name: node.name })[0];
      default:
        throw new OnnxExportUnsupported(`graph op ${op}`);
    }
  };
  /** BiasAdd and an activation fused into a _Fused* op. */
  const fused = (x: string, node: GraphNode, extra: string[], out: string): string => {
    const ops = texts(node.attr?.fused_ops);
    let current = x;
    let at = 0;
    ops.forEach((op, k) => {
      const last = k === ops.length - 1;
      if (op === 'BiasAdd' || op === 'Add' || op === 'Prelu') {
        current = g.node(op === 'Prelu' ? 'PRelu' : 'Add', [current, value(extra[at++])], {
          outputs: last ? [out] : 1,
          name: node.name,
        })[0];
      } else current = activation(current, op, node, last ? out : undefined);
    });
    if (ops.length === 0) g.node('Identity', [current], { outputs: [out], name: node.name });
    return out;
  };
  const nchw = (x: string) => g.op('Transpose', [x], [attr.ints('perm', NHWC_TO_NCHW)]);
  const padding = (node: GraphNode, kernel: number[]): onnx.IAttributeProto[] => {
    const p = text(node.attr?.padding);
    if (p === 'VALID') return [attr.string('auto_pad', 'VALID')];
    if (p === 'SAME') return [attr.string('auto_pad', 'SAME_UPPER')];
    if (p === 'EXPLICIT') {
      const e = ints(node.attr?.explicit_paddings);
      return [attr.ints('pads', [e[2], e[4], e[3], e[5]])];
    }
    throw new OnnxExportUnsupported(`padding "${p}" of ${node.op} (kernel ${kernel.join('x')})`);
  };
  const checkNhwc = (node: GraphNode) => {
    const format = text(node.attr?.data_format) || 'NHWC';
    if (format !== 'NHWC') throw new OnnxExportUnsupported(`${node.op} with data_format ${format}`);
  };

  for (const node of nodes) {
    const inputsOf = (node.input ?? []).filter((i) => !i.startsWith('^'));
    const out = node.name;
    const x = () => value(inputsOf[0]);
    switch (node.op) {
      case 'Const':
      case 'NoOp':
        break;
      case 'Placeholder': {
        const dims = (node.attr?.shape?.shape?.dim ?? []).map((d, i) => {
          const size = Number(d.size ?? -1);
          return size >= 0 ? size : i === 0 ? 'batch' : `${node.name}_${i}`;
        });
        const dtype = node.attr?.dtype?.type === 'DT_INT32' ? OnnxType.INT32 : OnnxType.FLOAT;
        inputs.push(tensorValueInfo(node.name, dtype, dims));
        break;
      }
      case 'Identity':
      case 'StopGradient':
        g.node('Identity', [x()], { outputs: [out], name: out });
        break;
      case 'Relu':
      case 'Relu6':
      case 'Sigmoid':
      case 'Tanh':
      case 'Elu':
      case 'LeakyRelu':
      case 'Softmax':
      case 'Exp':
      case 'Log':
      case 'Sqrt':
      case 'Rsqrt':
      case 'Square':
      case 'Neg':
      case 'Abs':
        activation(x(), node.op, node, out);
        break;
      case 'Prelu':
        g.node('PRelu', [x(), value(inputsOf[1])], { outputs: [out], name: out });
        break;
      case 'AddN':
        g.node('Sum', inputsOf.map(value), { outputs: [out], name: out });
        break;
      case 'Cast': {
        const to = CAST_TYPES[node.attr?.DstT?.type ?? ''];
        if (to === undefined)
          throw new OnnxExportUnsupported(`Cast to ${node.attr?.DstT?.type} (node ${out})`);
        g.node('Cast', [x()], { attrs: [attr.int('to', to)], outputs: [out], name: out });
        break;
      }
      case 'ResizeBilinear': {
        const a = node.attr ?? {};
        const mode = a.align_corners?.b
          ? 'align_corners'
          : a.half_pixel_centers?.b
            ? 'half_pixel'
            : 'asymmetric';
        const size = Array.from(constOf(inputsOf[1]).values);
        const xn = nchw(x());
        // Sizes: the input's own batch and channels, then the new height and width.
        const batchAndChannels = g.op('Slice', [
          g.op('Shape', [xn]),
          int64Const(`${out}/from`, [0]),
          int64Const(`${out}/to`, [2]),
        ]);
        const sizes = g.op(
          'Concat',
          [batchAndChannels, int64Const(`${out}/size`, size)],
          [attr.int('axis', 0)],
        );
        const resized = g.op(
          'Resize',
          [xn, '', '', sizes],
          [attr.string('mode', 'linear'), attr.string('coordinate_transformation_mode', mode)],
          node.name,
        );
        g.node('Transpose', [resized], {
          attrs: [attr.ints('perm', NCHW_TO_NHWC)],
          outputs: [out],
          name: out,
        });
        break;
      }
      case 'BiasAdd':
        checkNhwc(node);
        g.node('Add', [x(), value(inputsOf[1])], { outputs: [out], name: out });
        break;
      case 'Add':
      case 'AddV2':
      case 'Sub':
      case 'Mul':
      case 'RealDiv':
      case 'Maximum':
      case 'Minimum': {
        const type = {
          Add: 'Add',
          AddV2: 'Add',
          Sub: 'Sub',
          Mul: 'Mul',
          RealDiv: 'Div',
          Maximum: 'Max',
          Minimum: 'Min',
        }[node.op] as string;
        g.node(type, [x(), value(inputsOf[1])], { outputs: [out], name: out });
        break;
      }
      case 'MatMul':
      case '_FusedMatMul': {
        let a = x();
        let b = value(inputsOf[1]);
        if (node.attr?.transpose_a?.b) a = g.op('Transpose', [a], [attr.ints('perm', [1, 0])]);
        if (node.attr?.transpose_b?.b) b = g.op('Transpose', [b], [attr.ints('perm', [1, 0])]);
        const mm = g.op('MatMul', [a, b], [], out);
        if (node.op === 'MatMul') g.node('Identity', [mm], { outputs: [out], name: out });
        else fused(mm, node, inputsOf.slice(2), out);
        break;
      }
      case 'Conv2D':
      case '_FusedConv2D':
      case 'DepthwiseConv2dNative':
      case 'FusedDepthwiseConv2dNative': {
        checkNhwc(node);
        const w = constOf(inputsOf[1]);
        const [kh, kw, cin, cout] = w.dims;
        const depthwise = node.op.includes('Depthwise');
        // HWIO -> OIHW; depthwise HW C M -> (C*M) 1 H W with one group per input channel.
        const oihw = transposeData(Float32Array.from(w.values), w.dims, [3, 2, 0, 1]);
        const weights = depthwise
          ? g.floats(
              `${node.name}/kernel`,
              transposeData(Float32Array.from(w.values), w.dims, [2, 3, 0, 1]),
              [cin * cout, 1, kh, kw],
            )
          : g.floats(`${node.name}/kernel`, oihw, [cout, cin, kh, kw]);
        const strides = ints(node.attr?.strides);
        const dilations = ints(node.attr?.dilations);
        const attrs = [
          attr.ints('kernel_shape', [kh, kw]),
          attr.ints('strides', strides.length === 4 ? [strides[1], strides[2]] : [1, 1]),
          attr.ints('dilations', dilations.length === 4 ? [dilations[1], dilations[2]] : [1, 1]),
          ...padding(node, [kh, kw]),
        ];
        if (depthwise) attrs.push(attr.int('group', cin));
        const conv = g.op('Conv', [nchw(x()), weights], attrs, node.name);
        const back = g.op('Transpose', [conv], [attr.ints('perm', NCHW_TO_NHWC)]);
        if (node.op.startsWith('Fused') || node.op.startsWith('_Fused'))
          fused(back, node, inputsOf.slice(2), out);
        else g.node('Identity', [back], { outputs: [out], name: out });
        break;
      }
      case 'Conv2DBackpropInput': {
        // A transposed convolution: (output sizes [N, H, W, C], filter [KH, KW, C, Cin], x).
        checkNhwc(node);
        const [, outH, outW] = Array.from(constOf(inputsOf[0]).values);
        const w = constOf(inputsOf[1]);
        const [kh, kw, cout, cin] = w.dims;
        const s = ints(node.attr?.strides);
        const [sh, sw] = s.length === 4 ? [s[1], s[2]] : [1, 1];
        const mode = text(node.attr?.padding);
        if (mode !== 'SAME' && mode !== 'VALID')
          throw new OnnxExportUnsupported(`${node.op} with padding ${mode}`);
        if (ints(node.attr?.dilations).some((d) => d !== 1))
          throw new OnnxExportUnsupported(`${node.op} with dilations`);
        // The input's size is the forward convolution's output size from the output's.
        const inSize = (m: number, k: number, st: number) =>
          mode === 'SAME' ? Math.ceil(m / st) : Math.floor((m - k) / st) + 1;
        const padH = transposedConvPads(inSize(outH, kh, sh), outH, kh, sh, mode === 'SAME');
        const padW = transposedConvPads(inSize(outW, kw, sw), outW, kw, sw, mode === 'SAME');
        if (!padH || !padW) throw new OnnxExportUnsupported(`${node.op} to ${outH}x${outW}`);
        const weights = g.floats(
          `${node.name}/kernel`,
          transposeData(Float32Array.from(w.values), w.dims, [3, 2, 0, 1]),
          [cin, cout, kh, kw],
        );
        const y = g.op(
          'ConvTranspose',
          [nchw(value(inputsOf[2])), weights],
          [
            attr.ints('kernel_shape', [kh, kw]),
            attr.ints('strides', [sh, sw]),
            attr.ints('pads', [padH.before, padW.before, padH.after, padW.after]),
            attr.ints('output_padding', [padH.extra, padW.extra]),
          ],
          node.name,
        );
        g.node('Transpose', [y], { attrs: [attr.ints('perm', NCHW_TO_NHWC)], outputs: [out], name: out });
        break;
      }
      case 'DepthToSpace': {
        checkNhwc(node);
        // TensorFlow's channel order (block row, block column, channel) is ONNX's DCR.
        const moved = g.op(
          'DepthToSpace',
          [nchw(x())],
          [attr.int('blocksize', Number(node.attr?.block_size?.i ?? 0)), attr.string('mode', 'DCR')],
          node.name,
        );
        g.node('Transpose', [moved], { attrs: [attr.ints('perm', NCHW_TO_NHWC)], outputs: [out], name: out });
        break;
      }
      case 'GatherV2': {
        const axis = Number(constOf(inputsOf[2]).values[0]);
        if (Number(node.attr?.batch_dims?.i ?? 0) !== 0)
          throw new OnnxExportUnsupported(`${node.op} with batch_dims`);
        g.node('Gather', [x(), value(inputsOf[1])], {
          attrs: [attr.int('axis', axis)],
          outputs: [out],
          name: out,
        });
        break;
      }
      case 'MaxPool':
      case 'AvgPool': {
        checkNhwc(node);
        const k = ints(node.attr?.ksize);
        const s = ints(node.attr?.strides);
        const pool = g.op(
          node.op === 'MaxPool' ? 'MaxPool' : 'AveragePool',
          [nchw(x())],
          [attr.ints('kernel_shape', [k[1], k[2]]), attr.ints('strides', [s[1], s[2]]), ...padding(node, k)],
          node.name,
        );
        g.node('Transpose', [pool], { attrs: [attr.ints('perm', NCHW_TO_NHWC)], outputs: [out], name: out });
        break;
      }
      case 'Reshape': {
        const shape = constOf(inputsOf[1]);
        g.node('Reshape', [x(), int64Const(`${out}/shape`, Array.from(shape.values))], {
          outputs: [out],
          name: out,
        });
        break;
      }
      case 'Squeeze': {
        const axes = ints(node.attr?.squeeze_dims);
        const args = axes.length > 0 ? [x(), int64Const(`${out}/axes`, axes)] : [x()];
        g.node('Squeeze', args, { outputs: [out], name: out });
        break;
      }
      case 'ExpandDims': {
        const axis = Array.from(constOf(inputsOf[1]).values);
        g.node('Unsqueeze', [x(), int64Const(`${out}/axes`, axis)], { outputs: [out], name: out });
        break;
      }
      case 'Transpose': {
        const perm = Array.from(constOf(inputsOf[1]).values);
        g.node('Transpose', [x()], { attrs: [attr.ints('perm', perm)], outputs: [out], name: out });
        break;
      }
      case 'ConcatV2': {
        const axis = Number(constOf(inputsOf[inputsOf.length - 1]).values[0]);
        g.node('Concat', inputsOf.slice(0, -1).map(value), {
          attrs: [attr.int('axis', axis)],
          outputs: [out],
          name: out,
        });
        break;
      }
      case 'Pad':
      case 'PadV2': {
        const p = Array.from(constOf(inputsOf[1]).values);
        const rank = p.length / 2;
        const pads = [
          ...Array.from({ length: rank }, (_, i) => p[2 * i]),
          ...Array.from({ length: rank }, (_, i) => p[2 * i + 1]),
        ];
        const args = [x(), int64Const(`${out}/pads`, pads)];
        if (node.op === 'PadV2') args.push(value(inputsOf[2]));
        g.node('Pad', args, { outputs: [out], name: out });
        break;
      }
      case 'Mean':
      case 'Max':
      case 'Sum': {
        const axes = Array.from(constOf(inputsOf[1]).values);
        const type = { Mean: 'ReduceMean', Max: 'ReduceMax', Sum: 'ReduceSum' }[node.op] as string;
        const keep = node.attr?.keep_dims?.b ? 1 : 0;
        if (type === 'ReduceSum') {
          g.node(type, [x(), int64Const(`${out}/axes`, axes)], {
            attrs: [attr.int('keepdims', keep)],
            outputs: [out],
            name: out,
          });
        } else {
          g.node(type, [x()], {
            attrs: [attr.ints('axes', axes), attr.int('keepdims', keep)],
            outputs: [out],
            name: out,
          });
        }
        break;
      }
      case 'StridedSlice': {
        const a = node.attr ?? {};
        if (Number(a.ellipsis_mask?.i ?? 0) || Number(a.new_axis_mask?.i ?? 0)) {
          throw new OnnxExportUnsupported('StridedSlice with ellipsis or new axis masks');
        }
        const begin = Array.from(constOf(inputsOf[1]).values);
        const end = Array.from(constOf(inputsOf[2]).values);
        const strides = Array.from(constOf(inputsOf[3]).values);
        const beginMask = Number(a.begin_mask?.i ?? 0);
        const endMask = Number(a.end_mask?.i ?? 0);
        const shrink = Number(a.shrink_axis_mask?.i ?? 0);
        const big = 2 ** 31 - 1;
        const starts = begin.map((b, i) => (beginMask & (1 << i) ? (strides[i] > 0 ? 0 : big) : b));
        const ends = end.map((e, i) =>
          shrink & (1 << i) ? begin[i] + 1 : endMask & (1 << i) ? (strides[i] > 0 ? big : -big) : e,
        );
        const axes = begin.map((_, i) => i);
        const sliced = g.op(
          'Slice',
          [
            x(),
            int64Const(`${out}/starts`, starts),
            int64Const(`${out}/ends`, ends),
            int64Const(`${out}/axes`, axes),
            int64Const(`${out}/steps`, strides),
          ],
          [],
          out,
        );
        const squeeze = axes.filter((i) => shrink & (1 << i));
        if (squeeze.length > 0)
          g.node('Squeeze', [sliced, int64Const(`${out}/squeeze`, squeeze)], { outputs: [out], name: out });
        else g.node('Identity', [sliced], { outputs: [out], name: out });
        break;
      }
      default:
        throw new OnnxExportUnsupported(`graph op ${node.op} (node ${node.name})`);
    }
  }

  const signature = artifacts.signature as { outputs?: Record<string, { name?: string }> } | undefined;
  const outputNames = signature?.outputs
    ? Object.values(signature.outputs).map((o) => ref(o.name ?? ''))
    : nodes.filter((n) => !used.has(n.name) && n.op !== 'Const' && n.op !== 'NoOp').map((n) => n.name);
  if (inputs.length === 0 || outputNames.length === 0)
    throw new OnnxExportUnsupported('a graph without inputs or outputs');
  const graph: onnx.IGraphProto = {
    name: 'graph_model',
    node: g.nodes,
    initializer: g.initializers,
    input: inputs,
    output: outputNames.map((name) => ({ name, type: { tensorType: { elemType: OnnxType.FLOAT } } })),
  };
  return onnx.ModelProto.encode(
    onnx.ModelProto.create({
      irVersion: ONNX_EXPORT_IR_VERSION,
      opsetImport: [{ domain: '', version: ONNX_EXPORT_OPSET }],
      producerName: 'node-red-contrib-edge-ai',
      graph,
    }),
  ).finish();
}
