import type * as OrtTypes from 'onnxruntime-web';
import type { onnx } from '../onnx-proto';
import type { IoQuantization } from './io-quantization';
import { createOrtSession, loadOrt, type OrtRuntimeName, type OrtSession } from './ort-session';

/**
 * How ONNX Runtime computes a quantized (QDQ) model. 'integer': it fuses each
 * DequantizeLinear -> op -> QuantizeLinear group into one integer kernel (QLinearConv, QGemm...).
 * 'float': the quantize steps stay where they are (so every tensor still holds the same
 * quantized values) but the op between them runs in float. On an x86 CPU without VNNI the float
 * kernels can be the faster ones for tiny layers (one input channel, a few outputs), where the
 * integer kernels' packing and requantization cost more than the arithmetic they save.
 */
export type QdqKernels = 'integer' | 'float';

/** ONNX Runtime's session option that turns the QDQ fusion off. */
const NO_QDQ_FUSION = { session: { disable_quant_qdq: '1' } };

/** Session options that run a quantized model on these kernels. */
export function qdqSessionOptions(
  kernels: QdqKernels,
  base: OrtTypes.InferenceSession.SessionOptions = {},
): OrtTypes.InferenceSession.SessionOptions {
  return kernels === 'float' ? { ...base, extra: NO_QDQ_FUSION } : base;
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
  const open = (kernels: QdqKernels) =>
    createOrtSession(bytes, runtime, qdqSessionOptions(kernels, sessionOptions));
  if (choice !== 'auto') {
    return {
      session: await open(choice),
      kernels: choice,
      note: `quantized ops run on ${choice === 'integer' ? 'integer' : 'float'} kernels (as configured)`,
    };
  }
  const integer = await open('integer');
  let float: OrtSession;
  try {
    float = await open('float');
  } catch {
    return { session: integer, kernels: 'integer', note: 'quantized ops run on integer kernels' };
  }
  try {
    const ort = loadOrt(runtime)!;
    const feeds = zeroTensors(ort, integer.session, ioQuant);
    const times: Record<QdqKernels, number[]> = { integer: [], float: [] };
    const sessions: Record<QdqKernels, OrtSession> = { integer, float };
    const runOnce = async (k: QdqKernels) => {
      const t0 = performance.now();
      const out = await sessions[k].session.run(feeds);
      const ms = performance.now() - t0;
      for (const v of Object.values(out)) (v as { dispose?: () => void }).dispose?.();
      return ms;
    };
    for (let i = 0; i < TIMING.warmup; i++) for (const k of ['integer', 'float'] as const) await runOnce(k);
    const start = performance.now();
    const ratios: number[] = [];
    for (let i = 0; i < TIMING.maxRuns; i++) {
      // Paired rounds: a burst of load on the machine falls on both runs of a round alike.
      const order = i % 2 ? (['float', 'integer'] as const) : (['integer', 'float'] as const);
      for (const k of order) times[k].push(await runOnce(k));
      ratios.push(times.float[i] / times.integer[i]);
      if (i + 1 >= TIMING.minRuns && performance.now() - start > TIMING.budgetMs) break;
    }
    const ms = { integer: median(times.integer), float: median(times.float) };
    const kernels: QdqKernels = median(ratios) < TIMING.floatMargin ? 'float' : 'integer';
    const note =
      kernels === 'float'
        ? `quantized ops run on float kernels between their quantize steps: ${us(ms.float)} per run against ${us(ms.integer)} on integer kernels, measured at load`
        : `quantized ops run on integer kernels: ${us(ms.integer)} per run against ${us(ms.float)} on float kernels, measured at load`;
    await (kernels === 'float' ? integer : float).release();
    return { session: sessions[kernels], kernels, note };
  } catch (err) {
    await float.release().catch(() => undefined);
    await integer.release().catch(() => undefined);
    throw err;
  }
}
