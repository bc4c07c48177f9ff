import * as tf from '@tensorflow/tfjs-core';

/**
 * The Node build of tfjs-core does not register the chained tensor methods (`t.flatten()`, ...)
 * that the union package adds, yet tfjs-layers' Orthogonal initializer (the default recurrent
 * initializer of LSTM, GRU and SimpleRNN) calls five of them. Adds those, as tfjs-core defines them.
 */
type ChainedTensor = tf.Tensor & Record<string, unknown>;

const chained: Record<string, (this: tf.Tensor, ...args: never[]) => tf.Tensor> = {
  flatten() {
    return tf.reshape(this, [this.size]);
  },
  reshape(shape: number[]) {
    return tf.reshape(this, shape);
  },
  sign() {
    return tf.sign(this);
  },
  transpose(perm?: number[]) {
    return tf.transpose(this, perm);
  },
  stridedSlice(begin: number[], end: number[], strides?: number[]) {
    return tf.stridedSlice(this, begin, end, strides);
  },
};

const proto = tf.Tensor.prototype as unknown as ChainedTensor;
for (const [name, fn] of Object.entries(chained)) {
  if (typeof proto[name] !== 'function') {
    Object.defineProperty(proto, name, {
      configurable: true,
      writable: true,
      value: function (this: tf.Tensor, ...args: never[]) {
        this.throwIfDisposed();
        return fn.apply(this, args);
      },
    });
  }
}
