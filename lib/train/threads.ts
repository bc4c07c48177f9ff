import os from 'node:os';

/** How many threads train by default: every core but one, which stays with Node-RED. */
export function defaultTrainingThreads(): number {
  const cores = typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
  return Math.max(1, cores - 1);
}
