/**
 * The TF.js WASM backend has no Conv2DBackpropFilter kernel, so Conv1D/Conv2D layers cannot
 * train there. It does have Conv3DBackpropFilterV2: a 2-D convolution is a 3-D one with a
 * depth of 1, so the filter gradient can be computed through it on the same backend. Its
 * strided form gives wrong results in TF.js 4.22, so strides and 'same' padding are turned
 * into a stride-1 'valid' problem first: the input padded explicitly, the output gradient
 * spread out with zeros between its elements.
 */

import { tf } from '../models/tfjs';

type Pair = [number, number];

function pair(v: number | number[]): Pair {
  return typeof v === 'number' ? [v, v] : [v[0], v[1] ?? v[0]];
}

/** Padding before and after along one axis, as TensorFlow pads for 'same' and 'valid'. */
function padding(
  size: number,
  kernel: number,
  stride: number,
  pad: 'same' | 'valid',
): [number, number, number] {
  if (pad === 'valid') return [0, 0, Math.ceil((size - kernel + 1) / stride)];
  const out = Math.ceil(size / stride);
  const total = Math.max((out - 1) * stride + kernel - size, 0);
  const before = Math.floor(total / 2);
  return [before, total - before, out];
}

/** Inserts stride - 1 zeros between the elements of `t` along `axis` (1 = height, 2 = width). */
function spread(t: tf.Tensor4D, axis: 1 | 2, stride: number): tf.Tensor4D {
  if (stride === 1) return t;
  const [b, h, w, c] = t.shape;
  const n = axis === 1 ? h : w;
  const expanded = tf.expandDims(t, axis + 1);
  const zeros = tf.zeros(expanded.shape.map((d, i) => (i === axis + 1 ? stride - 1 : d)));
  const joined = tf.concat([expanded, zeros], axis + 1);
  const flat = tf.reshape(joined, axis === 1 ? [b, n * stride, w, c] : [b, h, n * stride, c]) as tf.Tensor4D;
  const keep = (n - 1) * stride + 1;
  return tf.slice(flat, [0, 0, 0, 0], axis === 1 ? [b, keep, w, c] : [b, h, keep, c]);
}

/** dL/dfilter of an NHWC conv2d computed with the stride-1 3-D filter-gradient kernel. */
export function conv2dFilterGradientVia3d(
  x: tf.Tensor4D,
  dy: tf.Tensor4D,
  filterShape: [number, number, number, number],
  strides: number | number[],
  pad: 'same' | 'valid',
): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, h, w, ci] = x.shape;
    const [kh, kw, , co] = filterShape;
    const [sh, sw] = pair(strides);
    const [top, bottom, oh] = padding(h, kh, sh, pad);
    const [left, right, ow] = padding(w, kw, sw, pad);
    // Only the input rows and columns some output reads matter.
    const usedH = (oh - 1) * sh + kh;
    const usedW = (ow - 1) * sw + kw;
    const padded = tf.pad(x, [
      [0, 0],
      [top, bottom],
      [left, right],
      [0, 0],
    ]);
    const input = tf.slice(padded, [0, 0, 0, 0], [b, usedH, usedW, ci]);
    const grad = spread(spread(dy, 1, sh), 2, sw);
    const g = tf.engine().runKernel(
      'Conv3DBackpropFilterV2',
      {
        x: tf.reshape(input, [b, 1, usedH, usedW, ci]),
        dy: tf.reshape(grad, [b, 1, grad.shape[1], grad.shape[2], co]),
      },
      { strides: [1, 1, 1], pad: 'valid', filterShape: [1, ...filterShape] },
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
