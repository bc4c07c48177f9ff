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

/** The ONNX names of a model's inputs or outputs: `input` alone, else `input_0`, `input_1`... */
function ioNames(base: string, count: number): string[] {
  return count === 1 ? [base] : Array.from({ length: count }, (_, i) => `${base}_${i}`);
}

/**
 * Converts a TF.js layers model to an ONNX model (bytes of a ModelProto) computing the same
 * function. One input and output are named `input` and `output`; a functional model with
 * several has `input_0`, `input_1`... and `output_0`... in the model's own order (merges such as
 * Concatenate and Add join the branches). Each has shape [batch, ...its shape].
 */
export function exportLayersModelToOnnx(model: LayersModel): Uint8Array {
  if (model.inputs.length === 0) throw new OnnxExportUnsupported('a model without inputs');
  const ex = new Exporter(EMITTERS);
  const inNames = ioNames('input', model.inputs.length);
  const outNames = ioNames('output', model.outputs.length);
  ex.g.reserve(...inNames, ...outNames);
  const inShapes = model.inputs.map((t) => t.shape as Shape);
  const inputs: Value[] = inShapes.map((shape, i) => ({
    name: inNames[i],
    shape,
    perm: identity(shape.length),
  }));
  const results = ex.container(model, inputs);
  const outs = results.map((r, i) => {
    const out = ex.layout(r, identity(r.shape.length));
    ex.g.node('Identity', [out.name], { outputs: [outNames[i]], name: outNames[i] });
    return out;
  });

  // Unknown sizes get their own names: a shared dim_param would claim the sizes are equal.
  const dims = (shape: Shape, prefix: string) =>
    shape.map((d, i) => (i === 0 ? 'batch' : (d ?? `${prefix}${i}`)));
  const graph: onnx.IGraphProto = {
    name: model.name || 'model',
    node: ex.g.nodes,
    initializer: ex.g.initializers,
    input: inShapes.map((shape, i) =>
      tensorValueInfo(inNames[i], OnnxType.FLOAT, dims(shape, `${inNames[i]}_`)),
    ),
    output: outs.map((o, i) =>
      tensorValueInfo(outNames[i], OnnxType.FLOAT, dims(o.shape, `${outNames[i]}_`)),
    ),
  };
  const proto = onnx.ModelProto.create({
    irVersion: ONNX_EXPORT_IR_VERSION,
    opsetImport: [{ domain: '', version: ONNX_EXPORT_OPSET }],
    producerName: 'node-red-contrib-edge-ai',
    graph,
  });
  return onnx.ModelProto.encode(proto).finish();
}
