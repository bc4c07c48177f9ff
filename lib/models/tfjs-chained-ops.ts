import * as tf from '@tensorflow/tfjs-core';

/**
 * The Node build of tfjs-core leaves out the chained tensor methods (`t.flatten()`,
 * `t.reshape()`, ...), but tfjs-layers calls some of them, e.g. the Orthogonal initializer of
 * LSTM recurrent kernels. This installs them the way the tfjs union package does.
 */
const SAME_NAME_OPS = `
  abs acos acosh add all any argMax argMin asin asinh atan atan2 atanh avgPool batchToSpaceND
  batchNorm broadcastTo cast ceil clipByValue conv1d conv2d conv2dTranspose cos cosh cumprod cumsum
  depthToSpace depthwiseConv2d dilation2d div divNoNan dot elu equal erf euclideanNorm exp expandDims
  expm1 fft floor floorDiv gather greater greaterEqual ifft irfft isFinite isInf isNaN leakyRelu less
  lessEqual localResponseNormalization log log1p logSigmoid logSoftmax logSumExp logicalAnd
  logicalNot logicalOr logicalXor matMul max maxPool maximum mean min minimum mirrorPad mod mul neg
  norm notEqual oneHot onesLike pad pool pow prelu prod reciprocal relu relu6 reshape resizeBilinear
  resizeNearestNeighbor reverse rfft round rsqrt selu separableConv2d sigmoid sign sin sinh slice
  softmax softplus spaceToBatchND split sqrt square squaredDifference squeeze step stridedSlice sub
  sum tan tanh tile topk transpose unique unsortedSegmentSum unstack zerosLike
`
  .trim()
  .split(/\s+/);

type AnyFn = (...args: unknown[]) => unknown;

export function registerChainedOps(): void {
  const proto = tf.Tensor.prototype as unknown as Record<string, AnyFn | undefined>;
  const ops = tf as unknown as Record<string, AnyFn | undefined>;
  const define = (name: string, fn: AnyFn): void => {
    if (proto[name] === undefined) proto[name] = fn;
  };
  for (const name of SAME_NAME_OPS) {
    const op = ops[name];
    if (op)
      define(name, function (this: tf.Tensor, ...args: unknown[]) {
        return op(this, ...args);
      });
  }
  define('flatten', function (this: tf.Tensor) {
    return tf.reshape(this, [this.size]);
  });
  define('as1D', function (this: tf.Tensor) {
    return tf.reshape(this, [this.size]);
  });
  define('as2D', function (this: tf.Tensor, rows: unknown, columns: unknown) {
    return tf.reshape(this, [rows as number, columns as number]);
  });
  define('asScalar', function (this: tf.Tensor) {
    return tf.reshape(this, []);
  });
  define('reshapeAs', function (this: tf.Tensor, other: unknown) {
    return tf.reshape(this, (other as tf.Tensor).shape);
  });
  define('asType', function (this: tf.Tensor, dtype: unknown) {
    return tf.cast(this, dtype as tf.DataType);
  });
  define('toFloat', function (this: tf.Tensor) {
    return tf.cast(this, 'float32');
  });
  define('toInt', function (this: tf.Tensor) {
    return tf.cast(this, 'int32');
  });
  define('toBool', function (this: tf.Tensor) {
    return tf.cast(this, 'bool');
  });
  define('concat', function (this: tf.Tensor, others: unknown, axis: unknown) {
    const list = others instanceof tf.Tensor ? [others] : (others as tf.Tensor[]);
    return tf.concat([this, ...list], axis as number | undefined);
  });
  define('stack', function (this: tf.Tensor, others: unknown, axis: unknown) {
    const list = others instanceof tf.Tensor ? [others] : (others as tf.Tensor[]);
    return tf.stack([this, ...list], axis as number | undefined);
  });
}

registerChainedOps();
