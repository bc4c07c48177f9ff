/**
 * Gradient kernels for the TF.js wasm backend, composed from kernels it has, so that
 * convolutional models train on wasm:
 * - Conv2DBackpropFilter (missing): a Conv2D of the transposed input with dy as the filter;
 * - Conv2DBackpropInput (present but slow): a Conv2D of the spread, framed dy with the flipped
 *   filter;
 * - DepthwiseConv2dNativeBackpropFilter/Input (missing): a per-tap multiply-and-sum, and a
 *   depthwise convolution of the spread, framed dy with the flipped filter;
 * - MaxPoolGrad (present but wrong for windows of negative values, and slow): one pass on the
 *   wasm heap; where windows tile the input, one write per value with the gradient of the ReLU
 *   before the pooling fused in (its own gradient kernel then passes the result on) and, for 2x2
 *   windows, the channel sums (the bias gradient) taken as it writes;
 * - BatchMatMul/_FusedMatMul (present, but repacking the weights whenever they change, as they do
 *   every training step, and about ten times slower with a transposed operand): the heap's
 *   convolution kernels as 1x1 convolutions where the shapes allow, else the operand transposed
 *   first;
 * - Sum over leading axes (present but slow): one pass on the wasm heap;
 * - Conv2D/FusedConv2D (present): the heap kernel with fused bias and ReLU; Add of a bias over the
 *   last axis: one pass on the heap; Identity (present, copies): shares the data;
 * - 3x3 stride-1 convolutions with enough channels (forward, hence the unstrided input gradient,
 *   and the filter gradient): Winograd F(2x2, 3x3) on the heap, 16 products per 2x2 outputs
 *   where the direct kernel takes 36.
 *
 * Every kernel works on TensorInfos through the wasm backend's own kernel functions, so nothing
 * passes through the engine (no tape, no tensor bookkeeping) and intermediates are freed at once.
 */
import * as tf from '@tensorflow/tfjs-core';
// Registers TF.js's gradient functions, which call these kernels.
import '@tensorflow/tfjs-layers';
import {
  CONV_FILTER_BLOCKS,
  CONV_FORWARD_BLOCKS,
  CONV_INPUT_BLOCKS,
  convArgs,
  heapKernelsFor,
  winogradFilter,
  winogradFilterGrad,
  type ConvShape,
  type HeapKernels,
} from './heap-kernels';

type Info = tf.TensorInfo;
type Attrs = Record<string, unknown>;
type KernelArgs = { inputs: Record<string, Info>; attrs?: Attrs; backend: unknown };
type RunArgs = { inputs: Record<string, Info> | Info[]; attrs: Attrs; backend: unknown };

interface Backend {
  disposeData(dataId: object): boolean;
  incRef(dataId: object): void;
}

/** The wasm backend's heap access (tfjs-backend-wasm BackendWasm). */
interface HeapBackend extends Backend {
  makeOutput(shape: number[], dtype: tf.DataType): Info;
  typedArrayFromHeap(info: Info): Float32Array | Int32Array | Uint8Array;
  wasm?: { asm?: { memory?: WebAssembly.Memory } };
}

/** The compiled heap kernels for this backend's memory, when they can run there. */
function kernelsOf(backend: HeapBackend): HeapKernels | undefined {
  return paths.heapKernels ? heapKernelsFor(backend.wasm?.asm?.memory) : undefined;
}

/** The paths that can be turned off, for side-by-side measurements and tests (see the use* functions). */
const paths = { heapKernels: true, winograd: true, matMul: true, tiledPool: true };

function turn(path: keyof typeof paths, on: boolean): boolean {
  const previous = paths[path];
  paths[path] = on;
  return previous;
}

/**
 * Turns the pooling kernels for windows that tile the input (2x2 max pooling, and the max pooling
 * gradient with a ReLU's gradient fused in) off (the backend's pooling and the general heap
 * gradient kernel then run, and the ReLU gradient its own kernel) or back on. Returns the
 * previous setting.
 */
export function useTiledPoolGrad(on: boolean): boolean {
  return turn('tiledPool', on);
}

/**
 * Turns the heap matrix products (dense layers' forward pass and both gradients) off (the
 * backend's kernels then run them) or back on. Returns the previous setting.
 */
export function useHeapMatMul(on: boolean): boolean {
  return turn('matMul', on);
}

/**
 * Turns the Winograd path of 3x3 stride-1 convolutions off (they then run on the direct heap
 * kernel) or back on. Returns the previous setting.
 */
export function useWinograd(on: boolean): boolean {
  return turn('winograd', on);
}

/**
 * Turns the compiled heap kernels off (every kernel then takes its composed or JavaScript path,
 * as on a shared memory) or back on. Returns the previous setting.
 */
export function useHeapKernels(on: boolean): boolean {
  return turn('heapKernels', on);
}

/** Byte address of a tensor's data on the wasm heap. */
function addressOf(backend: HeapBackend, info: Info): number {
  return backend.typedArrayFromHeap(info).byteOffset;
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

  /** Takes ownership of a result produced outside run(). */
  adopt(info: Info): Info {
    this.made.push(info);
    return info;
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

/**
 * A convolution's shape as the heap kernels take it; `padded` when the kernel reads an input
 * already padded (then of that height and width, with no padding left to apply).
 */
function convShape(info: ConvInfo, padded?: Info): ConvShape {
  return {
    batch: info.batchSize,
    inH: padded ? padded.shape[1] : info.inHeight,
    inW: padded ? padded.shape[2] : info.inWidth,
    cin: info.inChannels,
    outH: info.outHeight,
    outW: info.outWidth,
    cout: info.outChannels,
    fh: info.filterHeight,
    fw: info.filterWidth,
    sh: info.strideHeight,
    sw: info.strideWidth,
    dh: info.dilationHeight,
    dw: info.dilationWidth,
    top: padded ? 0 : info.padInfo.top,
    left: padded ? 0 : info.padInfo.left,
  };
}

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

/** Attributes both Conv2D gradient kernels get. */
type Conv2DAttrs = {
  strides: [number, number] | number;
  pad: 'same' | 'valid' | number;
  dataFormat?: string;
  dimRoundingMode?: 'floor' | 'round' | 'ceil';
};

/**
 * dW[i, j, c, k] = sum over b, y, x of input[b, y*s + i, x*s + j, c] * dy[b, y, x, k]: a
 * convolution of the input (channels as batch, batch as channels) with dy as the filter, dilated
 * by the stride. It runs on the backend's fast Conv2D; the output is cropped to the filter size.
 */
function conv2DBackpropFilter({ inputs, attrs, backend }: KernelArgs): Info {
  const { x, dy } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, filterShape } = attrs as Conv2DAttrs & {
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
  const heap = backend as HeapBackend;
  const kernels = kernelsOf(heap);
  if (
    kernels &&
    winogradFits(info, WINOGRAD_FILTER_MIN_PAIRS) &&
    x.dtype === 'float32' &&
    dy.dtype === 'float32'
  ) {
    return scoped(backend, (s) => winogradFilterGradient(s, heap, kernels, x, dy, info));
  }
  // The taps of a filter row read one run of fw x inChannels values (no dilation here).
  const run = fw * inChannels;
  const block = CONV_FILTER_BLOCKS.find(([i, o]) => run % i === 0 && outChannels % o === 0);
  if (kernels && block && x.dtype === 'float32' && dy.dtype === 'float32') {
    return scoped(backend, (s) => {
      const padded = padInput(s, x, info);
      const out = heap.makeOutput(filterShape, 'float32');
      kernels[`convFilterGrad${block[0]}x${block[1]}`](
        ...convArgs(
          addressOf(heap, padded),
          addressOf(heap, dy),
          addressOf(heap, out),
          convShape(info, padded),
        ),
      );
      return out;
    });
  }
  return scoped(backend, (s) => {
    const padded = padInput(s, x, info);
    const channelsFirst = s.run('Transpose', { x: padded }, { perm: [3, 1, 2, 0] });
    const dyAsFilter = s.run('Transpose', { x: dy }, { perm: [1, 2, 0, 3] });
    const conv = s.run(
      'Conv2D',
      { x: channelsFirst, filter: dyAsFilter },
      {
        strides: [1, 1],
        pad: 'valid',
        dilations: [info.strideHeight, info.strideWidth],
        dataFormat: 'NHWC',
      },
    );
    const cropped =
      conv.shape[1] === fh && conv.shape[2] === fw
        ? conv
        : s.run('Slice', { x: conv }, { begin: [0, 0, 0, 0], size: [inChannels, fh, fw, outChannels] });
    return s.run('Transpose', { x: cropped }, { perm: [1, 2, 0, 3] });
  });
}

/**
 * Pads (or crops) dy, already spread by the stride, so that a valid stride-1 correlation with a
 * filter of span (taps-1)*dilation yields exactly the input's height and width:
 * dx[i] = sum over k of spread[i + padBefore - k*dilation] * w[k].
 */
function frameForInputGradient(s: KernelScope, spread: Info, info: ConvInfo, fh: number, fw: number): Info {
  const [batch, spreadHeight, spreadWidth, channels] = spread.shape;
  const spanH = (fh - 1) * info.dilationHeight;
  const spanW = (fw - 1) * info.dilationWidth;
  const before = [spanH - info.padInfo.top, spanW - info.padInfo.left];
  const after = [
    info.inHeight + spanH - before[0] - spreadHeight,
    info.inWidth + spanW - before[1] - spreadWidth,
  ];
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
        size: [batch, info.inHeight + spanH, info.inWidth + spanW, channels],
      },
    );
  }
  return framed;
}

/**
 * dx as a stride-1 convolution of the stride-spread, framed dy with the filter turned by 180
 * degrees and its in/out channels swapped (the wasm backend's own kernel is several times slower);
 * that convolution runs on the heap forward kernel where it can. Strided, the spread would be
 * mostly zeros: the heap gathering kernel (convInputGrad) reads only the taps that exist.
 */
function conv2DBackpropInput({ inputs, attrs, backend }: KernelArgs): Info {
  const { dy, filter } = inputs;
  const { strides, pad, dataFormat, dimRoundingMode, inputShape } = attrs as Conv2DAttrs & {
    inputShape: [number, number, number, number];
  };
  checkNhwc('Conv2DBackpropInput', dataFormat);
  const [fh, fw] = filter.shape;
  const info = tf.backend_util.computeConv2DInfo(
    inputShape,
    filter.shape as [number, number, number, number],
    strides,
    1,
    pad,
    dimRoundingMode,
  );
  const heap = backend as HeapBackend;
  const kernels = kernelsOf(heap);
  const inChannels = inputShape[3];
  const block = CONV_INPUT_BLOCKS.find((c) => inChannels % c === 0);
  // Unstrided, dx is the forward convolution of the framed dy below, which runs on the heap
  // kernel (convForward) faster than the gathering kernel does, zero frame included.
  const strided = info.strideHeight > 1 || info.strideWidth > 1;
  if (kernels && block && strided && dy.dtype === 'float32' && filter.dtype === 'float32') {
    return scoped(backend, (s) => {
      const swapped = s.run('Transpose', { x: filter }, { perm: [0, 1, 3, 2] });
      const out = heap.makeOutput(inputShape, 'float32');
      kernels[`convInputGrad${block}`](
        ...convArgs(addressOf(heap, dy), addressOf(heap, swapped), addressOf(heap, out), convShape(info)),
      );
      return out;
    });
  }
  return scoped(backend, (s) => {
    const spread = spreadByStride(s, dy, info.strideHeight, info.strideWidth);
    const framed = frameForInputGradient(s, spread, info, fh, fw);
    const flipped = s.run('Reverse', { x: filter }, { dims: [0, 1] });
    const swapped = s.run('Transpose', { x: flipped }, { perm: [0, 1, 3, 2] });
    return s.run(
      'Conv2D',
      { x: framed, filter: swapped },
      { strides: [1, 1], pad: 'valid', dilations: [1, 1], dataFormat: 'NHWC' },
    );
  });
}

/** Images per pass of the Winograd path: about this many tiles, so its planes stay in cache. */
let WINOGRAD_TILES = 256;

/** Tiles the Winograd filter gradient transforms at once (bounds its scratch memory). */
let WINOGRAD_CHUNK_TILES = 2048;

/**
 * Sets the tiles of a Winograd pass and of a filter-gradient chunk (for tests that need several
 * of them on small tensors); returns the previous sizes.
 */
export function setWinogradTiles(sizes: { pass: number; chunk: number }): { pass: number; chunk: number } {
  const previous = { pass: WINOGRAD_TILES, chunk: WINOGRAD_CHUNK_TILES };
  WINOGRAD_TILES = sizes.pass;
  WINOGRAD_CHUNK_TILES = sizes.chunk;
  return previous;
}

/**
 * Fewest input x output channel pairs for which the Winograd path pays (measured side by side
 * with the direct kernel, 3x3 'same' on 16x16 images: 0.9x at 16 x 16, 1.1x at 16 x 32, 1.3-1.5x
 * from 32 x 32 on; with fewer channels its transforms cost more than the products it saves).
 */
const WINOGRAD_MIN_PAIRS = 512;

/**
 * The same for the filter gradient (measured: 1.0x at 16 x 32, 1.1-1.5x from 32 x 32 on; batch 32
 * of 13x13 images, 32 x 64, 1.1x, batch 64 1.3x).
 */
const WINOGRAD_FILTER_MIN_PAIRS = 1024;

/**
 * Whether a convolution takes the Winograd path: 3x3 filter, stride 1, no dilation, channels in
 * fours in and eights out, enough of them (WINOGRAD_MIN_PAIRS), and at least four tiles an image
 * (the product kernel's block).
 */
function winogradFits(info: ConvInfo, minPairs = WINOGRAD_MIN_PAIRS): boolean {
  const tiles = Math.ceil(info.outHeight / 2) * Math.ceil(info.outWidth / 2);
  return (
    paths.winograd &&
    info.filterHeight === 3 &&
    info.filterWidth === 3 &&
    info.strideHeight === 1 &&
    info.strideWidth === 1 &&
    info.dilationHeight === 1 &&
    info.dilationWidth === 1 &&
    info.inChannels % 4 === 0 &&
    info.outChannels % 8 === 0 &&
    info.inChannels * info.outChannels >= minPairs &&
    tiles >= 4
  );
}

/**
 * Which path a float32 NHWC Conv2D of these shapes takes on wasm: 'winograd', the 'direct' heap
 * kernel, or the backend's 'native' one (for tests and diagnostics); with `filterGradient`, which
 * path its filter gradient takes.
 */
export function conv2DPath(
  xShape: [number, number, number, number],
  filterShape: [number, number, number, number],
  strides: number | [number, number],
  pad: 'same' | 'valid',
  dilations: number | [number, number] = 1,
  filterGradient = false,
): 'winograd' | 'direct' | 'native' {
  if (!kernelsOf(tf.backend() as unknown as HeapBackend)) return 'native';
  const info = tf.backend_util.computeConv2DInfo(xShape, filterShape, strides, dilations, pad);
  if (filterGradient) {
    if (winogradFits(info, WINOGRAD_FILTER_MIN_PAIRS)) return 'winograd';
    const run = info.filterWidth * info.inChannels;
    return CONV_FILTER_BLOCKS.some(([i, o]) => run % i === 0 && info.outChannels % o === 0)
      ? 'direct'
      : 'native';
  }
  if (winogradFits(info)) return 'winograd';
  return CONV_FORWARD_BLOCKS.some(([p, c]) => info.outWidth >= p && info.outChannels % c === 0)
    ? 'direct'
    : 'native';
}

/** x padded so that the last tile's 4x4 patch lies inside. */
function winogradPad(s: KernelScope, x: Info, info: ConvInfo, tilesH: number, tilesW: number): Info {
  const { top, left } = info.padInfo;
  return s.run(
    'PadV2',
    { x },
    {
      paddings: [
        [0, 0],
        [top, Math.max(0, 2 * tilesH + 2 - top - info.inHeight)],
        [left, Math.max(0, 2 * tilesW + 2 - left - info.inWidth)],
        [0, 0],
      ],
      constantValue: 0,
    },
  );
}

/** Geometry of a 1x1 convolution over `batch` rows of `width` positions: a matrix product. */
function pointwise(batch: number, width: number, cin: number, cout: number): ConvShape {
  return {
    batch,
    inH: 1,
    inW: width,
    cin,
    outH: 1,
    outW: width,
    cout,
    fh: 1,
    fw: 1,
    sh: 1,
    sw: 1,
    dh: 1,
    dw: 1,
    top: 0,
    left: 0,
  };
}

/**
 * A 3x3 stride-1 convolution by Winograd F(2x2, 3x3) (see heap-kernels): the filter transformed
 * once, then, a group of images at a time, the input transform, one matrix product per plane on
 * the forward kernel, and the output transform with the bias and ReLU fused into its stores.
 */
function winogradConv2D(
  s: KernelScope,
  heap: HeapBackend,
  kernels: HeapKernels,
  x: Info,
  filter: Info,
  info: ConvInfo,
  bias: Info | undefined,
  relu: boolean,
): Info {
  const { batchSize, outHeight, outWidth, inChannels: cin, outChannels: cout } = info;
  const tilesH = Math.ceil(outHeight / 2);
  const tilesW = Math.ceil(outWidth / 2);
  const padded = winogradPad(s, x, info, tilesH, tilesW);
  const [, inH, inW] = padded.shape;
  const u = s.adopt(heap.makeOutput([16, cin, cout], 'float32'));
  winogradFilter(
    heap.typedArrayFromHeap(filter) as Float32Array,
    heap.typedArrayFromHeap(u) as Float32Array,
    cin,
    cout,
  );
  const perImage = tilesH * tilesW;
  const group = Math.max(1, Math.min(batchSize, Math.floor(WINOGRAD_TILES / perImage)));
  const v = s.adopt(heap.makeOutput([16, group * perImage, cin], 'float32'));
  const m = s.adopt(heap.makeOutput([16, group * perImage, cout], 'float32'));
  const out = heap.makeOutput(info.outShape, 'float32');
  const [pu, pv, pm, pIn, pOut] = [u, v, m, padded, out].map((t) => addressOf(heap, t));
  const pBias = bias ? addressOf(heap, bias) : 0;
  const product = kernels['convForward4x8'];
  for (let n = 0; n < batchSize; n += group) {
    const images = Math.min(group, batchSize - n);
    const tiles = images * perImage;
    kernels.winogradInput(pIn + n * inH * inW * cin * 4, pv, images, inH, inW, cin, tilesH, tilesW);
    for (let p = 0; p < 16; p++) {
      // M[p] (tiles x cout) = V[p] (tiles x cin) U[p] (cin x cout): a 1x1 convolution.
      product(
        ...convArgs(
          pv + p * tiles * cin * 4,
          pu + p * cin * cout * 4,
          pm + p * tiles * cout * 4,
          pointwise(1, tiles, cin, cout),
        ),
        0,
        0,
      );
    }
    kernels.winogradOutput(
      pm,
      pOut + n * outHeight * outWidth * cout * 4,
      pBias,
      relu ? 1 : 0,
      images,
      outHeight,
      outWidth,
      cout,
      tilesH,
      tilesW,
    );
  }
  return out;
}

/**
 * The filter gradient of a 3x3 stride-1 convolution by Winograd F(2x2, 3x3): with V the input
 * transform of x (as the forward pass computes it) and dM = A dY A^T of each tile of dy, the
 * transformed filter's gradient is dU[p] = sum over tiles of V[p]^T dM[p] (one pass of the filter
 * gradient kernel per plane, as a 1x1 convolution over a few images' tiles at a time), and the
 * filter's is G^T dU G.
 */
function winogradFilterGradient(
  s: KernelScope,
  heap: HeapBackend,
  kernels: HeapKernels,
  x: Info,
  dy: Info,
  info: ConvInfo,
): Info {
  const { batchSize, outHeight, outWidth, inChannels: cin, outChannels: cout } = info;
  const tilesH = Math.ceil(outHeight / 2);
  const tilesW = Math.ceil(outWidth / 2);
  const padded = winogradPad(s, x, info, tilesH, tilesW);
  const [, inH, inW] = padded.shape;
  const perImage = tilesH * tilesW;
  // Images per pass of the product kernel: the most that divide the batch within WINOGRAD_TILES;
  // passes per chunk of images transformed at once: as many as fit WINOGRAD_CHUNK_TILES.
  let group = 1;
  for (let k = 1; k <= batchSize && k * perImage <= WINOGRAD_TILES; k++) if (batchSize % k === 0) group = k;
  const chunk = group * Math.max(1, Math.floor(WINOGRAD_CHUNK_TILES / (group * perImage)));
  const most = Math.min(chunk, batchSize) * perImage;
  const v = s.adopt(heap.makeOutput([16, most, cin], 'float32'));
  const m = s.adopt(heap.makeOutput([16, most, cout], 'float32'));
  const du = s.adopt(heap.makeOutput([16, cin, cout], 'float32'));
  const out = heap.makeOutput([3, 3, cin, cout], 'float32');
  const [pv, pm, pu, pIn, pDy] = [v, m, du, padded, dy].map((t) => addressOf(heap, t));
  const block = CONV_FILTER_BLOCKS.find(([i, o]) => cin % i === 0 && cout % o === 0) as readonly [
    number,
    number,
  ];
  const product = kernels[`convFilterGrad${block[0]}x${block[1]}`];
  // Over several chunks, dU is summed here (in f64).
  const total = batchSize > chunk ? new Float64Array(16 * cin * cout) : undefined;
  for (let n = 0; n < batchSize; n += chunk) {
    const images = Math.min(chunk, batchSize - n);
    const tiles = images * perImage;
    kernels.winogradInput(pIn + n * inH * inW * cin * 4, pv, images, inH, inW, cin, tilesH, tilesW);
    kernels.winogradOutputGrad(
      pDy + n * outHeight * outWidth * cout * 4,
      pm,
      images,
      outHeight,
      outWidth,
      cout,
      tilesH,
      tilesW,
    );
    for (let p = 0; p < 16; p++) {
      product(
        ...convArgs(
          pv + p * tiles * cin * 4,
          pm + p * tiles * cout * 4,
          pu + p * cin * cout * 4,
          pointwise(images / group, group * perImage, cin, cout),
        ),
      );
    }
    if (total) {
      const part = heap.typedArrayFromHeap(du) as Float32Array;
      for (let i = 0; i < total.length; i++) total[i] += part[i];
    }
  }
  if (total) (heap.typedArrayFromHeap(du) as Float32Array).set(total);
  winogradFilterGrad(
    heap.typedArrayFromHeap(du) as Float32Array,
    heap.typedArrayFromHeap(out) as Float32Array,
    cin,
    cout,
  );
  return out;
}

/**
 * Conv2D and FusedConv2D on the heap: the input padded once, then one register-blocked SIMD pass
 * with the bias and ReLU applied as each output block is stored. Shapes the kernel has no block
 * for (output channels not in eights, rows narrower than a block), other activations, NCHW data
 * and non-float inputs go to the backend's own kernel.
 */
function heapConv2D(native: tf.KernelFunc): (args: KernelArgs) => Info {
  return ({ inputs, attrs, backend }) => {
    const { x, filter, bias, preluActivationWeights } = inputs;
    const a = (attrs ?? {}) as Conv2DAttrs & {
      dilations?: [number, number] | number;
      activation?: string;
    };
    const heap = backend as HeapBackend;
    const kernels = kernelsOf(heap);
    const activation = a.activation ?? 'linear';
    const outChannels = filter.shape[3];
    const plain =
      kernels &&
      x.dtype === 'float32' &&
      filter.dtype === 'float32' &&
      x.shape.length === 4 &&
      (a.dataFormat === undefined || a.dataFormat === 'NHWC' || a.dataFormat === 'channelsLast') &&
      (activation === 'linear' || activation === 'relu') &&
      !preluActivationWeights &&
      (!bias || (bias.dtype === 'float32' && bias.shape.length === 1 && bias.shape[0] === outChannels));
    if (!plain) return native({ inputs, attrs, backend } as never) as Info;
    const info = tf.backend_util.computeConv2DInfo(
      x.shape as [number, number, number, number],
      filter.shape as [number, number, number, number],
      a.strides,
      a.dilations ?? 1,
      a.pad,
      a.dimRoundingMode,
    );
    if (winogradFits(info)) {
      return scoped(backend, (s) =>
        winogradConv2D(s, heap, kernels, x, filter, info, bias, activation === 'relu'),
      );
    }
    const block = CONV_FORWARD_BLOCKS.find(([p, c]) => info.outWidth >= p && outChannels % c === 0);
    if (!block) return native({ inputs, attrs, backend } as never) as Info;
    return scoped(backend, (s) => {
      const padded = padInput(s, x, info);
      const out = heap.makeOutput(info.outShape, 'float32');
      kernels[`convForward${block[0]}x${block[1]}`](
        ...convArgs(
          addressOf(heap, padded),
          addressOf(heap, filter),
          addressOf(heap, out),
          convShape(info, padded),
        ),
        bias ? addressOf(heap, bias) : 0,
        activation === 'relu' ? 1 : 0,
      );
      return out;
    });
  };
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
  const { batchSize, inHeight, inWidth, strideHeight, strideWidth, dilationHeight, dilationWidth } = info;
  const channels = inChannels * multiplier;
  return scoped(backend, (s) => {
    const spread = spreadByStride(s, dy, strideHeight, strideWidth);
    const framed = frameForInputGradient(s, spread, info, fh, fw);
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

/** The input of the ReLU that produced a tensor, by data (to fuse the ReLU's gradient). */
const reluInputs = new WeakMap<object, object>();
/** Gradients that already hold the ReLU gradient of the input they map to. */
const reluMasked = new WeakMap<object, object>();
/** Sums over all but the last axis of gradients, computed as they were written. */
const channelSums = new WeakMap<object, Float32Array>();

/**
 * Relu as the backend runs it, remembering whose output the result is: a max pooling gradient
 * over it can then apply the ReLU's gradient as it writes (see heapMaxPoolGrad).
 */
function trackedRelu(native: tf.KernelFunc): (args: KernelArgs) => Info {
  return ({ inputs, attrs, backend }) => {
    const out = native({ inputs, attrs, backend } as never) as Info;
    if (inputs.x.dtype === 'float32') reluInputs.set(out.dataId, inputs.x.dataId);
    return out;
  };
}

type PoolInfo = ReturnType<typeof tf.backend_util.computePool2DInfo>;

/** The geometry of a pooling of x with the kernel's attributes. */
function poolInfo(x: Info, attrs: Attrs): PoolInfo {
  const a = attrs as {
    filterSize: number | [number, number];
    strides: number | [number, number];
    pad: 'valid' | 'same' | number;
    dimRoundingMode?: 'floor' | 'round' | 'ceil';
  };
  return tf.backend_util.computePool2DInfo(
    x.shape as [number, number, number, number],
    a.filterSize,
    a.strides,
    1,
    a.pad,
    a.dimRoundingMode,
  );
}

/**
 * MaxPool with 2x2 windows and stride 2 (the pooling of convolutional networks) on the heap in
 * one pass where channels come in fours; the backend's kernel otherwise.
 */
function heapMaxPool(native: tf.KernelFunc): (args: KernelArgs) => Info {
  return ({ inputs, attrs, backend }) => {
    const { x } = inputs;
    const heap = backend as HeapBackend;
    const kernels = kernelsOf(heap);
    if (!kernels || !paths.tiledPool || x.dtype !== 'float32' || x.shape.length !== 4) {
      return native({ inputs, attrs, backend } as never) as Info;
    }
    const info = poolInfo(x, attrs as Attrs);
    if (info.filterHeight !== 2 || info.filterWidth !== 2 || info.inChannels % 4 !== 0 || !tiles(info)) {
      return native({ inputs, attrs, backend } as never) as Info;
    }
    const out = heap.makeOutput(info.outShape, 'float32');
    kernels.maxPool2x2(
      addressOf(heap, x),
      addressOf(heap, out),
      info.batchSize,
      info.inHeight,
      info.inWidth,
      info.inChannels,
      info.outHeight,
      info.outWidth,
    );
    return out;
  };
}

/** Whether pooling windows tile the input: no padding, no overlap, none past its edges. */
function tiles(info: PoolInfo): boolean {
  return (
    info.strideHeight === info.filterHeight &&
    info.strideWidth === info.filterWidth &&
    info.padInfo.top === 0 &&
    info.padInfo.left === 0 &&
    info.outHeight * info.filterHeight <= info.inHeight &&
    info.outWidth * info.filterWidth <= info.inWidth &&
    info.dilationHeight === 1 &&
    info.dilationWidth === 1
  );
}

/**
 * MaxPoolGrad computed on the wasm heap in one pass: each window's first maximum (as the cpu
 * backend picks it) receives the window's gradient. The native kernel is wrong for negative
 * windows and the shifted workaround costs four extra full-size passes.
 */
function heapMaxPoolGrad({ inputs, attrs, backend }: KernelArgs): Info {
  const { dy, input } = inputs;
  const b = backend as HeapBackend;
  const info = poolInfo(input, attrs as Attrs);
  const { batchSize, inHeight, inWidth, inChannels: c, outHeight, outWidth } = info;
  const { strideHeight, strideWidth, filterHeight, filterWidth } = info;
  const { top, left } = info.padInfo;
  const out = b.makeOutput(input.shape, 'float32');
  const kernels = kernelsOf(b);
  if (
    kernels &&
    paths.tiledPool &&
    input.dtype === 'float32' &&
    dy.dtype === 'float32' &&
    c % 4 === 0 &&
    tiles(info)
  ) {
    // Windows that tile the input: each value written once; after a ReLU, its gradient fused in.
    const reluInput = reluInputs.get(input.dataId);
    const twoByTwo = filterHeight === 2 && filterWidth === 2;
    // After a ReLU (and a bias add before it, as layers build it), the bias gradient sums dx
    // over all but the channels: the 2x2 kernel sums as it writes (c f64 values).
    const sums = twoByTwo && reluInput ? b.makeOutput([c * 2], 'float32') : undefined;
    const tiled = twoByTwo ? kernels.maxPoolGrad2x2 : kernels.maxPoolGradTiled;
    tiled(
      addressOf(b, input),
      addressOf(b, dy),
      addressOf(b, out),
      batchSize,
      inHeight,
      inWidth,
      c,
      outHeight,
      outWidth,
      filterHeight,
      filterWidth,
      reluInput ? 1 : 0,
      sums ? addressOf(b, sums) : 0,
    );
    if (reluInput) reluMasked.set(out.dataId, reluInput);
    if (sums) {
      const f64 = b.typedArrayFromHeap(sums) as Float32Array;
      channelSums.set(out.dataId, Float32Array.from(new Float64Array(f64.buffer, f64.byteOffset, c)));
      b.disposeData(sums.dataId);
    }
    return out;
  }
  if (kernels && input.dtype === 'float32' && dy.dtype === 'float32') {
    const run = c % 4 === 0 ? kernels.maxPoolGrad4 : kernels.maxPoolGrad;
    run(
      addressOf(b, input),
      addressOf(b, dy),
      addressOf(b, out),
      batchSize,
      inHeight,
      inWidth,
      c,
      outHeight,
      outWidth,
      strideHeight,
      strideWidth,
      filterHeight,
      filterWidth,
      top,
      left,
    );
    return out;
  }
  const dx = b.typedArrayFromHeap(out) as Float32Array;
  dx.fill(0);
  const x = b.typedArrayFromHeap(input) as Float32Array;
  const g = b.typedArrayFromHeap(dy) as Float32Array;
  const best = new Float32Array(c);
  const where = new Int32Array(c);
  for (let n = 0; n < batchSize; n++) {
    for (let oh = 0; oh < outHeight; oh++) {
      const h0 = oh * strideHeight - top;
      const hs = Math.max(0, h0);
      const he = Math.min(inHeight, h0 + filterHeight);
      for (let ow = 0; ow < outWidth; ow++) {
        const w0 = ow * strideWidth - left;
        const ws = Math.max(0, w0);
        const we = Math.min(inWidth, w0 + filterWidth);
        if (hs >= he || ws >= we) continue;
        // The first tap in the window starts every channel's running maximum.
        const first = ((n * inHeight + hs) * inWidth + ws) * c;
        for (let k = 0; k < c; k++) {
          best[k] = x[first + k];
          where[k] = first + k;
        }
        for (let h = hs; h < he; h++) {
          for (let w = h === hs ? ws + 1 : ws; w < we; w++) {
            const base = ((n * inHeight + h) * inWidth + w) * c;
            for (let k = 0; k < c; k++) {
              const v = x[base + k];
              if (v > best[k]) {
                best[k] = v;
                where[k] = base + k;
              }
            }
          }
        }
        const gBase = ((n * outHeight + oh) * outWidth + ow) * c;
        for (let k = 0; k < c; k++) dx[where[k]] += g[gBase + k];
      }
    }
  }
  return out;
}

/** Moves the last two axes: [..., r, c] to [..., c, r]. */
function swapLastTwo(s: KernelScope, t: Info): Info {
  const rank = t.shape.length;
  const perm = Array.from({ length: rank }, (_, i) => i);
  perm[rank - 2] = rank - 1;
  perm[rank - 1] = rank - 2;
  return s.run('Transpose', { x: t }, { perm });
}

/**
 * The wasm backend multiplies a transposed operand (as every dense and recurrent gradient does)
 * about ten times slower than a plain one; transposing it first and multiplying plainly is
 * faster by far. Serves BatchMatMul and _FusedMatMul.
 */
function plainMatMul(original: tf.KernelFunc): (args: KernelArgs) => Info {
  return ({ inputs, attrs, backend }) => {
    const { transposeA, transposeB } = (attrs ?? {}) as { transposeA?: boolean; transposeB?: boolean };
    const kernels = kernelsOf(backend as HeapBackend);
    const onHeap =
      kernels && paths.matMul ? heapMatMul(backend as HeapBackend, kernels, inputs, attrs ?? {}) : undefined;
    if (onHeap) return onHeap;
    if (!transposeA && !transposeB) return original({ inputs, attrs, backend } as never) as Info;
    return scoped(backend, (s) => {
      const a = transposeA ? swapLastTwo(s, inputs.a) : inputs.a;
      const b = transposeB ? swapLastTwo(s, inputs.b) : inputs.b;
      return s.adopt(
        original({
          inputs: { ...inputs, a, b },
          attrs: { ...attrs, transposeA: false, transposeB: false },
          backend,
        } as never) as Info,
      );
    });
  };
}

/** Which heap kernel multiplies these shapes (see heapMatMul), with the product's geometry. */
interface MatMulPlan {
  kernel: `convForward${number}x${number}` | `convFilterGrad${number}x${number}`;
  lead: number[];
  batch: number;
  m: number;
  k: number;
  n: number;
}

function matMulPlan(
  aShape: number[],
  bShape: number[],
  transposeA: boolean,
  transposeB: boolean,
  fused: boolean,
): MatMulPlan | undefined {
  const rank = aShape.length;
  if (!paths.matMul || rank < 2 || bShape.length !== rank || (transposeA && transposeB)) return undefined;
  const lead = aShape.slice(0, -2);
  if (lead.some((d, i) => d !== bShape[i])) return undefined;
  const batch = lead.reduce((p, q) => p * q, 1);
  const [ar, ac] = aShape.slice(-2);
  const [br, bc] = bShape.slice(-2);
  const [m, k] = transposeA ? [ac, ar] : [ar, ac];
  const n = transposeB ? br : bc;
  if ((transposeB ? bc : br) !== k || batch * m * n === 0) return undefined;
  if (transposeA) {
    // a^T b sums over a's rows as positions: the filter gradient of a 1x1 convolution.
    const block = fused ? undefined : CONV_FILTER_BLOCKS.find(([i, o]) => m % i === 0 && n % o === 0);
    return block && { kernel: `convFilterGrad${block[0]}x${block[1]}`, lead, batch, m, k, n };
  }
  const block = CONV_FORWARD_BLOCKS.find(([p, c]) => m >= p && n % c === 0);
  return block && { kernel: `convForward${block[0]}x${block[1]}`, lead, batch, m, k, n };
}

/**
 * Where a float32 matMul of these shapes runs on wasm: 'heap' (the compiled kernels) or the
 * backend's 'native' kernel (for tests and diagnostics); `fused` with a bias or activation.
 */
export function matMulPath(
  aShape: number[],
  bShape: number[],
  transposeA = false,
  transposeB = false,
  fused = false,
): 'heap' | 'native' {
  if (!kernelsOf(tf.backend() as unknown as HeapBackend)) return 'native';
  return matMulPlan(aShape, bShape, transposeA, transposeB, fused) ? 'heap' : 'native';
}

/**
 * BatchMatMul and _FusedMatMul on the heap's convolution kernels where the shapes let them (the
 * product of each batch entry as a 1x1 convolution, register-blocked SIMD, no weight packing):
 * a plain product a (m x k) b (k x n) on the forward kernel, with a fused bias and ReLU; a^T b
 * (the weight gradient x^T dy) on the filter gradient kernel; a b^T (the input gradient dy W^T)
 * on the forward kernel after transposing the (small) b. `undefined` for other shapes, dtypes
 * and activations.
 */
function heapMatMul(
  backend: HeapBackend,
  kernels: HeapKernels,
  inputs: Record<string, Info>,
  attrs: Attrs,
): Info | undefined {
  const { a, b, bias, preluActivationWeights } = inputs;
  const { transposeA, transposeB, activation } = attrs as {
    transposeA?: boolean;
    transposeB?: boolean;
    activation?: string;
  };
  const fused = Boolean(bias) || (activation !== undefined && activation !== 'linear');
  if (
    a.dtype !== 'float32' ||
    b.dtype !== 'float32' ||
    preluActivationWeights ||
    (activation !== undefined && activation !== 'linear' && activation !== 'relu')
  ) {
    return undefined;
  }
  const plan = matMulPlan(a.shape, b.shape, Boolean(transposeA), Boolean(transposeB), fused);
  if (!plan) return undefined;
  const { kernel, lead, batch, m, k, n } = plan;
  if (bias && (bias.dtype !== 'float32' || bias.shape.length !== 1 || bias.shape[0] !== n)) return undefined;
  const step = (rows: number, cols: number): number => rows * cols * 4;
  if (transposeA) {
    const out = backend.makeOutput([...lead, m, n], 'float32');
    const [pa, pb, po] = [a, b, out].map((t) => addressOf(backend, t));
    for (let e = 0; e < batch; e++) {
      kernels[kernel](
        ...convArgs(pa + e * step(k, m), pb + e * step(k, n), po + e * step(m, n), pointwise(1, k, m, n)),
      );
    }
    return out;
  }
  return scoped(backend, (s) => {
    const right = transposeB ? swapLastTwo(s, b) : b;
    const out = backend.makeOutput([...lead, m, n], 'float32');
    const [pa, pb, po] = [a, right, out].map((t) => addressOf(backend, t));
    const pBias = bias ? addressOf(backend, bias) : 0;
    for (let e = 0; e < batch; e++) {
      kernels[kernel](
        ...convArgs(pa + e * step(m, k), pb + e * step(k, n), po + e * step(m, n), pointwise(1, m, k, n)),
        pBias,
        activation === 'relu' ? 1 : 0,
      );
    }
    return out;
  });
}

/**
 * Sums over leading axes (bias gradients: over batch, height and width) in one pass over the
 * wasm heap, far faster than the backend's transposing reduction.
 */
function leadingAxesSum(original: tf.KernelFunc): (args: KernelArgs) => Info {
  return ({ inputs, attrs, backend }) => {
    const { x } = inputs;
    const { axis, keepDims } = (attrs ?? {}) as { axis: number | number[]; keepDims?: boolean };
    const rank = x.shape.length;
    const axes = tf.util.parseAxisParam(axis, x.shape).sort((p, q) => p - q);
    const leading = axes.length > 0 && axes.length < rank && axes.every((a, i) => a === i);
    if (x.dtype !== 'float32' || !leading) return original({ inputs, attrs, backend } as never) as Info;
    const rows = x.shape.slice(0, axes.length).reduce((p, q) => p * q, 1);
    const kept = x.shape.slice(axes.length);
    const cols = kept.reduce((p, q) => p * q, 1);
    const heap = backend as HeapBackend;
    const out = heap.makeOutput(keepDims ? [...axes.map(() => 1), ...kept] : kept, 'float32');
    const known = channelSums.get(x.dataId);
    if (known && known.length === cols && kept.length === 1) {
      (heap.typedArrayFromHeap(out) as Float32Array).set(known);
      return out;
    }
    const kernels = kernelsOf(heap);
    if (kernels) {
      // cols f64 accumulators, as float32 pairs on the heap.
      const scratch = heap.makeOutput([cols * 2], 'float32');
      try {
        const sum = cols % 4 === 0 ? kernels.leadingSum4 : kernels.leadingSum;
        sum(addressOf(heap, x), addressOf(heap, out), rows, cols, addressOf(heap, scratch));
      } finally {
        heap.disposeData(scratch.dataId);
      }
      return out;
    }
    const values = heap.typedArrayFromHeap(x) as Float32Array;
    const acc = new Float64Array(cols);
    for (let r = 0, at = 0; r < rows; r++) for (let c = 0; c < cols; c++, at++) acc[c] += values[at];
    (heap.typedArrayFromHeap(out) as Float32Array).set(acc);
    return out;
  };
}

/**
 * Add of a bias over the last axis (every dense and convolution layer's bias while training) in
 * one pass on the heap; the backend's broadcasting add takes about twice as long. Other adds go
 * to the backend's kernel.
 */
function heapBiasAdd(native: tf.KernelFunc): (args: KernelArgs) => Info {
  return ({ inputs, attrs, backend }) => {
    const { a, b } = inputs;
    const heap = backend as HeapBackend;
    const kernels = kernelsOf(heap);
    const cols = a.shape[a.shape.length - 1];
    const bias =
      kernels &&
      a.dtype === 'float32' &&
      b.dtype === 'float32' &&
      a.shape.length >= 2 &&
      b.shape.length === 1 &&
      b.shape[0] === cols &&
      cols % 4 === 0;
    if (!bias) return native({ inputs, attrs, backend } as never) as Info;
    const out = heap.makeOutput(a.shape, 'float32');
    kernels.addRows(
      addressOf(heap, a),
      addressOf(heap, b),
      addressOf(heap, out),
      tf.util.sizeFromShape(a.shape) / cols,
      cols,
    );
    return out;
  };
}

/**
 * Identity (TF.js clones every tensor it saves for the backward pass through it) shares the data,
 * as the cpu backend does, where the wasm backend copies it.
 */
function sharedIdentity(native: tf.KernelFunc): (args: KernelArgs) => Info {
  return ({ inputs, attrs, backend }) => {
    const { x } = inputs;
    if (x.dtype === 'string') return native({ inputs, attrs, backend } as never) as Info;
    (backend as Backend).incRef(x.dataId);
    return { dataId: x.dataId, shape: x.shape, dtype: x.dtype };
  };
}

/** The ReLU gradient in one pass: dy where the ReLU's input is positive, else 0. */
const RELU_GRAD = 'EdgeAiReluGrad';

function heapReluGrad({ inputs, backend }: KernelArgs): Info {
  const { dy, x } = inputs;
  const heap = backend as HeapBackend;
  if (reluMasked.get(dy.dataId) === x.dataId) {
    // The pooling gradient that produced dy applied this ReLU's gradient already.
    heap.incRef(dy.dataId);
    return { dataId: dy.dataId, shape: dy.shape, dtype: dy.dtype };
  }
  const kernels = kernelsOf(heap);
  if (!kernels) {
    return scoped(backend, (s) => s.run('Multiply', { a: dy, b: s.run('Step', { x }, { alpha: 0 }) }));
  }
  const out = heap.makeOutput(dy.shape, 'float32');
  kernels.reluGrad(
    addressOf(heap, dy),
    addressOf(heap, x),
    addressOf(heap, out),
    tf.util.sizeFromShape(dy.shape),
  );
  return out;
}

/**
 * The Relu gradient (TF.js: Step, Cast and Multiply, three passes and two intermediates) as the
 * one-pass kernel where the active backend has it, TF.js's own formula elsewhere.
 */
function registerReluGradient(): void {
  tf.registerGradient({
    kernelName: 'Relu',
    inputsToSave: ['x'],
    gradFunc: (dy, saved) => {
      const [x] = saved;
      const g = Array.isArray(dy) ? dy[0] : dy;
      return {
        x: () =>
          tf.getKernel(RELU_GRAD, tf.getBackend()) && x.dtype === 'float32' && g.dtype === 'float32'
            ? (tf.engine().runKernel(RELU_GRAD, { dy: g, x }, {}) as tf.Tensor)
            : tf.mul(g, tf.cast(tf.step(x), 'float32')),
      };
    },
  });
}

/** Kernels the wasm backend lacks. */
const MISSING: Array<[string, (args: KernelArgs) => Info]> = [
  ['Conv2DBackpropFilter', conv2DBackpropFilter],
  ['DepthwiseConv2dNativeBackpropFilter', depthwiseBackpropFilter],
  ['DepthwiseConv2dNativeBackpropInput', depthwiseBackpropInput],
];

function register(kernelName: string, kernelFunc: (args: KernelArgs) => Info): void {
  tf.registerKernel({ kernelName, backendName: 'wasm', kernelFunc: kernelFunc as unknown as tf.KernelFunc });
}

function replace(kernelName: string, kernelFunc: (args: KernelArgs) => Info): void {
  if (tf.getKernel(kernelName, 'wasm')) tf.unregisterKernel(kernelName, 'wasm');
  register(kernelName, kernelFunc);
}

/** Native kernels wrapped to take a faster path where they are slow. */
const FASTER: Array<[string, (native: tf.KernelFunc) => (args: KernelArgs) => Info]> = [
  ['Conv2D', heapConv2D],
  ['Add', heapBiasAdd],
  ['Identity', sharedIdentity],
  ['FusedConv2D', heapConv2D],
  ['BatchMatMul', plainMatMul],
  ['_FusedMatMul', plainMatMul],
  ['Sum', leadingAxesSum],
  ['Relu', trackedRelu],
  ['MaxPool', heapMaxPool],
];

let replacedSlowOrWrong = false;

/**
 * Makes the wasm backend train convolutional and pooling models, and train fast: registers the
 * gradient kernels it lacks, replaces its slow Conv2DBackpropInput by a Conv2D-based one and its
 * wrong MaxPoolGrad by a heap one, and wraps BatchMatMul, _FusedMatMul and Sum with fast paths;
 * also puts the forward convolution, bias adds and Identity on theirs. Call once wasm is active;
 * calling again is harmless.
 * Returns the kernel names registered or replaced now.
 */
export function registerWasmGradients(): string[] {
  const changed: string[] = [];
  for (const [kernelName, kernelFunc] of MISSING) {
    if (tf.getKernel(kernelName, 'wasm')) continue;
    register(kernelName, kernelFunc);
    changed.push(kernelName);
  }
  if (!replacedSlowOrWrong && tf.getBackend() === 'wasm') {
    replacedSlowOrWrong = true;
    replace('Conv2DBackpropInput', conv2DBackpropInput);
    changed.push('Conv2DBackpropInput');
    replace('MaxPoolGrad', heapMaxPoolGrad);
    changed.push('MaxPoolGrad');
    if (kernelsOf(tf.backend() as unknown as HeapBackend)) {
      register(RELU_GRAD, heapReluGrad);
      registerReluGradient();
      changed.push(RELU_GRAD);
    }
    for (const [kernelName, wrap] of FASTER) {
      const native = tf.getKernel(kernelName, 'wasm');
      if (!native) continue;
      replace(kernelName, wrap(native.kernelFunc));
      changed.push(kernelName);
    }
  }
  return changed;
}

/** Kernel names the wasm backend still lacks that the cpu backend has (for diagnostics). */
export function missingWasmKernels(): string[] {
  const wasm = new Set(tf.getKernelsForBackend('wasm').map((k) => k.kernelName));
  return tf
    .getKernelsForBackend('cpu')
    .map((k) => k.kernelName)
    .filter((name) => !wasm.has(name));
}
