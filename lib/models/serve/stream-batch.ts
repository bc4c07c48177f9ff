import { runNamed, type ModelRunner, type TensorSpec } from '../runtime/runner';
import { splitOutputs, stackFeeds } from './inference';
import type { StreamStates } from './streams';

/** One message of a stateful model: its own feeds (or why they could not be made) and its stream. */
export interface StreamJob {
  feeds: Record<string, Float32Array> | Error;
  stream: string;
}

export interface StreamJobResult {
  outputs: Record<string, Float32Array>;
  /** How many messages ran in the same model call. */
  batchSize: number;
}

/**
 * Whether messages of different streams can run as one batch: every state input and output has
 * a batch dimension (the stream states are stacked along it like the messages' own inputs).
 */
export function streamsBatchable(
  streams: StreamStates,
  inputs: readonly TensorSpec[],
  outputs: readonly TensorSpec[],
): boolean {
  return streams.settings.state.every(
    (pair) =>
      inputs.find((s) => s.name === pair.input)?.batched === true &&
      outputs.find((s) => s.name === pair.output)?.batched === true,
  );
}

/**
 * Runs the queued messages of a stateful model. Messages of one stream run in order, each on the
 * state the one before left; messages of different streams are independent, so with `batch`
 * the first message of every stream runs as one batch (their states stacked), then the second
 * of every stream, and so on. The results equal running them one by one: a batch whose
 * streams would push another stream out of the bound (maxStreams) runs one by one instead, so
 * that the same stream is forgotten, and a batch that fails is retried one by one so that only
 * the failing message gets the error.
 */
export async function runStreamJobs(
  runner: ModelRunner,
  streams: StreamStates,
  inputs: readonly TensorSpec[],
  jobs: readonly StreamJob[],
  batch: boolean,
): Promise<(StreamJobResult | Error)[]> {
  const results: (StreamJobResult | Error)[] = new Array(jobs.length);
  const waves: number[][] = [];
  const seen = new Map<string, number>();
  jobs.forEach((job, i) => {
    if (job.feeds instanceof Error) {
      results[i] = job.feeds;
      return;
    }
    const wave = seen.get(job.stream) ?? 0;
    seen.set(job.stream, wave + 1);
    (waves[wave] ??= []).push(i);
  });
  const one = async (i: number): Promise<void> => {
    const job = jobs[i];
    // The state is read when the message runs: an earlier message of its stream just set it.
    const feeds = { ...(job.feeds as Record<string, Float32Array>), ...streams.feedsFor(job.stream, inputs) };
    try {
      const outputs = await runNamed(runner, feeds, 1);
      streams.update(job.stream, outputs);
      results[i] = { outputs, batchSize: 1 };
    } catch (err) {
      results[i] = err as Error;
    }
  };
  for (const wave of waves) {
    const fresh = wave.filter((i) => !streams.has(jobs[i].stream)).length;
    if (!batch || wave.length === 1 || streams.size + fresh > streams.settings.maxStreams) {
      for (const i of wave) await one(i);
      continue;
    }
    const feeds = wave.map((i) => ({
      ...(jobs[i].feeds as Record<string, Float32Array>),
      ...streams.feedsFor(jobs[i].stream, inputs),
    }));
    let outputs: Record<string, Float32Array>[];
    try {
      outputs = splitOutputs(await runNamed(runner, stackFeeds(feeds, inputs), wave.length), wave.length);
    } catch {
      for (const i of wave) await one(i);
      continue;
    }
    wave.forEach((i, k) => {
      streams.update(jobs[i].stream, outputs[k]);
      results[i] = { outputs: outputs[k], batchSize: wave.length };
    });
  }
  return results;
}
