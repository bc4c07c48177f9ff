/** Pooling layers: Max/AveragePooling1D-3D and their global forms (tfjs-layers/src/layers/pooling.ts). */
import { attr } from '../onnx-graph';
import { convLayout, convPads } from './convolutional';
import { configOf, identity, single, toArray, type DataFormat, type LayerEmitter } from './core';

export interface PoolConfig {
  poolSize: number | number[];
  strides?: number | number[] | null;
  padding: string;
  dataFormat?: DataFormat;
}

export interface GlobalPoolConfig {
  dataFormat?: DataFormat;
}

function pool(op: 'MaxPool' | 'AveragePool'): LayerEmitter {
  return single((ex, layer, input, out) => {
    const cfg = configOf<PoolConfig>(layer);
    const { perm, spatial } = convLayout(input, cfg.dataFormat);
    const x = ex.layout(input, perm);
    const n = spatial.length;
    const size = toArray(cfg.poolSize, n, 'pool size');
    const strides = toArray(cfg.strides ?? size, n, 'strides');
    const ones = new Array<number>(n).fill(1);
    const attrs = [
      attr.ints('kernel_shape', size),
      attr.ints('strides', strides),
      convPads(layer, cfg.padding, spatial, size, strides, ones),
    ];
    // TF averages over the valid (unpadded) cells only; ONNX does so with count_include_pad = 0.
    if (op === 'AveragePool') attrs.push(attr.int('count_include_pad', 0));
    return { name: ex.g.op(op, [x.name], attrs, layer.name), shape: out, perm };
  });
}

function globalPool(op: 'ReduceMean' | 'ReduceMax'): LayerEmitter {
  return single((ex, layer, input, out) => {
    const rank = input.shape.length;
    const spatial =
      configOf<GlobalPoolConfig>(layer).dataFormat === 'channelsFirst'
        ? identity(rank - 2).map((i) => i + 2)
        : identity(rank - 2).map((i) => i + 1);
    const axes = spatial.map((a) => input.perm.indexOf(a));
    const name = ex.g.op(op, [input.name], [attr.ints('axes', axes), attr.int('keepdims', 0)]);
    const kept = input.perm.filter((a) => !spatial.includes(a));
    return { name, shape: out, perm: kept.map((a) => kept.filter((b) => b < a).length) };
  });
}

export const poolingLayers: Record<string, LayerEmitter> = {
  MaxPooling1D: pool('MaxPool'),
  MaxPooling2D: pool('MaxPool'),
  MaxPooling3D: pool('MaxPool'),
  AveragePooling1D: pool('AveragePool'),
  AveragePooling2D: pool('AveragePool'),
  AveragePooling3D: pool('AveragePool'),
  GlobalAveragePooling1D: globalPool('ReduceMean'),
  GlobalAveragePooling2D: globalPool('ReduceMean'),
  GlobalMaxPooling1D: globalPool('ReduceMax'),
  GlobalMaxPooling2D: globalPool('ReduceMax'),
};
