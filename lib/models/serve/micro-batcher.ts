/**
 * Collects requests that arrive close together into one batch while every request still gets
 * its own result, in submission order. When idle, a request starts at once (after the current
 * event-loop turn, so requests arriving together join it) or after `maxWaitMs`; while a batch
 * runs, new requests queue and the next batch takes up to `maxBatch` of them immediately.
 * The queue is bounded: when full, `drop-oldest` rejects the oldest waiting request and
 * `reject` refuses the new one.
 */

import { BatcherClosedError, DroppedError, QueueFullError } from '../../errors';

export { QueueFullError, DroppedError, BatcherClosedError };

export type OverflowPolicy = 'drop-oldest' | 'reject';

export interface MicroBatcherOptions {
  /** Most requests in one batch. */
  maxBatch: number;
  /** How long an idle batcher waits for more requests before running; 0 = the current turn only. */
  maxWaitMs: number;
  /** Most requests waiting (not counting the batch running). */
  maxQueue: number;
  overflow: OverflowPolicy;
}

/** Runs a batch; returns one result or Error per item, in order. */
export type BatchRunner<T, R> = (items: T[]) => Promise<(R | Error)[]>;

interface Pending<T, R> {
  item: T;
  resolve(result: R): void;
  reject(err: Error): void;
}

export class MicroBatcher<T, R> {
  private queue: Pending<T, R>[] = [];
  private running = 0;
  private timer: NodeJS.Timeout | undefined;
  private immediate: NodeJS.Immediate | undefined;
  private closed = false;
  /** Called whenever the number of waiting requests changes. */
  onDepth?: (waiting: number, running: number) => void;

  constructor(
    private readonly run: BatchRunner<T, R>,
    readonly options: MicroBatcherOptions,
  ) {
    if (!(options.maxBatch >= 1) || !(options.maxQueue >= 1))
      throw new Error('maxBatch and maxQueue must be at least 1');
  }

  /** Requests waiting for a batch. */
  get depth(): number {
    return this.queue.length;
  }

  /** Requests in the batch that is running. */
  get inFlight(): number {
    return this.running;
  }

  submit(item: T): Promise<R> {
    if (this.closed) return Promise.reject(new BatcherClosedError());
    return new Promise<R>((resolve, reject) => {
      if (this.queue.length >= this.options.maxQueue) {
        if (this.options.overflow === 'reject') {
          reject(new QueueFullError(this.options.maxQueue));
          return;
        }
        this.queue.shift()?.reject(new DroppedError(this.options.maxQueue));
      }
      this.queue.push({ item, resolve, reject });
      this.changed();
      this.schedule();
    });
  }

  private changed(): void {
    this.onDepth?.(this.queue.length, this.running);
  }

  private schedule(): void {
    if (this.running > 0 || this.closed) return; // the running batch picks the queue up when done
    if (this.queue.length >= this.options.maxBatch) {
      this.cancelTimers();
      this.immediate = setImmediate(() => this.flush());
      return;
    }
    if (this.timer || this.immediate) return;
    if (this.options.maxWaitMs > 0) this.timer = setTimeout(() => this.flush(), this.options.maxWaitMs);
    else this.immediate = setImmediate(() => this.flush());
  }

  private cancelTimers(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.immediate) clearImmediate(this.immediate);
    this.timer = undefined;
    this.immediate = undefined;
  }

  private flush(): void {
    this.cancelTimers();
    if (this.running > 0 || this.closed || this.queue.length === 0) return;
    const batch = this.queue.splice(0, this.options.maxBatch);
    this.running = batch.length;
    this.changed();
    let results: Promise<(R | Error)[]>;
    try {
      results = this.run(batch.map((p) => p.item));
    } catch (err) {
      results = Promise.reject(err);
    }
    results
      .then(
        (outputs) => {
          batch.forEach((p, i) => {
            const out = outputs[i];
            if (out instanceof Error) p.reject(out);
            else if (i >= outputs.length) p.reject(new Error('the batch returned too few results'));
            else p.resolve(out as R);
          });
        },
        (err: unknown) => {
          const error = err instanceof Error ? err : new Error(String(err));
          for (const p of batch) p.reject(error);
        },
      )
      .finally(() => {
        this.running = 0;
        this.changed();
        // Waiting requests have waited long enough: run them now.
        if (this.queue.length > 0 && !this.closed) this.immediate = setImmediate(() => this.flush());
      });
  }

  /** Stops taking requests and rejects those still waiting; a running batch finishes. */
  close(): void {
    this.closed = true;
    this.cancelTimers();
    const waiting = this.queue;
    this.queue = [];
    for (const p of waiting) p.reject(new BatcherClosedError());
    this.changed();
  }
}
