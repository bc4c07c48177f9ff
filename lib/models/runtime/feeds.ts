import { InputError } from '../../errors';
import { sizeOf } from '../../preprocess/shape';
import { concatFloat32 } from '../../util/arrays';
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

/**
 * Runs a batch one sample at a time (for models with a fixed batch of 1) and lays the outputs
 * out one sample after another, as one batched run would. Unbatched inputs go to every run.
 */
export async function runSampleBySample(
  inputs: readonly TensorSpec[],
  feeds: Readonly<Record<string, Float32Array>>,
  batchSize: number,
  runOne: (one: Record<string, Float32Array>) => Promise<Record<string, Float32Array>>,
): Promise<Record<string, Float32Array>> {
  const parts: Record<string, Float32Array[]> = {};
  for (let i = 0; i < batchSize; i++) {
    const one: Record<string, Float32Array> = {};
    for (const spec of inputs) {
      const all = feeds[spec.name];
      const per = spec.batched ? all.length / batchSize : all.length;
      one[spec.name] = spec.batched ? all.subarray(i * per, (i + 1) * per) : all;
    }
    for (const [name, value] of Object.entries(await runOne(one))) (parts[name] ??= []).push(value);
  }
  return Object.fromEntries(Object.entries(parts).map(([name, list]) => [name, concatFloat32(list)]));
}
