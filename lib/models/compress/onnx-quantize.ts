import fs from 'node:fs';
import { onnx } from '../onnx-proto';
import {
  attr,
  attrInt,
  attrFloat,
  GraphBuilder,
  OnnxType,
  tensorDims,
  tensorFloats,
  tensorValueInfo,
  transposeData,
} from '../convert/onnx-graph';
import { createOrtSession, type OrtRuntimeName } from '../runtime/ort-session';
import { sizeOf } from '../../preprocess/shape';

/** Operators whose weights can be quantized to int8. */
export type QuantizableOp = 'MatMul' | 'Gemm' | 'Conv' | 'LSTM';

export interface OnnxInt8Options {
  /** Which operators to quantize (default: all of MatMul, Gemm, Conv, LSTM). */
  ops?: readonly QuantizableOp[];
  /** One scale per output channel (default) or one per weight tensor. */
  perChannel?: boolean;
  /**
   * 7-bit weights. Needed on x86 CPUs without VNNI, where ONNX Runtime's u8 x s8 kernels add
   * products in saturating 16-bit pairs; ARM boards and VNNI CPUs do not need it. Default: what
   * this machine's CPU needs (int8WeightsNeedReducedRange).
   */
  reduceRange?: boolean;
  /** Weights with fewer elements stay float (their int8 form would save nothing). Default 16. */
  minWeightElements?: number;
  /**
   * Activation ranges measured by calibrateOnnxActivations. With them, Conv layers are
   * quantized statically (QuantizeLinear/DequantizeLinear pairs that ORT fuses into QLinearConv).
   */
  activationRanges?: ActivationRanges;
  /**
   * Conv layers without activation ranges: 'float' (default) keeps them float, because ORT's
   * dynamic ConvInteger path is slower than its float Conv; 'dynamic' quantizes them anyway.
   */
  convWithoutRanges?: 'float' | 'dynamic';
}

/** Observed [min, max] of float tensors by name. */
export type ActivationRanges = Record<string, { min: number; max: number }>;

export interface OnnxInt8Report {
  bytesBefore: number;
  bytesAfter: number;
  /** bytesAfter / bytesBefore */
  sizeRatio: number;
  /** Weight elements now stored as int8, and those left in float. */
  weightsInt8: number;
  weightsFloat: number;
  quantized: { node: string; op: string; as: string; weights: number }[];
  skipped: { node: string; op: string; reason: string }[];
  /** Weights were quantized to 7 bits (see OnnxInt8Options.reduceRange). */
  reduceRange: boolean;
}

/**
 * Whether int8 weights must be 7-bit for ONNX Runtime to compute them exactly on this CPU: x86
 * without VNNI multiplies u8 x s8 with a saturating 16-bit sum of pairs (255 * 127 * 2 > 32767).
 */
export function int8WeightsNeedReducedRange(
  arch: string = process.arch,
  cpuFlags: readonly string[] | null = linuxCpuFlags(),
): boolean {
  if (arch !== 'x64' && arch !== 'ia32') return false;
  if (!cpuFlags) return true;
  return !cpuFlags.some((flag) => flag === 'avx512_vnni' || flag === 'avx_vnni' || flag === 'amx_int8');
}

function linuxCpuFlags(): string[] | null {
  try {
    const line = fs.readFileSync('/proc/cpuinfo', 'utf8').match(/^flags\s*:(.*)$/m);
    return line ? line[1].trim().split(/\s+/) : null;
  } catch {
    return null;
  }
}

const MS_DOMAIN = 'com.microsoft';
const MIN_OPSET = 11; // DynamicQuantizeLinear
const MIN_QDQ_OPSET = 13; // per-channel DequantizeLinear

interface QuantizedWeight {
  values: Int8Array;
  /** One per channel along `axis`, or a single one. */
  scales: Float32Array;
}

/**
 * Symmetric int8 quantization (zero point 0) of a float tensor, per channel along `axis`
 * or per tensor when axis is null.
 */
export function quantizeSymmetric(
  data: Float32Array,
  dims: readonly number[],
  axis: number | null,
  reduceRange = false,
): QuantizedWeight {
  const qmax = reduceRange ? 63 : 127;
  const channels = axis == null ? 1 : dims[axis];
  const inner = axis == null ? data.length : sizeOf(dims.slice(axis + 1));
  const channelOf = (i: number) => (axis == null ? 0 : Math.floor(i / inner) % channels);
  const maxAbs = new Float32Array(channels);
  for (let i = 0; i < data.length; i++) {
    const c = channelOf(i);
    const a = Math.abs(data[i]);
    if (a > maxAbs[c]) maxAbs[c] = a;
  }
  const scales = maxAbs.map((m) => (m > 0 ? m / qmax : 1));
  const values = new Int8Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const q = Math.round(data[i] / scales[channelOf(i)]);
    values[i] = Math.max(-qmax, Math.min(qmax, q));
  }
  return { values, scales };
}

/** Activation quantization (uint8, asymmetric, range widened to include 0) as ORT's static quantizer does it. */
function activationParams(range: { min: number; max: number }): { scale: number; zeroPoint: number } {
  const min = Math.min(0, range.min);
  const max = Math.max(0, range.max);
  if (!(max > min)) return { scale: 1, zeroPoint: 0 };
  const scale = (max - min) / 255;
  return { scale, zeroPoint: Math.max(0, Math.min(255, Math.round(-min / scale))) };
}

interface ConvPlan {
  node: onnx.INodeProto;
  /** The float input to quantize. */
  input: string;
  /** Where the int8 result is re-quantized: the Conv's output, or that of the Relu right after it. */
  output: string;
}

/** Convs with constant weights, and the tensors whose ranges static quantization needs. */
function planStaticConvs(graph: onnx.IGraphProto): ConvPlan[] {
  const initializers = new Set((graph.initializer ?? []).map((t) => t.name));
  const graphOutputs = new Set((graph.output ?? []).map((v) => v.name));
  const consumers = new Map<string, onnx.INodeProto[]>();
  for (const n of graph.node ?? []) {
    for (const i of n.input ?? []) consumers.set(i, [...(consumers.get(i) ?? []), n]);
  }
  const plans: ConvPlan[] = [];
  for (const node of graph.node ?? []) {
    if (node.opType !== 'Conv' || (node.domain && node.domain !== 'ai.onnx')) continue;
    const [x, w] = node.input ?? [];
    if (!initializers.has(w)) continue;
    const y = node.output?.[0] ?? '';
    const next = consumers.get(y) ?? [];
    // A Relu between Conv and the re-quantization is absorbed by ORT (zero point = 0).
    const output =
      next.length === 1 && next[0].opType === 'Relu' && !graphOutputs.has(y) ? next[0].output![0] : y;
    plans.push({ node, input: x, output });
  }
  return plans;
}

/**
 * Int8 quantization of an ONNX model for ONNX Runtime, in the forms ORT's own quantizers
 * produce, so that ORT computes in int8:
 * - MatMul / Gemm: dynamic — int8 weights, activations quantized at run time
 *   (DynamicQuantizeLinear -> MatMulInteger -> scale), which ORT fuses into DynamicQuantizeMatMul;
 * - LSTM: com.microsoft DynamicQuantizeLSTM with int8 weights;
 * - Conv: static QDQ when activation ranges are given (ORT fuses it into QLinearConv),
 *   otherwise float, or dynamic ConvInteger on request.
 * GRU and plain RNN stay float: ORT has no integer kernels for them.
 */
export function quantizeOnnxInt8(
  modelBytes: Uint8Array,
  options: OnnxInt8Options = {},
): { model: Uint8Array; report: OnnxInt8Report } {
  return new OnnxInt8Quantizer(modelBytes, options).run();
}

/** One quantization run over one model: the state shared by the node rewrites. */
class OnnxInt8Quantizer {
  private readonly ops: Set<string>;
  private readonly perChannel: boolean;
  private readonly reduceRange: boolean;
  private readonly minElements: number;
  private readonly ranges: ActivationRanges;
  private readonly model: onnx.ModelProto;
  private readonly graph: onnx.GraphProto;
  private readonly opset: number;
  private readonly initializers: Map<string, onnx.ITensorProto>;
  private readonly g = new GraphBuilder();
  private readonly report: OnnxInt8Report;
  /** Static (QDQ) convolutions: those whose input and output ranges were measured. */
  private readonly staticConvs = new Map<onnx.INodeProto, ConvPlan>();
  /** Tensors to store as uint8 (a QuantizeLinear/DequantizeLinear pair after their producer). */
  private readonly requantize = new Map<string, { min: number; max: number }>();
  /** One run-time quantization per activation, shared by every consumer. */
  private readonly dynamicQuantized = new Map<string, { q: string; scale: string; zeroPoint: string }>();
  private readonly staticInputs = new Map<string, string>();

  constructor(
    modelBytes: Uint8Array,
    private readonly options: OnnxInt8Options,
  ) {
    this.ops = new Set<string>(options.ops ?? ['MatMul', 'Gemm', 'Conv', 'LSTM']);
    this.perChannel = options.perChannel ?? true;
    this.reduceRange = options.reduceRange ?? int8WeightsNeedReducedRange();
    this.minElements = options.minWeightElements ?? 16;
    this.ranges = options.activationRanges ?? {};

    this.model = onnx.ModelProto.decode(modelBytes);
    if (!this.model.graph) throw new Error('the ONNX model has no graph');
    const graph = this.model.graph as onnx.GraphProto;
    this.graph = graph;
    const defaultOpset = this.model.opsetImport.find((o) => !o.domain || o.domain === 'ai.onnx');
    this.opset = Number(defaultOpset?.version ?? 0);
    if (this.opset < MIN_OPSET) {
      throw new Error(
        `int8 quantization needs opset ${MIN_OPSET} or later (model has ${this.opset || 'none'})`,
      );
    }
    this.initializers = new Map(graph.initializer.map((t) => [t.name ?? '', t]));
    this.g.reserve(
      ...graph.input.map((v) => v.name ?? ''),
      ...graph.output.map((v) => v.name ?? ''),
      ...graph.initializer.map((t) => t.name ?? ''),
      ...graph.node.flatMap((n) => [...(n.output ?? []), n.name ?? '']),
    );
    this.report = {
      bytesBefore: modelBytes.byteLength,
      bytesAfter: 0,
      sizeRatio: 1,
      weightsInt8: 0,
      weightsFloat: 0,
      quantized: [],
      skipped: [],
      reduceRange: this.reduceRange,
    };
    this.planStaticConvs();
  }

  run(): { model: Uint8Array; report: OnnxInt8Report } {
    const newNodes = this.rewriteNodes();
    this.keepUsedInitializers(newNodes);
    const model = this.model;
    if (
      newNodes.some((n) => n.domain === MS_DOMAIN) &&
      !model.opsetImport.some((o) => o.domain === MS_DOMAIN)
    ) {
      model.opsetImport.push(onnx.OperatorSetIdProto.create({ domain: MS_DOMAIN, version: 1 }));
    }
    const bytes = onnx.ModelProto.encode(model).finish();
    const report = this.report;
    report.bytesAfter = bytes.byteLength;
    report.sizeRatio = report.bytesAfter / report.bytesBefore;
    return { model: bytes, report };
  }

  private floatInit(name: string | undefined): onnx.ITensorProto | undefined {
    const t = name ? this.initializers.get(name) : undefined;
    return t && t.dataType === OnnxType.FLOAT ? t : undefined;
  }

  private planStaticConvs(): void {
    if (!this.ops.has('Conv') || this.opset < MIN_QDQ_OPSET) return;
    for (const plan of planStaticConvs(this.graph)) {
      const [, w, b] = plan.node.input ?? [];
      const weights = this.floatInit(w);
      const usable = weights && tensorFloats(weights).length >= this.minElements && (!b || this.floatInit(b));
      if (usable && this.ranges[plan.input] && this.ranges[plan.output])
        this.staticConvs.set(plan.node, plan);
    }
    for (const plan of this.staticConvs.values()) this.requantize.set(plan.output, this.ranges[plan.output]);
  }

  /** Every node, replaced where it can be; outputs stored as uint8 get their Q -> DQ pair. */
  private rewriteNodes(): onnx.INodeProto[] {
    const { g, report, requantize } = this;
    const newNodes: onnx.INodeProto[] = [];
    for (const node of this.graph.node) {
      const op = node.opType ?? '';
      const name = node.name || `${op}_${node.output?.[0] ?? ''}`;
      const start = g.nodes.length;
      let emitted: onnx.INodeProto[] = [node];
      if (this.ops.has(op) && (!node.domain || node.domain === 'ai.onnx')) {
        const reason = this.replace(node, name);
        if (reason) {
          report.skipped.push({ node: name, op, reason });
          g.nodes.length = start; // drop anything half-built
        } else {
          emitted = g.nodes.slice(start);
        }
      } else if (op === 'GRU' || op === 'RNN') {
        report.skipped.push({ node: name, op, reason: `${op} has no integer kernel in ONNX Runtime` });
      } else if (
        op === 'MaxPool' &&
        requantize.has(node.input?.[0] ?? '') &&
        (node.output ?? []).length === 1
      ) {
        // Same scale after max-pooling: ORT then pools the uint8 values directly.
        requantize.set(node.output![0], requantize.get(node.input![0])!);
      }
      // Outputs to store as uint8: the producer writes a float twin, then Q -> DQ restores the name.
      for (const output of node.output ?? []) {
        const range = requantize.get(output);
        if (!range) continue;
        const floatName = g.uniqueName(`${output}_float`);
        emitted = emitted.map((n) =>
          n.output?.includes(output)
            ? { ...n, output: n.output.map((o) => (o === output ? floatName : o)) }
            : n,
        );
        const before = g.nodes.length;
        this.quantizeStatic(floatName, activationParams(range), output);
        emitted.push(...g.nodes.slice(before));
      }
      newNodes.push(...emitted);
    }
    return newNodes;
  }

  /** Drops float weights nothing reads any more; keeps the new int8 ones. */
  private keepUsedInitializers(newNodes: onnx.INodeProto[]): void {
    const { graph, initializers } = this;
    const used = new Set(newNodes.flatMap((n) => n.input ?? []));
    for (const o of graph.output) used.add(o.name ?? '');
    const kept = [...graph.initializer, ...this.g.initializers].filter((t) => used.has(t.name ?? ''));
    for (const t of kept) {
      // The model's own float weights left as they were (not the new scales).
      if (t.dataType === OnnxType.FLOAT && initializers.get(t.name ?? '') === t) {
        this.report.weightsFloat += sizeOf(tensorDims(t));
      }
    }
    const keptNames = new Set(kept.map((t) => t.name));
    // Older models also list their initializers as graph inputs: drop the ones removed.
    graph.input = graph.input.filter((v) => !initializers.has(v.name ?? '') || keptNames.has(v.name));
    graph.node = newNodes;
    graph.initializer = kept as onnx.TensorProto[];
  }

  private quantizeDynamic(name: string): { q: string; scale: string; zeroPoint: string } {
    let out = this.dynamicQuantized.get(name);
    if (!out) {
      const [q, scale, zeroPoint] = this.g.node('DynamicQuantizeLinear', [name], {
        outputs: 3,
        name: `${name}_quant`,
      });
      out = { q, scale, zeroPoint };
      this.dynamicQuantized.set(name, out);
    }
    return out;
  }

  /** Q -> DQ of a float tensor with fixed parameters; writes `output`. */
  private quantizeStatic(input: string, params: { scale: number; zeroPoint: number }, output: string): void {
    const g = this.g;
    const scale = g.floats(`${output}_scale`, [params.scale], []);
    const zeroPoint = g.initializer(
      `${output}_zero_point`,
      OnnxType.UINT8,
      [],
      Uint8Array.of(params.zeroPoint),
    );
    const q = g.op('QuantizeLinear', [input, scale, zeroPoint], [], output);
    g.node('DequantizeLinear', [q, scale, zeroPoint], { outputs: [output], name: output });
  }

  private int8Weight(base: string, values: Int8Array, dims: readonly number[]): string {
    return this.g.initializer(`${base}_quantized`, OnnxType.INT8, dims, values);
  }

  private int8Zero(base: string, dims: readonly number[] = []): string {
    return this.g.initializer(`${base}_zero_point`, OnnxType.INT8, dims, new Int8Array(sizeOf(dims)));
  }

  /** int32 products -> float, times (activation scale x weight scales), as ORT's quantizer lays it out. */
  private rescale(
    base: string,
    int32: string,
    activationScale: string,
    weightScale: string,
    output: string,
  ): void {
    const g = this.g;
    const asFloat = g.op('Cast', [int32], [attr.int('to', OnnxType.FLOAT)], base);
    const scale = g.op('Mul', [activationScale, weightScale], [], base);
    g.node('Mul', [asFloat, scale], { outputs: [output], name: base });
  }

  private counted(name: string, op: string, as: string, weights: number): undefined {
    this.report.quantized.push({ node: name, op, as, weights });
    this.report.weightsInt8 += weights;
    return undefined;
  }

  /** Adds the replacement of one node to the graph; returns a reason when the node stays as it is. */
  private replace(node: onnx.INodeProto, name: string): string | undefined {
    const op = node.opType ?? '';
    if (op === 'MatMul' || op === 'Gemm') return this.replaceMatMul(node, name, op);
    if (op === 'Conv') return this.replaceConv(node, name);
    if (op === 'LSTM') return this.replaceLstm(node, name);
    return `${op} has no integer kernel in ONNX Runtime`;
  }

  private replaceMatMul(node: onnx.INodeProto, name: string, op: string): string | undefined {
    const g = this.g;
    const inputs = node.input ?? [];
    const outputs = node.output ?? [];
    const w = this.floatInit(inputs[1]);
    if (!w) return 'the weight is not a float constant';
    let dims = tensorDims(w);
    let data = tensorFloats(w);
    if (dims.length !== 2) return `weight of rank ${dims.length}`;
    if (data.length < this.minElements) return `only ${data.length} weights`;
    let alpha = 1;
    let bias: string | undefined;
    if (op === 'Gemm') {
      if (attrInt(node, 'transA', 0) !== 0) return 'transposed A';
      if (attrInt(node, 'transB', 0) !== 0) {
        data = transposeData(data, dims, [1, 0]);
        dims = [dims[1], dims[0]];
      }
      alpha = attrFloat(node, 'alpha', 1);
      const beta = attrFloat(node, 'beta', 1);
      if (inputs[2]) {
        const c = this.floatInit(inputs[2]);
        if (beta === 1) bias = inputs[2];
        else if (c)
          bias = g.floats(
            `${inputs[2]}_scaled`,
            tensorFloats(c).map((v) => v * beta),
            tensorDims(c),
          );
        else bias = g.op('Mul', [inputs[2], g.floats('beta', [beta], [])], [], name);
      }
    }
    const q = quantizeSymmetric(data, dims, this.perChannel ? 1 : null, this.reduceRange);
    const a = this.quantizeDynamic(inputs[0]);
    const wq = this.int8Weight(inputs[1], q.values, dims);
    const product = g.op('MatMulInteger', [a.q, wq, a.zeroPoint, this.int8Zero(inputs[1])], [], name);
    const scales = alpha === 1 ? q.scales : q.scales.map((v) => v * alpha);
    const scaleName = g.floats(`${inputs[1]}_scale`, scales, this.perChannel ? [scales.length] : []);
    const scaled = bias ? g.uniqueName(`${name}_scaled`) : outputs[0];
    this.rescale(name, product, a.scale, scaleName, scaled);
    if (bias) g.node('Add', [scaled, bias], { outputs: [outputs[0]], name });
    return this.counted(name, op, 'MatMulInteger', data.length);
  }

  private replaceConv(node: onnx.INodeProto, name: string): string | undefined {
    const inputs = node.input ?? [];
    const w = this.floatInit(inputs[1]);
    if (!w) return 'the weight is not a float constant';
    const dims = tensorDims(w);
    const data = tensorFloats(w);
    if (data.length < this.minElements) return `only ${data.length} weights`;
    const q = quantizeSymmetric(data, dims, this.perChannel ? 0 : null, this.reduceRange);
    const wq = this.int8Weight(inputs[1], q.values, dims);
    const plan = this.staticConvs.get(node);
    if (plan) return this.staticConv(node, name, plan, q, wq, dims, data.length);
    if (this.options.convWithoutRanges !== 'dynamic') {
      return "no activation ranges for static quantization (ORT's dynamic ConvInteger is slower than float Conv)";
    }
    return this.dynamicConv(node, name, q, wq, dims, data.length);
  }

  /** Static QDQ: DQ(x) and DQ(w), DQ(bias as int32) -> Conv -> (Relu) -> Q -> DQ = QLinearConv. */
  private staticConv(
    node: onnx.INodeProto,
    name: string,
    plan: ConvPlan,
    q: { scales: Float32Array },
    wq: string,
    dims: number[],
    count: number,
  ): string | undefined {
    const g = this.g;
    const inputs = node.input ?? [];
    const channels = dims[0];
    const inParams = activationParams(this.ranges[plan.input]);
    let x = plan.input;
    if (!this.requantize.has(x)) {
      x = this.staticInputs.get(plan.input) ?? g.uniqueName(`${plan.input}_dequantized`);
      if (!this.staticInputs.has(plan.input)) this.quantizeStatic(plan.input, inParams, x);
      this.staticInputs.set(plan.input, x);
    }
    const axisAttrs = this.perChannel ? [attr.int('axis', 0)] : [];
    const scaleDims = this.perChannel ? [channels] : [];
    const w = g.op(
      'DequantizeLinear',
      [wq, g.floats(`${inputs[1]}_scale`, q.scales, scaleDims), this.int8Zero(inputs[1], scaleDims)],
      axisAttrs,
      name,
    );
    const convInputs = [x, w];
    const b = inputs[2] ? this.floatInit(inputs[2]) : undefined;
    if (inputs[2] && !b) return 'the bias is not a float constant';
    if (b) {
      const bias = tensorFloats(b);
      const biasScales = bias.map((_, m) => inParams.scale * q.scales[this.perChannel ? m : 0]);
      const bq = Int32Array.from(bias, (v, m) => Math.round(v / biasScales[m]));
      const biasDims = [channels];
      convInputs.push(
        g.op(
          'DequantizeLinear',
          [
            g.initializer(`${inputs[2]}_quantized`, OnnxType.INT32, biasDims, bq),
            g.floats(`${inputs[2]}_scale`, biasScales, biasDims),
            g.initializer(`${inputs[2]}_zero_point`, OnnxType.INT32, biasDims, new Int32Array(channels)),
          ],
          [attr.int('axis', 0)],
          name,
        ),
      );
    }
    g.node('Conv', convInputs, { attrs: node.attribute ?? [], outputs: [...(node.output ?? [])], name });
    return this.counted(name, 'Conv', 'QLinearConv (QDQ)', count);
  }

  private dynamicConv(
    node: onnx.INodeProto,
    name: string,
    q: { scales: Float32Array },
    wq: string,
    dims: number[],
    count: number,
  ): string | undefined {
    const g = this.g;
    const inputs = node.input ?? [];
    const outputs = node.output ?? [];
    const x = this.quantizeDynamic(inputs[0]);
    const product = g.node('ConvInteger', [x.q, wq, x.zeroPoint, this.int8Zero(inputs[1])], {
      attrs: node.attribute ?? [],
      name,
    })[0];
    // Per-channel scales and the bias broadcast over [N, M, spatial...].
    const channelDims = [dims[0], ...new Array<number>(dims.length - 2).fill(1)];
    const scaleName = g.floats(`${inputs[1]}_scale`, q.scales, this.perChannel ? channelDims : []);
    if (!inputs[2]) {
      this.rescale(name, product, x.scale, scaleName, outputs[0]);
    } else {
      const b = this.floatInit(inputs[2]);
      const scaled = g.uniqueName(`${name}_scaled`);
      this.rescale(name, product, x.scale, scaleName, scaled);
      const bias = b
        ? g.floats(`${inputs[2]}_channels`, tensorFloats(b), channelDims)
        : g.op('Reshape', [inputs[2], g.int64s('shape', channelDims)], [], name);
      g.node('Add', [scaled, bias], { outputs: [outputs[0]], name });
    }
    return this.counted(name, 'Conv', 'ConvInteger', count);
  }

  private replaceLstm(node: onnx.INodeProto, name: string): string | undefined {
    const inputs = node.input ?? [];
    const w = this.floatInit(inputs[1]);
    const r = this.floatInit(inputs[2]);
    if (!w || !r) return 'the weights are not float constants';
    if (attrInt(node, 'layout', 0) !== 0) return 'batch-major layout';
    const qw = this.quantizeGates(w);
    const qr = this.quantizeGates(r);
    const rest = Array.from({ length: 5 }, (_, i) => inputs[3 + i] ?? '');
    this.g.node(
      'DynamicQuantizeLSTM',
      [inputs[0], qw.values, qr.values, ...rest, qw.scale, qw.zeroPoint, qr.scale, qr.zeroPoint],
      { attrs: node.attribute ?? [], outputs: [...(node.output ?? [])], name, domain: MS_DOMAIN },
    );
    return this.counted(name, 'LSTM', 'DynamicQuantizeLSTM', qw.count + qr.count);
  }

  /** [dirs, 4H, in] quantized per gate row, stored transposed as [dirs, in, 4H]. */
  private quantizeGates(t: onnx.ITensorProto): {
    values: string;
    scale: string;
    zeroPoint: string;
    count: number;
  } {
    const [dirs, rows, cols] = tensorDims(t);
    const data = tensorFloats(t);
    const q = quantizeSymmetric(data, [dirs * rows, cols], this.perChannel ? 0 : null, this.reduceRange);
    const scales = this.perChannel ? q.scales : new Float32Array(dirs).fill(q.scales[0]);
    const transposed = new Int8Array(data.length);
    for (let d = 0; d < dirs; d++) {
      for (let i = 0; i < rows; i++) {
        for (let j = 0; j < cols; j++)
          transposed[(d * cols + j) * rows + i] = q.values[(d * rows + i) * cols + j];
      }
    }
    const scaleDims = this.perChannel ? [dirs, rows] : [dirs];
    return {
      values: this.int8Weight(t.name ?? 'W', transposed, [dirs, cols, rows]),
      scale: this.g.floats(`${t.name}_scale`, scales, scaleDims),
      zeroPoint: this.int8Zero(t.name ?? 'W', scaleDims),
      count: data.length,
    };
  }
}

/** A float32 input batch: flat data and its full shape (batch first). */
export interface OnnxInput {
  data: Float32Array;
  dims: number[];
}

/**
 * Runs the float model on calibration inputs and records the [min, max] of every tensor that
 * static Conv quantization needs (each Conv's input and output). The session is released.
 */
export async function calibrateOnnxActivations(
  modelBytes: Uint8Array,
  samples: readonly OnnxInput[],
  options: { runtime?: OrtRuntimeName | 'auto' } = {},
): Promise<ActivationRanges> {
  if (samples.length === 0) throw new Error('calibration needs at least one input');
  const model = onnx.ModelProto.decode(modelBytes);
  const graph = model.graph as onnx.GraphProto;
  const graphInputs = new Set(graph.input.map((v) => v.name));
  const wanted = new Set(planStaticConvs(graph).flatMap((p) => [p.input, p.output]));
  const ranges: ActivationRanges = {};
  const observe = (name: string, data: Float32Array) => {
    const r = (ranges[name] ??= { min: Infinity, max: -Infinity });
    for (let i = 0; i < data.length; i++) {
      const v = data[i];
      if (v < r.min) r.min = v;
      if (v > r.max) r.max = v;
    }
  };
  const internal = [...wanted].filter((n) => !graphInputs.has(n));
  const present = new Set(graph.output.map((v) => v.name));
  for (const name of internal) {
    if (!present.has(name))
      graph.output.push(tensorValueInfo(name, OnnxType.FLOAT, []) as onnx.ValueInfoProto);
  }
  // The probe outputs have no declared shape.
  for (const o of graph.output) if (internal.includes(o.name ?? '')) o.type!.tensorType!.shape = null;
  const session = await createOrtSession(onnx.ModelProto.encode(model).finish(), options.runtime ?? 'auto');
  try {
    for (const sample of samples) {
      for (const name of wanted) if (graphInputs.has(name)) observe(name, sample.data);
      const outputs = await session.runAll(sample.data, sample.dims);
      for (const name of internal) observe(name, outputs[name].data);
    }
  } finally {
    await session.release();
  }
  return ranges;
}

/** Calibrates on `samples`, then quantizes with Conv layers in static QDQ form. */
export async function quantizeOnnxInt8Calibrated(
  modelBytes: Uint8Array,
  samples: readonly OnnxInput[],
  options: OnnxInt8Options & { runtime?: OrtRuntimeName | 'auto' } = {},
): Promise<{ model: Uint8Array; report: OnnxInt8Report }> {
  const activationRanges = await calibrateOnnxActivations(modelBytes, samples, options);
  return quantizeOnnxInt8(modelBytes, { ...options, activationRanges });
}

export interface OnnxComparison {
  runtime: OrtRuntimeName;
  maxAbsDiff: number;
  meanAbsDiff: number;
  /** Median latency of one run of the whole input, in ms. */
  referenceMs: number;
  candidateMs: number;
}

/**
 * Runs two ONNX models (e.g. float and int8) on the same float32 input and compares their
 * outputs and median latencies. Sessions are released before returning.
 */
export async function compareOnnxModels(
  reference: Uint8Array,
  candidate: Uint8Array,
  input: OnnxInput,
  options: { runtime?: OrtRuntimeName | 'auto'; repeats?: number } = {},
): Promise<OnnxComparison> {
  const repeats = Math.max(1, options.repeats ?? 5);
  const timeRuns = async (bytes: Uint8Array, runtime: OrtRuntimeName | 'auto') => {
    const session = await createOrtSession(bytes, runtime);
    try {
      const first = await session.run(input.data, input.dims); // warm-up, and the output
      const times: number[] = [];
      for (let i = 0; i < repeats; i++) {
        const t0 = performance.now();
        await session.run(input.data, input.dims);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      return { runtime: session.runtime, data: first.data, ms: times[Math.floor(times.length / 2)] };
    } finally {
      await session.release();
    }
  };
  const ref = await timeRuns(reference, options.runtime ?? 'auto');
  const cand = await timeRuns(candidate, ref.runtime);
  if (ref.data.length !== cand.data.length) {
    throw new Error(`outputs differ in size: ${ref.data.length} vs ${cand.data.length}`);
  }
  let max = 0;
  let sum = 0;
  for (let i = 0; i < ref.data.length; i++) {
    const d = Math.abs(ref.data[i] - cand.data[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
    sum += d;
  }
  return {
    runtime: ref.runtime,
    maxAbsDiff: max,
    meanAbsDiff: sum / Math.max(1, ref.data.length),
    referenceMs: ref.ms,
    candidateMs: cand.ms,
  };
}
