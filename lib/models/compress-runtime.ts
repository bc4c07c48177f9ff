/**
 * Minimal runners used to compare a model before and after compression: TF.js layers models
 * from in-memory artifacts (read by TF.js' own weight decoder, so quantized weights are checked
 * the way every TF.js user will load them) and ONNX models through ONNX Runtime.
 * Only the first input and first output of a model are evaluated.
 */
import type { io } from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type * as ortTypes from 'onnxruntime-common';
import { tf } from './tfjs';
import type { ModelRunner, RuntimeName } from './runner';

function concreteShape(shape: readonly (number | null)[], what: string): number[] {
  const rest = shape.slice(1);
  if (rest.some((d) => d === null || d < 0 || typeof d !== 'number')) {
    throw new Error(`${what} shape [${shape.join(', ')}] has unknown dimensions besides the batch`);
  }
  return rest as number[];
}

function tfjsRuntime(): RuntimeName {
  const backend = tf.getBackend();
  return backend === 'tensorflow' ? 'tfjs-node' : backend === 'wasm' ? 'tfjs-wasm' : 'tfjs-cpu';
}

/** Loads a layers model from artifacts with tfjs-layers and wraps it as a ModelRunner. */
export async function layersRunnerFromArtifacts(
  artifacts: io.ModelArtifacts,
): Promise<ModelRunner & { model: tfl.LayersModel }> {
  const model = await tfl.loadLayersModel(tf.io.fromMemory(artifacts));
  if (model.inputs.length !== 1) {
    model.dispose();
    throw new Error(`only single-input models can be evaluated, this one has ${model.inputs.length} inputs`);
  }
  let inputShape: number[];
  let outputShape: number[];
  try {
    inputShape = concreteShape(model.inputs[0].shape, 'input');
    outputShape = concreteShape(model.outputs[0].shape, 'output');
  } catch (err) {
    model.dispose();
    throw err;
  }
  return {
    model,
    runtime: tfjsRuntime(),
    inputShape,
    outputShape,
    async predict(input: Float32Array, batchSize: number): Promise<Float32Array> {
      const output = tf.tidy(() => {
        const result = model.predict(tf.tensor(input, [batchSize, ...inputShape], 'float32'));
        return Array.isArray(result) ? result[0] : result;
      });
      try {
        return (await output.data()) as Float32Array;
      } finally {
        output.dispose();
      }
    },
    async dispose(): Promise<void> {
      model.dispose();
    },
  };
}

type Ort = typeof ortTypes;

function loadOrt(): { ort: Ort; runtime: RuntimeName } {
  try {
    return { ort: require('onnxruntime-node') as Ort, runtime: 'onnxruntime-node' };
  } catch {
    return { ort: require('onnxruntime-web') as Ort, runtime: 'onnxruntime-web' };
  }
}

/** Opens ONNX model bytes in ONNX Runtime (node where installed, else web) as a ModelRunner. */
export async function onnxRunnerFromBytes(bytes: Uint8Array): Promise<ModelRunner> {
  const { ort, runtime } = loadOrt();
  const session = await ort.InferenceSession.create(bytes);
  const inputMeta = session.inputMetadata[0];
  const outputMeta = session.outputMetadata[0];
  const shapeOf = (meta: ortTypes.InferenceSession.ValueMetadata | undefined, what: string): number[] => {
    if (!meta || !meta.isTensor) throw new Error(`ONNX model has no tensor ${what}`);
    return concreteShape(
      meta.shape.map((d) => (typeof d === 'number' ? d : null)),
      `ONNX ${what}`,
    );
  };
  let inputShape: number[];
  let outputShape: number[];
  try {
    inputShape = shapeOf(inputMeta, 'input');
    outputShape = shapeOf(outputMeta, 'output');
  } catch (err) {
    await session.release();
    throw err;
  }
  return {
    runtime,
    inputShape,
    outputShape,
    async predict(input: Float32Array, batchSize: number): Promise<Float32Array> {
      const feed = new ort.Tensor('float32', input, [batchSize, ...inputShape]);
      const result = await session.run({ [session.inputNames[0]]: feed });
      const out = result[session.outputNames[0]];
      const data = Float32Array.from(out.data as Float32Array);
      for (const value of Object.values(result)) value.dispose();
      return data;
    },
    async dispose(): Promise<void> {
      await session.release();
    },
  };
}
