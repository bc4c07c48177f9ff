/**
 * tfjs-layers calls a few chained tensor methods (e.g. the orthogonal initializer of LSTM/GRU
 * layers: `r.flatten().stridedSlice(...)`, `.sign()`, `.transpose()`, `.reshape()`), which the
 * tfjs-core Node bundle does not register. This adds just those, as the full tfjs package does.
 */
import * as tf from '@tensorflow/tfjs-core';

type Method = (this: tf.Tensor, ...args: never[]) => tf.Tensor;

const METHODS: Record<string, Method> = {
  flatten(this: tf.Tensor) {
    return tf.reshape(this, [this.size]);
  },
  reshape(this: tf.Tensor, shape: number[]) {
    return tf.reshape(this, shape);
  },
  transpose(this: tf.Tensor, perm?: number[]) {
    return tf.transpose(this, perm);
  },
  sign(this: tf.Tensor) {
    return tf.sign(this);
  },
  stridedSlice(this: tf.Tensor, begin: number[], end: number[], strides?: number[]) {
    return tf.stridedSlice(this, begin, end, strides);
  },
};

export function registerChainedOps(): void {
  const proto = tf.Tensor.prototype as unknown as Record<string, Method | undefined>;
  for (const [name, method] of Object.entries(METHODS)) {
    if (typeof proto[name] !== 'function') proto[name] = method;
  }
}
