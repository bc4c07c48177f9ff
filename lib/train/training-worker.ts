/**
 * Runs one training job in a worker thread so the caller's event loop keeps serving. The data
 * buffers are transferred, not copied. `cancel()` stops the run after the current batch;
 * `terminate()` ends the thread at once (close / redeploy).
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import {
  CancelledError,
  type EpochProgress,
  type TrainData,
  type TrainResult,
  type TrainSettings,
} from './trainer';
import type { WorkerReply, WorkerRequest } from './worker-protocol';

export class TrainingWorker {
  private worker: Worker | undefined;
  private readonly cancelFlag = new Int32Array(new SharedArrayBuffer(4));
  private settle: ((err?: Error) => void) | undefined;
  /** Settles when the current thread has exited. */
  private exited: Promise<void> = Promise.resolve();

  private static threads = 0;

  /** Worker threads of this process that have started and not yet exited. */
  static get liveThreads(): number {
    return TrainingWorker.threads;
  }

  /** Path of the compiled worker script (beside this file). */
  static readonly script = path.join(__dirname, 'worker.js');

  get running(): boolean {
    return this.worker !== undefined;
  }

  /**
   * Trains in a new worker thread. Resolves with the result; rejects with CancelledError after
   * cancel() or terminate(), or with the training error (a crashed worker included).
   */
  run(
    settings: TrainSettings,
    data: TrainData,
    onProgress?: (progress: EpochProgress) => void,
  ): Promise<TrainResult> {
    if (this.worker) return Promise.reject(new Error('a training run is already in progress'));
    Atomics.store(this.cancelFlag, 0, 0);
    const worker = new Worker(TrainingWorker.script);
    TrainingWorker.threads++;
    this.exited = new Promise((resolve) =>
      worker.once('exit', () => {
        TrainingWorker.threads--;
        resolve();
      }),
    );
    this.worker = worker;
    return new Promise<TrainResult>((resolve, reject) => {
      let finished = false;
      const finish = (err?: Error, result?: TrainResult): void => {
        if (finished) return;
        finished = true;
        this.settle = undefined;
        if (this.worker === worker) this.worker = undefined;
        void worker.terminate();
        if (err) reject(err);
        else resolve(result as TrainResult);
      };
      this.settle = (err) => finish(err ?? new CancelledError());
      worker.on('message', (reply: WorkerReply) => {
        if (reply.type === 'progress') onProgress?.(reply.progress);
        else if (reply.type === 'done') finish(undefined, reply.result);
        else if (reply.type === 'cancelled') finish(new CancelledError());
        else finish(new Error(reply.message));
      });
      worker.on('error', (err) => finish(err));
      worker.on('exit', (code) =>
        finish(new Error(`the training worker stopped unexpectedly (exit code ${code})`)),
      );
      const request: WorkerRequest = {
        type: 'train',
        settings,
        data,
        cancelFlag: this.cancelFlag.buffer as SharedArrayBuffer,
      };
      const transfer = [data.x.buffer, data.y?.buffer].filter(
        (b): b is ArrayBuffer => b instanceof ArrayBuffer && b.byteLength > 0,
      );
      worker.postMessage(request, [...new Set(transfer)]);
    });
  }

  /** Asks the run to stop after the current batch. */
  cancel(): void {
    Atomics.store(this.cancelFlag, 0, 1);
  }

  /**
   * Ends the worker thread now (a pending run rejects with CancelledError) and resolves once the
   * thread has exited; after a finished run it just waits for that exit.
   */
  async terminate(): Promise<void> {
    const worker = this.worker;
    this.worker = undefined;
    this.settle?.();
    if (worker) await worker.terminate();
    await this.exited;
  }
}
