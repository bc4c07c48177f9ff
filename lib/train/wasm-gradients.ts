/**
 * Gradient kernels that the TF.js wasm backend lacks, composed from kernels it has, so that
 * convolutional models train on wasm: Conv2DBackpropFilter (im2col: strided slices of the padded
 * input concatenated per filter tap, then one BatchMatMul against dy) and the depthwise pair
 * (a per-tap multiply-and-sum for the filter, a depthwise convolution of the dilated, padded dy
 * with the flipped filter for the input).
 *
 * Every kernel works on TensorInfos through the wasm backend's own kernel functions, so nothing
 * passes through the engine (no tape, no tensor bookkeeping) and intermediates are freed at once.
 */
import * as tf from '@tensorflow/tfjs-core';

type Info = tf.TensorInfo;
type Attrs = Record<string, unknown>;
type KernelArgs = { inputs: Record<string, Info>; attrs?: Attrs; backend: unknown };
type RunArgs = { inputs: Record<string, Info> | Info[]; attrs: Attrs; backend: unknown };

interface Backend {
  disposeData(dataId: object): boolean;
}

/** Runs wasm kernels by name and frees every intermediate they produced unless kept. */
class KernelScope {
  private readonly made: Info[] = [];
  constructor(private readonly backend: Backend) {}

  run(kernelName: string, inputs: Record<string, Info> | Info[], attrs: Attrs = {}): Info {
    const kernel = tf.getKernel(kernelName, 'wasm');
    if (!kernel) throw new Error(`wasm backend has no ${kernelName} kernel`);
    const out = kernel.kernelFunc({ inputs, attrs, backend: this.backend } as RunArgs as never) as Info;
    this.made.push(out);
    return out;
  }

  reshape(x: Info, shape: number[]): Info {
    return this.run('Reshape', { x }, { shape });
  }

  /** Frees all intermediates except `keep` (whose data then belongs to the caller). */
  finish(keep: Info): Info {
    for (const info of this.made) if (info !== keep) this.backend.disposeData(info.dataId);
    return keep;
  }

  fail(): void {
    for (const info of this.made) this.backend.disposeData(info.dataId);
  }
}

function scoped(backend: unknown, body: (s: KernelScope) => Info): Info {
  const scope = new KernelScope(backend as Backend);
  try {
    return scope.finish(body(scope));
  } catch (err) {
    scope.fail();
    throw err;
  }
}

function checkNhwc(kernel: string, dataFormat: unknown): void {
  if (dataFormat !== undefined && dataFormat !== 'NHWC' && dataFormat !== 'channelsLast') {
    throw new Error(`${kernel} on wasm supports only NHWC data, got ${String(dataFormat)}`);
  }
}

type ConvInfo = ReturnType<typeof tf.backend_util.computeConv2DInfo>;

/** Pads x by the convolution's padding so that every tap reads inside the padded tensor. */
function padInput(s: KernelScope, x: Info, info: ConvInfo): Info {
  const { top, bottom, left, right } = info.padInfo;
  if (top === 0 && bottom === 0 && left === 0 && right === 0) return x;
  // Bottom/right padding may be negative-free but also larger than needed; that is harmless.
  return s.run(
    'PadV2',
    { x },
    {
      paddings: [
        [0, 0],
        [Math.max(0, top), Math.max(0, bottom)],
        [Math.max(0, left), Math.max(0, right)],
        [0, 0],
      ],
      constantValue: 0,
    },
  );
}

/** The input values one filter tap (fh, fw) sees for every output position: [B, OH, OW, C]. */
function tapSlice(s: KernelScope, padded: Info, info: ConvInfo, fh: number, fw: number): Info {
  const { outHeight, outWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const [batch, , , channels] = padded.shape;
  const top = fh * dilationHeight;
  const left = fw * dilationWidth;
  const begin = [0, top, left, 0];
  if (strideHeight === 1 && strideWidth === 1) {
    return s.run('Slice', { x: padded }, { begin, size: [batch, outHeight, outWidth, channels] });
  }
  return s.run(
    'StridedSlice',
    { x: padded },
    {
      begin,
      end: [
        batch,
        top + (outHeight - 1) * strideHeight + 1,
        left + (outWidth - 1) * strideWidth + 1,
        channels,
      ],
      strides: [1, strideHeight, strideWidth, 1],
      beginMask: 0,
      endMask: 0,
      ellipsisMask: 0,
      newAxisMask: 0,
      shrinkAxisMask: 0,
    },
  );
}

/**
 * Puts stride-1 zeros between the rows and columns of t ([B, H, W, C] -> [B, (H-1)*sh+1,
 * (W-1)*sw+1, C]): where each output position of a strided window reads from.
 */
function spreadByStride(s: KernelScope, t: Info, strideHeight: number, strideWidth: number): Info {
  if (strideHeight === 1 && strideWidth === 1) return t;
  const [batch, height, width, channels] = t.shape;
  const six = s.reshape(t, [batch, height, 1, width, 1, channels]);
  const holes = s.run(
    'PadV2',
    { x: six },
    {
      paddings: [
        [0, 0],
        [0, 0],
        [0, strideHeight - 1],
        [0, 0],
        [0, strideWidth - 1],
        [0, 0],
      ],
      constantValue: 0,
    },
  );
  const flat = s.reshape(holes, [batch, height * strideHeight, width * strideWidth, channels]);
  return s.run(
    'Slice',
    { x: flat },
    {
      begin: [0, 0, 0, 0],
      size: [batch, (height - 1) * strideHeight + 1, (width - 1) * strideWidth + 1, channels],
    },
  );
}

function conv2DBackpropFilter({ inputs, attrs, backend }: KernelArgs): Info {
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as {
    strides: [number, number] | number;
    pad: 'same' | 'valid' | number;
    dataFormat?: string;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    filterShape: [number, number, number, number];
  };
  checkNhwc('Conv2DBackpropFilter', dataFormat);
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const [fh, fw, inChannels, outChannels] = filterShape;
  const rows = info.batchSize * info.outHeight * info.outWidth;
  return scoped(backend, (s) => {
    const padded = padInput(s, x, info);
    const taps: Info[] = [];
    for (let i = 0; i < fh; i++) for (let j = 0; j < fw; j++) taps.push(tapSlice(s, padded, info, i, j));
    // im2col: [rows, fh*fw*inChannels] in the filter's own (fh, fw, in) order.
    const columns = taps.length === 1 ? taps[0] : s.run('Concat', taps, { axis: 3 });
    const patches = s.reshape(columns, [1, rows, fh * fw * inChannels]);
    const grads = s.reshape(dy, [1, rows, outChannels]);
    const product = s.run('BatchMatMul', { a: patches, b: grads }, { transposeA: true, transposeB: false });
    return s.reshape(product, filterShape);
  });
}

function depthwiseBackpropFilter({ inputs, attrs, backend }: KernelArgs): Info {
  const { x, dy } = inputs;
  const { strides, pad, dilations, dimRoundingMode, filterShape } = attrs as {
    strides: [number, number] | number;
    pad: 'same' | 'valid' | number;
    dilations?: [number, number] | number;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    filterShape: [number, number, number, number];
  };
  const info = tf.backend_util.computeConv2DInfo(
    x.shape as [number, number, number, number],
    filterShape,
    strides,
    dilations ?? 1,
    pad,
    dimRoundingMode,
    true,
  );
  const [fh, fw, inChannels, multiplier] = filterShape;
  const rows = info.batchSize * info.outHeight * info.outWidth;
  return scoped(backend, (s) => {
    const padded = padInput(s, x, info);
    const grads = s.reshape(dy, [rows, inChannels, multiplier]);
    const perTap: Info[] = [];
    for (let i = 0; i < fh; i++) {
      for (let j = 0; j < fw; j++) {
        const seen = s.reshape(tapSlice(s, padded, info, i, j), [rows, inChannels, 1]);
        const product = s.run('Multiply', { a: seen, b: grads });
        perTap.push(s.run('Sum', { x: product }, { axis: [0], keepDims: true }));
      }
    }
    const stacked = perTap.length === 1 ? perTap[0] : s.run('Concat', perTap, { axis: 0 });
    return s.reshape(stacked, filterShape);
  });
}

function depthwiseBackpropInput({ inputs, attrs, backend }: KernelArgs): Info {
  const { dy, filter } = inputs;
  const { strides, pad, dilations, dimRoundingMode, inputShape } = attrs as {
    strides: [number, number] | number;
    pad: 'same' | 'valid' | number;
    dilations?: [number, number] | number;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
    inputShape: [number, number, number, number];
  };
  const [fh, fw, inChannels, multiplier] = filter.shape;
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    dilations ?? 1,
    pad,
    dimRoundingMode,
    true,
  );
  const { batchSize, inHeight, inWidth, outHeight, outWidth, strideHeight, strideWidth } = info;
  const { dilationHeight, dilationWidth } = info;
  const channels = inChannels * multiplier;
  return scoped(backend, (s) => {
    const dilatedHeight = (outHeight - 1) * strideHeight + 1;
    const dilatedWidth = (outWidth - 1) * strideWidth + 1;
    const spread = spreadByStride(s, dy, strideHeight, strideWidth);
    // dx[i] = sum_k spread[i + padTop - k*d] * w[k]: a valid correlation of spread, shifted by
    // (fh-1)*d - padTop, with the flipped filter. Pad (or crop) so that it yields exactly inHeight.
    const spanH = (fh - 1) * dilationHeight;
    const spanW = (fw - 1) * dilationWidth;
    const before = [spanH - info.padInfo.top, spanW - info.padInfo.left];
    const after = [inHeight + spanH - before[0] - dilatedHeight, inWidth + spanW - before[1] - dilatedWidth];
    let framed = spread;
    if (before.some((p) => p > 0) || after.some((p) => p > 0)) {
      framed = s.run(
        'PadV2',
        { x: spread },
        {
          paddings: [
            [0, 0],
            [Math.max(0, before[0]), Math.max(0, after[0])],
            [Math.max(0, before[1]), Math.max(0, after[1])],
            [0, 0],
          ],
          constantValue: 0,
        },
      );
    }
    if (before.some((p) => p < 0) || after.some((p) => p < 0)) {
      framed = s.run(
        'Slice',
        { x: framed },
        {
          begin: [0, Math.max(0, -before[0]), Math.max(0, -before[1]), 0],
          size: [batchSize, inHeight + spanH, inWidth + spanW, channels],
        },
      );
    }
    const flipped = s.run('Reverse', { x: filter }, { dims: [0, 1] });
    const perChannel = s.reshape(flipped, [fh, fw, channels, 1]);
    const conv = s.run(
      'DepthwiseConv2dNative',
      { x: framed, filter: perChannel },
      { strides: [1, 1], pad: 'valid', dilations: [dilationHeight, dilationWidth] },
    );
    if (multiplier === 1) return conv;
    const split = s.reshape(conv, [batchSize, inHeight, inWidth, inChannels, multiplier]);
    return s.run('Sum', { x: split }, { axis: [4], keepDims: false });
  });
}

/**
 * MaxPoolGrad with the cpu backend's semantics: each window's gradient goes to the first
 * position holding the window's maximum. (The wasm backend's own kernel starts its running
 * maximum at 0, so windows of negative values send their gradient to the wrong place.)
 */
function maxPoolGrad({ inputs, attrs, backend }: KernelArgs): Info {
  const { dy, input, output } = inputs;
  const { filterSize, strides, pad, dimRoundingMode } = attrs as {
    filterSize: [number, number] | number;
    strides: [number, number] | number;
    pad: 'same' | 'valid' | number;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  const info = tf.backend_util.computePool2DInfo(
    input.shape as [number, number, number, number],
    filterSize,
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const { top, left, bottom, right } = info.padInfo;
  const [batch, height, width, channels] = input.shape;
  const paddedHeight = height + Math.max(0, top) + Math.max(0, bottom);
  const paddedWidth = width + Math.max(0, left) + Math.max(0, right);
  const spanHeight = (info.outHeight - 1) * info.strideHeight + 1;
  const spanWidth = (info.outWidth - 1) * info.strideWidth + 1;
  return scoped(backend, (s) => {
    const padded = s.run(
      'PadV2',
      { x: input },
      {
        paddings: [
          [0, 0],
          [Math.max(0, top), Math.max(0, bottom)],
          [Math.max(0, left), Math.max(0, right)],
          [0, 0],
        ],
        constantValue: -Infinity,
      },
    );
    let unclaimed: Info | undefined;
    let total: Info | undefined;
    for (let i = 0; i < info.filterHeight; i++) {
      for (let j = 0; j < info.filterWidth; j++) {
        const seen = tapSlice(s, padded, info, i, j);
        const hit = s.run('Cast', { x: s.run('Equal', { a: seen, b: output }) }, { dtype: 'float32' });
        // Only the first tap holding the maximum wins.
        const wins = unclaimed ? s.run('Multiply', { a: hit, b: unclaimed }) : hit;
        const left1 = s.run('Sub', { a: unclaimed ?? s.run('OnesLike', { x: hit }), b: wins });
        unclaimed = left1;
        const routed = spreadByStride(
          s,
          s.run('Multiply', { a: wins, b: dy }),
          info.strideHeight,
          info.strideWidth,
        );
        const placed = s.run(
          'PadV2',
          { x: routed },
          {
            paddings: [
              [0, 0],
              [i, paddedHeight - i - spanHeight],
              [j, paddedWidth - j - spanWidth],
              [0, 0],
            ],
            constantValue: 0,
          },
        );
        total = total ? s.run('Add', { a: total, b: placed }) : placed;
      }
    }
    return s.run(
      'Slice',
      { x: total as Info },
      { begin: [0, Math.max(0, top), Math.max(0, left), 0], size: [batch, height, width, channels] },
    );
  });
}

/** True when the wasm backend's own MaxPoolGrad routes a negative window's gradient wrongly. */
function wasmMaxPoolGradIsWrong(): boolean {
  return tf.tidy(() => {
    const grad = tf.grad((x: tf.Tensor) => tf.sum(tf.maxPool(x as tf.Tensor4D, 2, 2, 'valid')));
    const dx = grad(tf.tensor4d([-4, -3, -2, -1], [1, 2, 2, 1]));
    return dx.dataSync()[3] !== 1;
  });
}

const KERNELS: Array<[string, (args: KernelArgs) => Info]> = [
  ['Conv2DBackpropFilter', conv2DBackpropFilter],
  ['DepthwiseConv2dNativeBackpropFilter', depthwiseBackpropFilter],
  ['DepthwiseConv2dNativeBackpropInput', depthwiseBackpropInput],
];

function register(kernelName: string, kernelFunc: (args: KernelArgs) => Info): void {
  tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

let maxPoolChecked = false;

/**
 * Registers the gradient kernels the wasm backend lacks (only those it lacks; calling again is
 * harmless), and replaces its MaxPoolGrad while that one is wrong. Call with wasm active.
 * Returns the names registered now.
 */
export function registerWasmGradients(): string[] {
  const added: string[] = [];
  for (const [kernelName, kernelFunc] of KERNELS) {
    if (tf.getKernel(kernelName, 'wasm')) continue;
    register(kernelName, kernelFunc);
    added.push(kernelName);
  }
  if (!maxPoolChecked && tf.getBackend() === 'wasm') {
    maxPoolChecked = true;
    if (wasmMaxPoolGradIsWrong()) {
      tf.unregisterKernel('MaxPoolGrad', 'wasm');
      register('MaxPoolGrad', maxPoolGrad);
      added.push('MaxPoolGrad');
    }
  }
  return added;
}

/** Kernel names the wasm backend still lacks that the cpu backend has (for diagnostics). */
export function missingWasmKernels(): string[] {
  const wasm = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
  return tf
    .getKernelsForBackend('cpu')
    .map((k) => k.kernelName)
    .filter((name) => !wasm.has(name));
}
