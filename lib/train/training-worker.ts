/**
 * Runs one training job in a worker thread so the caller's event loop keeps serving. The data
 * buffers are transferred, not copied. `cancel()` stops the run after the current batch;
 * `terminate()` ends the thread at once (close / redeploy).
 */
import path from 'node:path';
import { WorkerClient } from '../util/worker-rpc';
import {
  CancelledError,
  type EpochProgress,
  type TrainData,
  type TrainResult,
  type TrainSettings,
} from './trainer';
import type { TrainParams } from './worker-protocol';

/** Path of the compiled training worker script (beside this file). */
export const TRAINING_WORKER_SCRIPT = path.join(__dirname, 'worker.js');

/** A new training worker thread; the trainer's CancelledError crosses as itself. */
export function trainingWorkerClient(): WorkerClient {
  return new WorkerClient(TRAINING_WORKER_SCRIPT, { errors: [CancelledError], label: 'training worker' });
}

/** Buffers of the dataset to move into the worker. */
export function dataBuffers(data: TrainData): ArrayBufferLike[] {
  return [data.x.buffer, data.y?.buffer].filter((b): b is ArrayBufferLike => b !== undefined);
}

export class TrainingWorker {
  private client: WorkerClient | undefined;
  /** Settles when the latest thread has exited. */
  private exited: Promise<void> = Promise.resolve();

  private static threads = 0;

  /** Training worker threads of this process that have started and not yet exited. */
  static get liveThreads(): number {
    return TrainingWorker.threads;
  }

  static readonly script = TRAINING_WORKER_SCRIPT;

  get running(): boolean {
    return this.client !== undefined;
  }

  /**
   * Trains in a new worker thread. Resolves with the result; rejects with CancelledError after
   * cancel() or terminate(), or with the training error (a crashed worker included).
   */
  async run(
    settings: TrainSettings,
    data: TrainData,
    onProgress?: (progress: EpochProgress) => void,
  ): Promise<TrainResult> {
    if (this.client) throw new Error('a training run is already in progress');
    const client = trainingWorkerClient();
    this.client = client;
    this.exited = client.exited;
    TrainingWorker.threads++;
    void client.exited.then(() => TrainingWorker.threads--);
    try {
      const params: TrainParams = { settings, data };
      return await client.request<TrainResult, EpochProgress>('train', params, {
        onProgress,
        transfer: dataBuffers(data),
      });
    } finally {
      if (this.client === client) this.client = undefined;
      void client.terminate();
    }
  }

  /** Asks the run to stop after the current batch. */
  cancel(): void {
    this.client?.cancel();
  }

  /**
   * Ends the worker thread now (a pending run rejects with CancelledError) and resolves once the
   * thread has exited; after a finished run it just waits for that exit.
   */
  async terminate(): Promise<void> {
    const client = this.client;
    this.client = undefined;
    await client?.terminate(new CancelledError());
    await this.exited;
  }
}
