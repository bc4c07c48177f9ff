/**
 * TF.js layers model -> ONNX. The exporter core walks the graph; each layer family (split as
 * tfjs-layers/src/layers splits them) emits its layers' nodes with typed configs.
 */
import type { LayersModel } from '@tensorflow/tfjs-layers';
import { onnx } from '../../onnx-proto';
import { OnnxExportUnsupported } from '../../../errors';
import { OnnxType, tensorValueInfo } from '../onnx-graph';
import { activationLayers } from './advanced-activations';
import { convolutionalLayers } from './convolutional';
import { coreLayers, Exporter, identity, type LayerEmitter, type Shape, type Value } from './core';
import { mergeLayers } from './merge';
import { normalizationLayers } from './normalization';
import { poolingLayers } from './pooling';
import { recurrentLayers } from './recurrent';
import { wrapperLayers } from './wrappers';

export { OnnxExportUnsupported };

export const ONNX_EXPORT_OPSET = 17;
export const ONNX_EXPORT_IR_VERSION = 8;

/** Every layer class the exporter knows, by TF.js class name. */
const EMITTERS: Readonly<Record<string, LayerEmitter>> = {
  ...coreLayers,
  ...activationLayers,
  ...convolutionalLayers,
  ...poolingLayers,
  ...normalizationLayers,
  ...mergeLayers,
  ...recurrentLayers,
  ...wrapperLayers,
};

/**
 * Converts a TF.js layers model to an ONNX model (bytes of a ModelProto) with one input of
 * shape [batch, ...inputShape] and one output, computing the same function.
 */
export function exportLayersModelToOnnx(model: LayersModel): Uint8Array {
  if (model.inputs.length !== 1)
    throw new OnnxExportUnsupported(`${model.inputs.length} inputs (one is supported)`);
  if (model.outputs.length !== 1) {
    throw new OnnxExportUnsupported(`${model.outputs.length} outputs (one is supported)`);
  }
  const ex = new Exporter(EMITTERS);
  ex.g.reserve('input', 'output');
  const inShape = model.inputs[0].shape as Shape;
  const input: Value = { name: 'input', shape: inShape, perm: identity(inShape.length) };
  const [result] = ex.container(model, [input]);
  const out = ex.layout(result, identity(result.shape.length));
  ex.g.node('Identity', [out.name], { outputs: ['output'], name: 'output' });

  // Unknown sizes get their own names: a shared dim_param would claim the sizes are equal.
  const dims = (shape: Shape, prefix: string) =>
    shape.map((d, i) => (i === 0 ? 'batch' : (d ?? `${prefix}${i}`)));
  const graph: onnx.IGraphProto = {
    name: model.name || 'model',
    node: ex.g.nodes,
    initializer: ex.g.initializers,
    input: [tensorValueInfo('input', OnnxType.FLOAT, dims(inShape, 'input_'))],
    output: [tensorValueInfo('output', OnnxType.FLOAT, dims(out.shape, 'output_'))],
  };
  const proto = onnx.ModelProto.create({
    irVersion: ONNX_EXPORT_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_EXPORT_OPSET }],
    producerName: 'node-red-contrib-edge-ai',
    graph,
  });
  return onnx.ModelProto.encode(proto).finish();
}
