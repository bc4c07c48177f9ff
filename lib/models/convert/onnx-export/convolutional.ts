/**
 * Convolutional layers: Conv1D/2D/3D, Conv2DTranspose, DepthwiseConv2D, SeparableConv2D,
 * ZeroPadding2D, Cropping2D, UpSampling2D (tfjs-layers/src/layers/convolutional*.ts).
 */
import type { onnx } from '../../onnx-proto';
import { OnnxExportUnsupported } from '../../../errors';
import { attr, transposeData } from '../onnx-graph';
import { applyActivation } from './activations';
import {
  configOf,
  identity,
  single,
  toArray,
  weightsOf,
  type DataFormat,
  type Exporter,
  type Layer,
  type LayerEmitter,
  type Shape,
  type Value,
} from './core';

export interface ConvConfig {
  kernelSize: number | number[];
  strides?: number | number[];
  dilationRate?: number | number[];
  padding: string;
  dataFormat?: DataFormat;
  activation?: string;
}

export interface ZeroPaddingConfig {
  padding: [[number, number], [number, number]];
  dataFormat?: DataFormat;
}

export interface CroppingConfig {
  cropping: [[number, number], [number, number]];
  dataFormat?: DataFormat;
}

export interface UpSamplingConfig {
  size?: number | number[];
  interpolation?: string;
  dataFormat?: DataFormat;
}

/** Channels-first storage of a channels-last tensor: [0, last, 1, ..., last-1]. */
function channelsFirstPerm(rank: number): number[] {
  return [0, rank - 1, ...identity(rank - 2).map((i) => i + 1)];
}

/** TF 'SAME' padding: the extra pixel goes at the end, as ONNX SAME_UPPER. */
function samePads(inSize: number, k: number, stride: number, dilation: number): [number, number] {
  const kEff = (k - 1) * dilation + 1;
  const out = Math.ceil(inSize / stride);
  const total = Math.max((out - 1) * stride + kEff - inSize, 0);
  return [Math.floor(total / 2), total - Math.floor(total / 2)];
}

/** Layout, spatial input sizes and channel axis of a convolution-like layer's input. */
export function convLayout(x: Value, dataFormat: DataFormat | undefined): { perm: number[]; spatial: Shape } {
  const rank = x.shape.length;
  if ((dataFormat ?? 'channelsLast') === 'channelsFirst') {
    return { perm: identity(rank), spatial: x.shape.slice(2) };
  }
  return { perm: channelsFirstPerm(rank), spatial: x.shape.slice(1, rank - 1) };
}

export function convPads(
  layer: Layer,
  padding: string,
  spatial: Shape,
  kernel: number[],
  strides: number[],
  dilations: number[],
): onnx.IAttributeProto {
  const n = kernel.length;
  if (padding === 'valid') return attr.ints('pads', new Array<number>(2 * n).fill(0));
  if (padding === 'causal') {
    return attr.ints('pads', [
      ...kernel.map((k, i) => (k - 1) * dilations[i]),
      ...new Array<number>(n).fill(0),
    ]);
  }
  if (padding !== 'same') throw new OnnxExportUnsupported(`padding ${padding} in ${layer.name}`);
  if (spatial.some((d) => d == null)) return attr.string('auto_pad', 'SAME_UPPER');
  const pads = spatial.map((d, i) => samePads(d as number, kernel[i], strides[i], dilations[i]));
  return attr.ints('pads', [...pads.map((p) => p[0]), ...pads.map((p) => p[1])]);
}

/** Kernel size, strides and dilations of an n-D convolution. */
function convGeometry(
  cfg: ConvConfig,
  n: number,
): { kernelSize: number[]; strides: number[]; dilations: number[] } {
  return {
    kernelSize: toArray(cfg.kernelSize, n, 'kernel size'),
    strides: toArray(cfg.strides ?? 1, n, 'strides'),
    dilations: toArray(cfg.dilationRate ?? 1, n, 'dilation rate'),
  };
}

/** A Keras kernel [k..., a, b] as an ONNX initializer [b, a, k...]. */
function kernelInitializer(
  ex: Exporter,
  layer: Layer,
  kernel: { data: Float32Array; shape: number[] },
): string {
  const r = kernel.shape.length;
  const wPerm = [r - 1, r - 2, ...identity(r - 2)];
  return ex.g.floats(
    `${layer.name}/kernel`,
    transposeData(kernel.data, kernel.shape, wPerm),
    wPerm.map((p) => kernel.shape[p]),
  );
}

const conv = single((ex, layer, input, out) => {
  const cfg = configOf<ConvConfig>(layer);
  const { perm, spatial } = convLayout(input, cfg.dataFormat);
  const x = ex.layout(input, perm);
  const { kernelSize, strides, dilations } = convGeometry(cfg, spatial.length);
  const [kernel, bias] = weightsOf(layer);
  // Keras [k..., in, out] -> ONNX [out, in, k...]
  const ins = [x.name, kernelInitializer(ex, layer, kernel)];
  if (bias) ins.push(ex.g.floats(`${layer.name}/bias`, bias.data, bias.shape));
  const y = ex.g.op(
    'Conv',
    ins,
    [
      attr.ints('kernel_shape', kernelSize),
      attr.ints('strides', strides),
      attr.ints('dilations', dilations),
      convPads(layer, cfg.padding, spatial, kernelSize, strides, dilations),
    ],
    layer.name,
  );
  // TF.js reports a causal convolution's output length as if it were 'valid'.
  const shape = cfg.padding === 'causal' ? [out[0], input.shape[1], out[2]] : out;
  return applyActivation(ex, { name: y, shape, perm }, cfg.activation, layer);
});

const convTranspose = single((ex, layer, input, out) => {
  const cfg = configOf<ConvConfig>(layer);
  const { perm, spatial } = convLayout(input, cfg.dataFormat);
  const x = ex.layout(input, perm);
  const n = spatial.length;
  const { kernelSize, strides, dilations } = convGeometry(cfg, n);
  if (dilations.some((d) => d !== 1))
    throw new OnnxExportUnsupported(`dilated transposed convolution ${layer.name}`);
  const [kernel, bias] = weightsOf(layer);
  // Keras [k..., out, in] -> ONNX [in, out, k...]
  const ins = [x.name, kernelInitializer(ex, layer, kernel)];
  if (bias) ins.push(ex.g.floats(`${layer.name}/bias`, bias.data, bias.shape));
  const padsBegin: number[] = [];
  const padsEnd: number[] = [];
  const outputPadding: number[] = [];
  for (let i = 0; i < n; i++) {
    const k = kernelSize[i];
    const s = strides[i];
    if (cfg.padding === 'same') {
      // Output = input * stride, as the gradient of a SAME convolution.
      const total = Math.max(k - s, 0);
      padsBegin.push(Math.floor(total / 2));
      padsEnd.push(total - Math.floor(total / 2));
      outputPadding.push(Math.max(s - k, 0));
    } else if (cfg.padding === 'valid') {
      padsBegin.push(0);
      padsEnd.push(0);
      outputPadding.push(Math.max(s - k, 0));
    } else {
      throw new OnnxExportUnsupported(`padding ${String(cfg.padding)} in ${layer.name}`);
    }
  }
  const y = ex.g.op(
    'ConvTranspose',
    ins,
    [
      attr.ints('kernel_shape', kernelSize),
      attr.ints('strides', strides),
      attr.ints('pads', [...padsBegin, ...padsEnd]),
      attr.ints('output_padding', outputPadding),
    ],
    layer.name,
  );
  return applyActivation(ex, { name: y, shape: out, perm }, cfg.activation, layer);
});

function depthwiseConv(separable: boolean): LayerEmitter {
  return single((ex, layer, input, out) => {
    const cfg = configOf<ConvConfig>(layer);
    const { perm, spatial } = convLayout(input, cfg.dataFormat);
    const x = ex.layout(input, perm);
    const { kernelSize, strides, dilations } = convGeometry(cfg, 2);
    const weights = weightsOf(layer);
    const depthwise = weights[0];
    const [kh, kw, channels, multiplier] = depthwise.shape;
    // [kh, kw, in, mult] -> [in * mult, 1, kh, kw]: output channel c * mult + m, one group per input channel.
    const w = ex.g.floats(
      `${layer.name}/depthwise_kernel`,
      transposeData(depthwise.data, depthwise.shape, [2, 3, 0, 1]),
      [channels * multiplier, 1, kh, kw],
    );
    const ins = [x.name, w];
    const bias = separable ? undefined : weights[1];
    if (bias) ins.push(ex.g.floats(`${layer.name}/bias`, bias.data, bias.shape));
    let y = ex.g.op(
      'Conv',
      ins,
      [
        attr.ints('kernel_shape', kernelSize),
        attr.ints('strides', strides),
        attr.ints('dilations', dilations),
        attr.int('group', channels),
        convPads(layer, cfg.padding, spatial, kernelSize, strides, dilations),
      ],
      layer.name,
    );
    if (separable) {
      const pointwise = weights[1];
      const filters = pointwise.shape[3];
      const pw = ex.g.floats(
        `${layer.name}/pointwise_kernel`,
        transposeData(pointwise.data, pointwise.shape, [3, 2, 0, 1]),
        [filters, channels * multiplier, 1, 1],
      );
      const pwIns = [y, pw];
      if (weights[2]) pwIns.push(ex.g.floats(`${layer.name}/bias`, weights[2].data, weights[2].shape));
      y = ex.g.op('Conv', pwIns, [attr.ints('kernel_shape', [1, 1])], layer.name);
    }
    return applyActivation(ex, { name: y, shape: out, perm }, cfg.activation, layer);
  });
}

/** Spatial logical axes of a 2-D image layer. */
function imageAxes(dataFormat: DataFormat | undefined): [number, number] {
  return dataFormat === 'channelsFirst' ? [2, 3] : [1, 2];
}

const zeroPad = single((ex, layer, x, out) => {
  const cfg = configOf<ZeroPaddingConfig>(layer);
  const [[top, bottom], [left, right]] = cfg.padding;
  const [hAxis, wAxis] = imageAxes(cfg.dataFormat);
  const begin = x.perm.map((a) => (a === hAxis ? top : a === wAxis ? left : 0));
  const end = x.perm.map((a) => (a === hAxis ? bottom : a === wAxis ? right : 0));
  const name = ex.g.op('Pad', [x.name, ex.g.int64s('pads', [...begin, ...end])]);
  return { name, shape: out, perm: x.perm };
});

const crop = single((ex, layer, x, out) => {
  const cfg = configOf<CroppingConfig>(layer);
  const [[top, bottom], [left, right]] = cfg.cropping;
  const [hAxis, wAxis] = imageAxes(cfg.dataFormat);
  const axes = [x.perm.indexOf(hAxis), x.perm.indexOf(wAxis)];
  const endOf = (n: number) => (n > 0 ? -n : Number.MAX_SAFE_INTEGER);
  const name = ex.g.op('Slice', [
    x.name,
    ex.g.int64s('starts', [top, left]),
    ex.g.int64s('ends', [endOf(bottom), endOf(right)]),
    ex.g.int64s('axes', axes),
  ]);
  return { name, shape: out, perm: x.perm };
});

const upsample = single((ex, layer, x, out) => {
  const cfg = configOf<UpSamplingConfig>(layer);
  const [sh, sw] = toArray(cfg.size ?? 2, 2, 'upsampling size');
  const [hAxis, wAxis] = imageAxes(cfg.dataFormat);
  const scales = x.perm.map((a) => (a === hAxis ? sh : a === wAxis ? sw : 1));
  const nearest = (cfg.interpolation ?? 'nearest') === 'nearest';
  // TF.js resizes without align-corners or half-pixel centres: ONNX 'asymmetric'.
  const attrs = [
    attr.string('mode', nearest ? 'nearest' : 'linear'),
    attr.string('coordinate_transformation_mode', 'asymmetric'),
  ];
  if (nearest) attrs.push(attr.string('nearest_mode', 'floor'));
  const name = ex.g.op('Resize', [x.name, '', ex.g.floats('scales', scales, [scales.length])], attrs);
  return { name, shape: out, perm: x.perm };
});

export const convolutionalLayers: Record<string, LayerEmitter> = {
  Conv1D: conv,
  Conv2D: conv,
  Conv3D: conv,
  Conv2DTranspose: convTranspose,
  DepthwiseConv2D: depthwiseConv(false),
  SeparableConv2D: depthwiseConv(true),
  ZeroPadding2D: zeroPad,
  Cropping2D: crop,
  UpSampling2D: upsample,
};
