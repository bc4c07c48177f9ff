/**
 * Adam with each variable's update in one pass: tf.train.adam's arithmetic (moments, bias
 * correction by the accumulated beta powers, epsilon added after the square root), but as one
 * loop over the variable's data instead of about ten TF.js kernels a variable. On the cpu and wasm
 * backends the loop (on wasm: a SIMD heap kernel) reads gradient and weights where they lie (on
 * the wasm heap, no copies),
 * writes the new weights to fresh data, and updates the moments in place when nothing else shares
 * them (else, e.g. for moments handed to setWeights, it writes fresh tensors and assigns them).
 * Other backends take tf.train.adam's own path. State (moments, iterations) is the same as
 * tf.train.adam's, so getWeights/setWeights and saving carry over unchanged.
 */
import * as tf from '@tensorflow/tfjs-core';
import { heapKernelsFor } from './heap-kernels';

type GradientList = Parameters<tf.AdamOptimizer['applyGradients']>[0];
type NamedTensors = Parameters<tf.Optimizer['setWeights']>[0];

type Moment = { originalName: string; variable: tf.Variable };

/** The AdamOptimizer fields that TF.js declares private. */
interface AdamState {
  accBeta1: tf.Variable;
  accBeta2: tf.Variable;
  accumulatedFirstMoment: Moment[];
  accumulatedSecondMoment: Moment[];
}

interface DataBackend {
  refCount(dataId: object): number;
  /** wasm: a view of the tensor's data on the heap. */
  typedArrayFromHeap?(info: tf.TensorInfo): Float32Array;
  /** wasm: the module whose memory holds the heap. */
  wasm?: { asm?: { memory?: WebAssembly.Memory } };
  /** wasm: new data on the heap. */
  makeOutput?(shape: number[], dtype: 'float32'): tf.TensorInfo;
  /** cpu: the tensor's values. */
  data?: { get(dataId: object): { values?: unknown } | undefined };
}

/** Backends whose tensor data the loop can read and write where it lies. */
const IN_PLACE_BACKENDS = new Set(['cpu', 'wasm']);

/** The tensor's float32 data where it lies (no copy), or undefined when unreachable. */
function viewOf(backend: DataBackend, t: tf.Tensor): Float32Array | undefined {
  if (t.dtype !== 'float32') return undefined;
  if (backend.typedArrayFromHeap) return backend.typedArrayFromHeap(t);
  const values = backend.data?.get(t.dataId)?.values;
  return values instanceof Float32Array ? values : undefined;
}

/** The view when this tensor alone holds the data (so writing it changes nothing else). */
function ownView(backend: DataBackend, t: tf.Tensor): Float32Array | undefined {
  return backend.refCount(t.dataId) === 1 ? viewOf(backend, t) : undefined;
}

/**
 * One Adam step over arrays: m, v and x updated from g (out* may alias their inputs).
 * `c1`/`c2` are 1 - beta1^t and 1 - beta2^t.
 */
export function adamStep(
  g: Float32Array,
  x: Float32Array,
  m: Float32Array,
  v: Float32Array,
  outX: Float32Array,
  outM: Float32Array,
  outV: Float32Array,
  p: { lr: number; beta1: number; beta2: number; epsilon: number; c1: number; c2: number },
): void {
  const { beta1, beta2, epsilon, c1, c2 } = p;
  const b1 = 1 - beta1;
  const b2 = 1 - beta2;
  const lr = -p.lr;
  const n = g.length;
  for (let i = 0; i < n; i++) {
    const gi = g[i];
    const mi = m[i] * beta1 + gi * b1;
    const vi = v[i] * beta2 + gi * gi * b2;
    outM[i] = mi;
    outV[i] = vi;
    outX[i] = x[i] + (mi / c1 / (Math.sqrt(vi / c2) + epsilon)) * lr;
  }
}

export class FusedAdamOptimizer extends tf.AdamOptimizer {
  /** beta1^t and beta2^t (float32, as TF.js accumulates them), once read from its variables. */
  private acc: [number, number] | undefined;

  constructor(learningRate: number, beta1 = 0.9, beta2 = 0.999, epsilon?: number) {
    super(learningRate, beta1, beta2, epsilon);
  }

  private get state(): AdamState {
    return this as unknown as AdamState;
  }

  override applyGradients(variableGradients: GradientList): void {
    const backendName = tf.getBackend();
    if (!IN_PLACE_BACKENDS.has(backendName)) {
      this.syncAccumulators();
      super.applyGradients(variableGradients);
      return;
    }
    const backend = tf.backend() as unknown as DataBackend;
    const s = this.state;
    this.acc ??= [s.accBeta1.dataSync()[0], s.accBeta2.dataSync()[0]];
    const names = Array.isArray(variableGradients)
      ? variableGradients.map((v) => v.name)
      : Object.keys(variableGradients);
    const params = {
      lr: this.learningRate,
      beta1: this.beta1,
      beta2: this.beta2,
      epsilon: this.epsilon,
      c1: 1 - this.acc[0],
      c2: 1 - this.acc[1],
    };
    names.forEach((name, i) => {
      const value = tf.engine().registeredVariables[name];
      s.accumulatedFirstMoment[i] ??= {
        originalName: `${name}/m`,
        variable: tf.tidy(() => tf.zerosLike(value).variable(false)),
      };
      s.accumulatedSecondMoment[i] ??= {
        originalName: `${name}/v`,
        variable: tf.tidy(() => tf.zerosLike(value).variable(false)),
      };
      const gradient = Array.isArray(variableGradients)
        ? variableGradients[i].tensor
        : variableGradients[name];
      if (gradient == null) return;
      const m = s.accumulatedFirstMoment[i].variable;
      const v = s.accumulatedSecondMoment[i].variable;
      this.update(backend, gradient, value, m, v, params);
    });
    this.acc = [Math.fround(this.acc[0] * this.beta1), Math.fround(this.acc[1] * this.beta2)];
    this.incrementIterations();
  }

  private update(
    backend: DataBackend,
    gradient: tf.Tensor,
    x: tf.Variable,
    m: tf.Variable,
    v: tf.Variable,
    params: Parameters<typeof adamStep>[7],
  ): void {
    // The variable always gets fresh data: the wasm backend caches packed weights by data id
    // (XNNPACK matrix multiplications), so weights changed in place would go unseen there. The
    // moments are only read here and are updated in place when nothing shares them.
    const onHeap = backend.makeOutput && backend.typedArrayFromHeap;
    const fresh = onHeap ? backend.makeOutput!(x.shape, 'float32') : undefined;
    // Views on the wasm heap stay valid only until the next allocation: take them after it, use
    // them at once.
    const ownM = ownView(backend, m);
    const ownV = ownView(backend, v);
    const g = viewOf(backend, gradient) ?? (gradient.dataSync() as Float32Array);
    const values = viewOf(backend, x) ?? (x.dataSync() as Float32Array);
    const outX = fresh ? backend.typedArrayFromHeap!(fresh) : new Float32Array(values.length);
    const kernels = fresh && heapKernelsFor(backend.wasm?.asm?.memory);
    if (kernels && ownM && ownV && g.byteOffset && values.byteOffset) {
      // Four at a time on the heap, the last few here.
      const n = g.length;
      const body = n & ~3;
      const f = Math.fround;
      kernels.adam(
        g.byteOffset,
        values.byteOffset,
        ownM.byteOffset,
        ownV.byteOffset,
        outX.byteOffset,
        body,
        params.beta1,
        f(1 - params.beta1),
        params.beta2,
        f(1 - params.beta2),
        params.c1,
        params.c2,
        -params.lr,
        params.epsilon,
      );
      if (body < n) {
        const [gt, xt, mt, vt, ot] = [g, values, ownM, ownV, outX].map((a) => a.subarray(body));
        adamStep(gt, xt, mt, vt, ot, mt, vt, params);
      }
    } else if (ownM && ownV) {
      adamStep(g, values, ownM, ownV, outX, ownM, ownV, params);
    } else {
      const n = values.length;
      const [outM, outV] = [new Float32Array(n), new Float32Array(n)];
      adamStep(
        g,
        values,
        m.dataSync() as Float32Array,
        v.dataSync() as Float32Array,
        outX,
        outM,
        outV,
        params,
      );
      tf.tidy(() => {
        m.assign(tf.tensor(outM, m.shape));
        v.assign(tf.tensor(outV, v.shape));
      });
    }
    const next = fresh ? tf.engine().makeTensorFromTensorInfo(fresh) : tf.tensor(outX, x.shape);
    x.assign(next);
    next.dispose();
  }

  /** Writes the accumulated beta powers back to TF.js's variables before its own path runs. */
  private syncAccumulators(): void {
    if (!this.acc) return;
    const [a1, a2] = this.acc;
    tf.tidy(() => {
      this.state.accBeta1.assign(tf.scalar(a1));
      this.state.accBeta2.assign(tf.scalar(a2));
    });
    this.acc = undefined;
  }

  override async setWeights(weightValues: NamedTensors): Promise<void> {
    await super.setWeights(weightValues);
    this.acc = undefined;
  }

  override async getWeights(): Promise<NamedTensors> {
    this.syncAccumulators();
    return super.getWeights();
  }
}

/** tf.train.adam's signature and defaults, with the fused update. */
export function fusedAdam(
  learningRate = 0.001,
  beta1 = 0.9,
  beta2 = 0.999,
  epsilon?: number,
): FusedAdamOptimizer {
  return new FusedAdamOptimizer(learningRate, beta1, beta2, epsilon);
}
