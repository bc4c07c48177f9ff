/**
 * What every inference runtime offers, whatever the model format. Inputs and outputs are
 * flat row-major Float32Arrays of a whole batch; shapes exclude the batch dimension.
 */
export type RuntimeName = 'onnxruntime-node' | 'onnxruntime-web' | 'tfjs-node' | 'tfjs-wasm' | 'tfjs-cpu';

export interface ModelRunner {
  readonly runtime: RuntimeName;
  /** Per-sample input shape, without the batch dimension, e.g. [50, 6]. */
  readonly inputShape: number[];
  /** Per-sample output shape, without the batch dimension, e.g. [10]. */
  readonly outputShape: number[];
  /** Runs `batchSize` samples laid out one after another; returns their outputs the same way. */
  predict(input: Float32Array, batchSize: number): Promise<Float32Array>;
  /** Releases tensors, sessions and backends' memory held for this model. */
  dispose(): Promise<void>;
}
