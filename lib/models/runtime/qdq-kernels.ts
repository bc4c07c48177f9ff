import type * as OrtTypes from 'onnxruntime-web';
import { onnx } from '../onnx-proto';
import type { IoQuantization } from './io-quantization';
import { createOrtSession, loadOrt, type OrtRuntimeName, type OrtSession } from './ort-session';

/**
 * How ONNX Runtime computes a quantized (QDQ) model. 'integer': it fuses each
 * DequantizeLinear -> op -> QuantizeLinear group into one integer kernel (QLinearConv, QGemm...).
 * 'float': the quantize steps stay where they are (so every tensor still holds the same
 * quantized values) but the op between them runs in float. On an x86 CPU the float kernels can be
 * the faster ones for tiny layers (one input channel, a few outputs), where the integer kernels'
 * packing and requantization cost more than the arithmetic they save. 'mixed': convolutions on
 * float kernels (their weights dequantized once at load, see mixedQdqModel) and every other group
 * fused into its integer kernel: a keyword-spotting CNN whose one-channel convolution is slow as
 * QLinearConv keeps QGemm and QLinearSoftmax and saves the quantize steps around them.
 */
export type QdqKernels = 'integer' | 'float' | 'mixed';

/** ONNX Runtime's session option that turns the QDQ fusion off. */
const NO_QDQ_FUSION = { session: { disable_quant_qdq: '1' } };

/**
 * ONNX Runtime's optimizer that quantizes float weights of a Conv/Gemm fed by DequantizeLinear
 * (with its own scale, which changes the results): off for 'mixed', whose float weights are the
 * exact dequantized ones.
 */
const KEEP_FLOAT_WEIGHTS = { optimization: { disable_specified_optimizers: 'WeightBiasQuantization' } };

/** Session options that run a quantized model on these kernels ('mixed' also needs mixedQdqModel). */
export function qdqSessionOptions(
  kernels: QdqKernels,
  base: OrtTypes.InferenceSession.SessionOptions = {},
): OrtTypes.InferenceSession.SessionOptions {
  if (kernels === 'float') return { ...base, extra: NO_QDQ_FUSION };
  if (kernels === 'mixed') return { ...base, extra: KEEP_FLOAT_WEIGHTS };
  return base;
}

/** The numbers of an integer or float initializer (raw bytes or typed fields). */
function initializerValues(t: onnx.ITensorProto): ArrayLike<number> | undefined {
  const raw = t.rawData && t.rawData.byteLength > 0 ? t.rawData : undefined;
  const copy = (bytes: Uint8Array) =>
    bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  switch (t.dataType) {
    case onnx.TensorProto.DataType.INT8:
      return raw ? new Int8Array(copy(raw)) : Int8Array.from(t.int32Data ?? []);
    case onnx.TensorProto.DataType.UINT8:
      return raw ? new Uint8Array(copy(raw)) : Uint8Array.from(t.int32Data ?? []);
    case onnx.TensorProto.DataType.INT16:
      return raw ? new Int16Array(copy(raw)) : Int16Array.from(t.int32Data ?? []);
    case onnx.TensorProto.DataType.INT32:
      return raw ? new Int32Array(copy(raw)) : Int32Array.from(t.int32Data ?? []);
    case onnx.TensorProto.DataType.FLOAT:
      return raw ? new Float32Array(copy(raw)) : Float32Array.from(t.floatData ?? []);
    default:
      return undefined;
  }
}

/**
 * The 'mixed' form of a QDQ model: every Conv whose weights (and bias) come from a
 * DequantizeLinear of an initializer takes float initializers instead, computed as ONNX Runtime's
 * DequantizeLinear computes them (float(q - zero point) * scale in float32, so the same numbers),
 * and DequantizeLinear nodes left without a consumer are dropped. ONNX Runtime then runs those
 * convolutions on float kernels (between the same quantize steps) and fuses everything else.
 * Undefined when the model has no such Conv.
 */
export function mixedQdqModel(bytes: Uint8Array): Uint8Array | undefined {
  const model = onnx.ModelProto.decode(bytes);
  const graph = model.graph;
  if (!graph) return undefined;
  const initializers = (graph.initializer ??= []);
  const inits = new Map(initializers.map((t) => [t.name, t]));
  const producer = new Map<string, onnx.INodeProto>();
  for (const n of graph.node ?? []) for (const o of n.output ?? []) producer.set(o, n);
  const folded = new Map<string, string>();
  const fold = (value: string): string | undefined => {
    const have = folded.get(value);
    if (have) return have;
    const dq = producer.get(value);
    if (!dq || dq.opType !== 'DequantizeLinear' || (dq.domain ?? '') !== '') return undefined;
    const [q, scale, zero] = [dq.input?.[0], dq.input?.[1], dq.input?.[2]].map((n) =>
      n ? inits.get(n) : undefined,
    );
    if (!q || !scale) return undefined;
    const data = initializerValues(q);
    const scales = initializerValues(scale);
    const zeros = zero ? initializerValues(zero) : undefined;
    if (!data || !scales || scale.dataType !== onnx.TensorProto.DataType.FLOAT) return undefined;
    const dims = (q.dims ?? []).map(Number);
    const axisAttr = dq.attribute?.find((a) => a.name === 'axis');
    if (dq.attribute?.some((a) => a.name === 'block_size' && Number(a.i) !== 0)) return undefined;
    let axis = axisAttr?.i == null ? 1 : Number(axisAttr.i);
    if (axis < 0) axis += dims.length;
    const perAxis = scales.length > 1;
    if (perAxis && dims[axis] !== scales.length) return undefined;
    const inner = perAxis ? dims.slice(axis + 1).reduce((a, b) => a * b, 1) : 1;
    const out = new Float32Array(data.length);
    for (let i = 0; i < data.length; i++) {
      const c = perAxis ? Math.floor(i / inner) % scales.length : 0;
      const zp = zeros ? zeros[zeros.length > 1 ? c : 0] : 0;
      out[i] = Math.fround(Math.fround(data[i] - zp) * scales[c]);
    }
    let name = `${q.name}_dequantized`;
    while (inits.has(name)) name += '_';
    const tensor: onnx.ITensorProto = {
      name,
      dataType: onnx.TensorProto.DataType.FLOAT,
      dims: q.dims,
      rawData: new Uint8Array(out.buffer),
    };
    initializers.push(onnx.TensorProto.create(tensor));
    inits.set(name, tensor);
    folded.set(value, name);
    return name;
  };
  let changed = false;
  for (const node of graph.node ?? []) {
    if (node.opType !== 'Conv' || (node.domain ?? '') !== '' || !node.input) continue;
    const weights = fold(node.input[1]);
    if (!weights) continue;
    node.input[1] = weights;
    const bias = node.input[2] ? fold(node.input[2]) : undefined;
    if (bias) node.input[2] = bias;
    changed = true;
  }
  if (!changed) return undefined;
  const nodes = graph.node ?? [];
  const used = new Set<string>([
    ...nodes.flatMap((n) => n.input ?? []),
    ...(graph.output ?? []).map((o) => o.name ?? ''),
  ]);
  graph.node = nodes.filter(
    (n) => n.opType !== 'DequantizeLinear' || (n.output ?? []).some((o) => used.has(o)),
  );
  const read = new Set<string>([
    ...graph.node.flatMap((n) => n.input ?? []),
    ...(graph.output ?? []).map((o) => o.name ?? ''),
  ]);
  graph.initializer = initializers.filter((t) => read.has(t.name ?? ''));
  return onnx.ModelProto.encode(model).finish();
}

/** Whether a model holds QuantizeLinear/DequantizeLinear nodes. */
export function hasQdqNodes(model: onnx.IModelProto): boolean {
  return (model.graph?.node ?? []).some(
    (n) => n.opType === 'QuantizeLinear' || n.opType === 'DequantizeLinear',
  );
}

/**
 * Timing of the automatic choice: rounds of one run of each (the order alternating from round to
 * round), within a time budget. A tiny model gets up to maxRuns rounds, a large one at least
 * minRuns. Float kernels are kept only when the median of the per-round ratios float/integer is
 * below floatMargin: the integer kernels keep the weights as int8 (a quarter of the memory) and,
 * on a loaded machine, two kernel sets within a few percent of each other would otherwise be
 * picked by chance (a tiny dense model measured 1.00-1.05 apart).
 */
const TIMING = { warmup: 5, minRuns: 5, maxRuns: 200, budgetMs: 300, floatMargin: 0.9 };

/** Zero inputs for every model input (symbolic dimensions 1), in the types the session takes. */
function zeroTensors(
  ort: NonNullable<ReturnType<typeof loadOrt>>,
  session: OrtTypes.InferenceSession,
  ioQuant: Record<string, IoQuantization>,
): Record<string, OrtTypes.Tensor> {
  const feeds: Record<string, OrtTypes.Tensor> = {};
  session.inputNames.forEach((name, i) => {
    const meta = session.inputMetadata?.[i];
    const dims = meta && meta.isTensor ? meta.shape.map((d) => (typeof d === 'number' && d > 0 ? d : 1)) : [];
    const size = dims.reduce((a, b) => a * b, 1);
    const type: string = ioQuant[name]?.type ?? (meta && meta.isTensor ? meta.type : 'float32');
    switch (type) {
      case 'uint8':
        feeds[name] = new ort.Tensor('uint8', new Uint8Array(size), dims);
        break;
      case 'int8':
        feeds[name] = new ort.Tensor('int8', new Int8Array(size), dims);
        break;
      case 'int32':
        feeds[name] = new ort.Tensor('int32', new Int32Array(size), dims);
        break;
      case 'int64':
        feeds[name] = new ort.Tensor('int64', new BigInt64Array(size), dims);
        break;
      case 'float64':
        feeds[name] = new ort.Tensor('float64', new Float64Array(size), dims);
        break;
      case 'bool':
        feeds[name] = new ort.Tensor('bool', new Uint8Array(size), dims);
        break;
      default:
        feeds[name] = new ort.Tensor('float32', new Float32Array(size), dims);
    }
  });
  return feeds;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

const us = (ms: number) => `${Math.round(ms * 1000)} µs`;

/**
 * Opens a quantized model with the kernels asked for; 'auto' opens it both ways, times batch-1
 * runs of each side by side on this machine and keeps the faster (the integer kernels unless
 * the float ones are at least 10% faster, see TIMING). Returns the session and a note saying what was chosen.
 */
export async function chooseQdqKernels(
  bytes: Uint8Array,
  runtime: OrtRuntimeName,
  sessionOptions: OrtTypes.InferenceSession.SessionOptions,
  choice: QdqKernels | 'auto',
  ioQuant: Record<string, IoQuantization> = {},
): Promise<{ session: OrtSession; kernels: QdqKernels; note: string }> {
  let mixed: Uint8Array | undefined | null = null;
  const mixedBytes = () => (mixed === null ? (mixed = mixedQdqModel(bytes)) : mixed);
  const open = (kernels: QdqKernels) =>
    createOrtSession(
      kernels === 'mixed' ? (mixedBytes() ?? bytes) : bytes,
      runtime,
      qdqSessionOptions(kernels, sessionOptions),
    );
  if (choice !== 'auto') {
    return {
      session: await open(choice),
      kernels: choice,
      note: `quantized ops run on ${KERNEL_NAMES[choice]} (as configured)`,
    };
  }
  const sessions: Partial<Record<QdqKernels, OrtSession>> = { integer: await open('integer') };
  for (const k of ['float', 'mixed'] as const) {
    if (k === 'mixed' && !mixedBytes()) continue;
    try {
      sessions[k] = await open(k);
    } catch {
      // This runtime cannot open that form (e.g. an option it does not know): not a candidate.
    }
  }
  const kinds = Object.keys(sessions) as QdqKernels[];
  const release = async (keep?: QdqKernels) => {
    for (const k of kinds) if (k !== keep) await sessions[k]!.release().catch(() => undefined);
  };
  if (kinds.length === 1) {
    return {
      session: sessions.integer!,
      kernels: 'integer',
      note: `quantized ops run on ${KERNEL_NAMES.integer}`,
    };
  }
  try {
    const ort = loadOrt(runtime)!;
    const feeds = zeroTensors(ort, sessions.integer!.session, ioQuant);
    const times = Object.fromEntries(kinds.map((k) => [k, [] as number[]])) as Record<QdqKernels, number[]>;
    const runOnce = async (k: QdqKernels) => {
      const t0 = performance.now();
      const out = await sessions[k]!.session.run(feeds);
      const ms = performance.now() - t0;
      for (const v of Object.values(out)) (v as { dispose?: () => void }).dispose?.();
      return ms;
    };
    for (let i = 0; i < TIMING.warmup; i++) for (const k of kinds) await runOnce(k);
    const start = performance.now();
    const ratios = Object.fromEntries(kinds.map((k) => [k, [] as number[]])) as Record<QdqKernels, number[]>;
    for (let i = 0; i < TIMING.maxRuns; i++) {
      // Paired rounds (the order rotating): a burst of load on the machine falls on all alike.
      for (let j = 0; j < kinds.length; j++) {
        const k = kinds[(i + j) % kinds.length];
        times[k].push(await runOnce(k));
      }
      for (const k of kinds) ratios[k].push(times[k][i] / times.integer[i]);
      if (i + 1 >= TIMING.minRuns && performance.now() - start > TIMING.budgetMs) break;
    }
    let kernels: QdqKernels = 'integer';
    for (const k of kinds) {
      if (median(ratios[k]) < TIMING.floatMargin && median(ratios[k]) < median(ratios[kernels])) kernels = k;
    }
    const others = kinds
      .filter((k) => k !== kernels)
      .map((k) => `${us(median(times[k]))} on ${KERNEL_NAMES[k]}`)
      .join(', ');
    const note = `quantized ops run on ${KERNEL_NAMES[kernels]}: ${us(median(times[kernels]))} per run against ${others}, measured at load`;
    await release(kernels);
    return { session: sessions[kernels]!, kernels, note };
  } catch (err) {
    await release();
    throw err;
  }
}

const KERNEL_NAMES: Record<QdqKernels, string> = {
  integer: 'integer kernels',
  float: 'float kernels between their quantize steps',
  mixed: 'integer kernels with convolutions on float kernels',
};
