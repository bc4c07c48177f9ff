import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from '../../lib/models/runtime/tfjs';
import { createOrtSession, type OrtRuntimeName } from '../../lib/models/runtime/ort-session';

const L = tfl.layers;

/** The three reference models: Keras-doc MNIST CNN, LSTM(64) regressor over 50x6, dense autoencoder. */
export const referenceModels = {
  mnistCnn: (): tfl.LayersModel =>
    tfl.sequential({
      layers: [
        L.conv2d({ inputShape: [28, 28, 1], filters: 32, kernelSize: 3, activation: 'relu' }),
        L.maxPooling2d({ poolSize: 2 }),
        L.conv2d({ filters: 64, kernelSize: 3, activation: 'relu' }),
        L.maxPooling2d({ poolSize: 2 }),
        L.flatten(),
        L.dense({ units: 64, activation: 'relu' }),
        L.dense({ units: 10, activation: 'softmax' }),
      ],
    }),
  /**
   * TF.js' LSTM default recurrent activation is hardSigmoid; Keras' is sigmoid. The default
   * Orthogonal recurrent initializer takes seconds here (a QR decomposition in JS); tests that
   * overwrite the weights anyway pick a cheap one.
   */
  lstm: (
    recurrentActivation?: 'sigmoid' | 'hardSigmoid',
    recurrentInitializer?: 'glorotUniform',
  ): tfl.LayersModel =>
    tfl.sequential({
      layers: [
        L.lstm({ inputShape: [50, 6], units: 64, recurrentActivation, recurrentInitializer }),
        L.dense({ units: 1 }),
      ],
    }),
  autoencoder: (): tfl.LayersModel =>
    tfl.sequential({
      layers: [
        L.dense({ inputShape: [60], units: 32, activation: 'relu' }),
        L.dense({ units: 8, activation: 'relu' }),
        L.dense({ units: 32, activation: 'relu' }),
        L.dense({ units: 60 }),
      ],
    }),
};

/**
 * Replaces every weight with random values (normal * scale), so that biases, batch-norm
 * statistics and the like are not at their trivial initial values. Variances stay positive.
 */
export function randomizeWeights(model: tfl.LayersModel, scale = 0.3, seed = 1): void {
  // Seeded: accuracy bounds are then checked on the same weights in every run.
  const values = model.weights.map((w, i) =>
    tf.tidy(() => {
      const r = tf.randomNormal(w.shape as number[], 0, scale, 'float32', seed + i);
      return /moving_variance/.test(w.originalName) ? tf.add(tf.abs(r), 0.5) : r;
    }),
  );
  model.setWeights(values);
  tf.dispose(values);
}

/** A batch of random inputs for the model, flat, with its full shape. */
export function randomInput(
  model: tfl.LayersModel,
  batch: number,
  make: (n: number) => Float32Array = (n) =>
    tf.tidy(() => tf.randomNormal([n], 0, 1, 'float32', batch * 7919 + n).dataSync() as Float32Array),
): { data: Float32Array; dims: number[] } {
  const dims = [batch, ...(model.inputs[0].shape.slice(1) as number[])];
  return { data: make(dims.reduce((a, b) => a * b, 1)), dims };
}

export function predictTfjs(
  model: tfl.LayersModel,
  input: { data: Float32Array; dims: number[] },
): Float32Array {
  return predictTfjsWithShape(model, input).data;
}

export function predictTfjsWithShape(
  model: tfl.LayersModel,
  input: { data: Float32Array; dims: number[] },
): { data: Float32Array; dims: number[] } {
  return tf.tidy(() => {
    const y = model.predict(tf.tensor(input.data, input.dims)) as tf.Tensor;
    return { data: y.dataSync() as Float32Array, dims: y.shape.slice() };
  });
}

export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}

/** Runs ONNX bytes in one runtime (session released afterwards); returns output data and dims. */
export async function runOnnx(
  bytes: Uint8Array,
  runtime: OrtRuntimeName,
  input: { data: Float32Array; dims: number[] },
): Promise<{ data: Float32Array; dims: number[] }> {
  const session = await createOrtSession(bytes, runtime);
  try {
    return await session.run(input.data, input.dims);
  } finally {
    await session.release();
  }
}
