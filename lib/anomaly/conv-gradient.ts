/**
 * The TF.js WASM backend has no Conv2DBackpropFilter kernel, so Conv1D/Conv2D layers cannot
 * train there. It does have Conv3DBackpropFilterV2: a 2-D convolution is a 3-D one with a
 * depth of 1, so the filter gradient can be computed through it on the same backend.
 */

import { tf } from '../models/tfjs';

type Pair = [number, number];

function pair(v: number | number[]): Pair {
  return typeof v === 'number' ? [v, v] : [v[0], v[1] ?? v[0]];
}

/** dL/dfilter of an NHWC conv2d computed with the 3-D filter-gradient kernel. */
export function conv2dFilterGradientVia3d(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  strides: number | number[],
  pad: 'same' | 'valid',
): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, ci] = x.shape;
    const [, oh, ow, co] = dy.shape;
    const [sh, sw] = pair(strides);
    const x5 = tf.reshape(x, [b, 1, h, w, ci]);
    const dy5 = tf.reshape(dy, [b, 1, oh, ow, co]);
    const g = tf.engine().runKernel(
      'Conv3DBackpropFilterV2',
      { x: x5, dy: dy5 },
      { strides: [1, sh, sw], pad, filterShape: [1, ...filterShape] },
    ) as tf.Tensor;
    return tf.reshape(g, filterShape);
  });
}

/**
 * Makes Conv2D trainable on `backend` when it lacks the filter-gradient kernel. Replaces the
 * Conv2D gradient of this thread's TF.js (the input gradient is unchanged); returns whether it
 * did. Only the worker threads that train call this.
 */
export function ensureConv2dFilterGradient(backend: string): boolean {
  if (tf.getKernel('Conv2DBackpropFilter', backend)) return false;
  if (!tf.getKernel('Conv3DBackpropFilterV2', backend)) return false;
  const original = tf.getGradient('Conv2D');
  if (!original) return false;
  tf.registerGradient({
    kernelName: 'Conv2D',
    inputsToSave: ['x', 'filter'],
    gradFunc: (dy, saved, attrs) => {
      const grads = original.gradFunc(dy, saved, attrs);
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      const { strides, pad, dataFormat, dilations } = attrs as unknown as {
        strides: number | number[];
        pad: unknown;
        dataFormat?: string;
        dilations?: number | number[];
      };
      const plain =
        (pad === 'same' || pad === 'valid') &&
        (dataFormat ?? 'NHWC') === 'NHWC' &&
        pair(dilations ?? 1).every((d) => d === 1) &&
        tf.getBackend() === backend;
      if (!plain) return grads;
      return {
        ...grads,
        filter: () =>
          conv2dFilterGradientVia3d(
            x,
            dy as tf.Tensor4D,
            filter.shape as [number, number, number, number],
            strides,
            pad as 'same' | 'valid',
          ),
      };
    },
  });
  return true;
}
