import { InputError } from '../../errors';
import { sizeOf } from '../../preprocess/shape';
import type { TensorSpec } from './runner';

/** Zero-filled feeds for every input (probes and warm-up runs). */
export function zeroFeeds(inputs: readonly TensorSpec[], batchSize: number): Record<string, Float32Array> {
  return Object.fromEntries(
    inputs.map((spec) => [spec.name, new Float32Array(sizeOf(spec.shape) * (spec.batched ? batchSize : 1))]),
  );
}

/** An InputError naming the inputs `feeds` lacks, or undefined when every input is there. */
export function missingFeeds(
  inputs: readonly TensorSpec[],
  feeds: Readonly<Record<string, Float32Array>>,
): InputError | undefined {
  const missing = inputs.filter((spec) => !feeds[spec.name]).map((spec) => spec.name);
  if (missing.length === 0) return undefined;
  return new InputError(
    `the model has ${inputs.length} inputs (${inputs.map((s) => s.name).join(', ')}); missing ${missing.join(', ')}`,
  );
}
