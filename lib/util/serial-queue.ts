/**
 * Runs jobs strictly one after another in submission order, also while one of them awaits.
 * Jobs are either items (handled by the queue's runner) or tasks (any async function);
 * consecutive items may be handed to the runner together when it says it can batch them.
 */

export interface QueueEntry<T, R> {
  item: T;
  resolve: (result: R) => void;
  reject: (err: unknown) => void;
}

export interface QueueRunner<T, R> {
  /** Handles one item. */
  one(item: T): Promise<R>;
  /** Handles consecutive items together, settling every entry; used while `canBatch()` holds. */
  batch?: (entries: QueueEntry<T, R>[]) => Promise<void>;
  canBatch?: () => boolean;
  /** Most items handed to `batch` at once. */
  maxBatch?: number;
}

interface ItemJob<T, R> extends QueueEntry<T, R> {
  kind: 'item';
}

interface TaskJob {
  kind: 'task';
  run: () => Promise<unknown>;
  resolve: (value: unknown) => void;
  reject: (err: unknown) => void;
}

export class SerialQueue<T, R> {
  private readonly jobs: (ItemJob<T, R> | TaskJob)[] = [];
  private draining = false;
  private closedWith: (() => Error) | null = null;

  constructor(private readonly runner: QueueRunner<T, R>) {}

  /** Queues an item for the runner; resolves with its result, in order. */
  push(item: T): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.jobs.push({ kind: 'item', item, resolve, reject });
      void this.drain();
    });
  }

  /** Queues any async work between the items. */
  run<V>(task: () => Promise<V>): Promise<V> {
    return new Promise<V>((resolve, reject) => {
      this.jobs.push({ kind: 'task', run: task, resolve: resolve as (v: unknown) => void, reject });
      void this.drain();
    });
  }

  /** Waits for everything queued so far. */
  idle(): Promise<void> {
    return this.run(async () => undefined);
  }

  /** Jobs waiting (the one running excluded). */
  get length(): number {
    return this.jobs.length;
  }

  get closed(): boolean {
    return this.closedWith !== null;
  }

  /** Rejects every job not yet started, and all later ones, with the error `reason` makes. */
  close(reason: () => Error): void {
    this.closedWith ??= reason;
    void this.drain();
  }

  private async drain(): Promise<void> {
    if (this.draining) return;
    this.draining = true;
    try {
      while (this.jobs.length) {
        const job = this.jobs[0];
        if (this.closedWith) {
          this.jobs.shift();
          job.reject(this.closedWith());
          continue;
        }
        const { batch, canBatch } = this.runner;
        if (job.kind === 'item' && batch && canBatch?.()) {
          const entries: ItemJob<T, R>[] = [];
          const max = this.runner.maxBatch ?? Infinity;
          while (entries.length < max && this.jobs[0]?.kind === 'item')
            entries.push(this.jobs.shift() as ItemJob<T, R>);
          try {
            await batch(entries);
          } catch (err) {
            // A runner that throws leaves its entries unsettled: settle them here (once only).
            for (const e of entries) e.reject(err);
          }
          continue;
        }
        this.jobs.shift();
        try {
          if (job.kind === 'task') job.resolve(await job.run());
          else job.resolve(await this.runner.one(job.item));
        } catch (err) {
          job.reject(err);
        }
      }
    } finally {
      this.draining = false;
    }
  }
}
