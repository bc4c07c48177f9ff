import assert from 'node:assert/strict';
import {
  BatcherClosedError,
  DroppedError,
  MicroBatcher,
  QueueFullError,
} from '../../lib/models/serve/micro-batcher';

/** A batch runner that records batch sizes and answers after `delayMs`. */
function recorder(delayMs = 2): {
  batches: number[][];
  run: (items: number[]) => Promise<(number | Error)[]>;
} {
  const batches: number[][] = [];
  return {
    batches,
    run: async (items) => {
      batches.push(items);
      await new Promise((r) => setTimeout(r, delayMs));
      return items.map((x) => (x < 0 ? new Error(`negative ${x}`) : x * 10));
    },
  };
}

describe('micro-batcher', () => {
  it('runs a lone request at once and batches what arrives while it runs, replying in order', async () => {
    const { batches, run } = recorder(5);
    const batcher = new MicroBatcher(run, { maxBatch: 4, maxWaitMs: 0, maxQueue: 100, overflow: 'reject' });
    const first = batcher.submit(1);
    while (batches.length === 0) await new Promise((r) => setImmediate(r)); // the first batch has started
    const rest = [2, 3, 4, 5, 6, 7].map((x) => batcher.submit(x));
    const order: number[] = [];
    await Promise.all([first, ...rest].map((p) => p.then((v) => order.push(v))));
    assert.deepEqual(order, [10, 20, 30, 40, 50, 60, 70]);
    assert.deepEqual(batches, [[1], [2, 3, 4, 5], [6, 7]]);
  });

  it('waits up to maxWaitMs to fill a batch when idle', async () => {
    const { batches, run } = recorder(1);
    const batcher = new MicroBatcher(run, { maxBatch: 8, maxWaitMs: 30, maxQueue: 100, overflow: 'reject' });
    const a = batcher.submit(1);
    await new Promise((r) => setTimeout(r, 10));
    const b = batcher.submit(2);
    assert.deepEqual(await Promise.all([a, b]), [10, 20]);
    assert.deepEqual(batches, [[1, 2]]);
  });

  it('fails only the request whose item failed', async () => {
    const { run } = recorder(1);
    const batcher = new MicroBatcher(run, { maxBatch: 8, maxWaitMs: 0, maxQueue: 100, overflow: 'reject' });
    const results = await Promise.allSettled([1, -2, 3].map((x) => batcher.submit(x)));
    assert.deepEqual(
      results.map((r) => r.status),
      ['fulfilled', 'rejected', 'fulfilled'],
    );
  });

  it('bounds the queue: reject refuses new requests, drop-oldest drops the oldest waiting', async () => {
    for (const overflow of ['reject', 'drop-oldest'] as const) {
      const { run } = recorder(5);
      const batcher = new MicroBatcher(run, { maxBatch: 1, maxWaitMs: 0, maxQueue: 3, overflow });
      const depths: number[] = [];
      batcher.onDepth = (waiting) => depths.push(waiting);
      const settled = await Promise.allSettled([1, 2, 3, 4, 5, 6].map((x) => batcher.submit(x)));
      const ok = settled.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
      const errors = settled.flatMap((r) => (r.status === 'rejected' ? [r.reason] : []));
      assert.ok(Math.max(...depths) <= 3, 'never more than maxQueue waiting');
      if (overflow === 'reject') {
        assert.deepEqual(ok, [10, 20, 30]);
        assert.ok(errors.every((e) => e instanceof QueueFullError));
      } else {
        assert.deepEqual(ok, [40, 50, 60]);
        assert.ok(errors.every((e) => e instanceof DroppedError));
      }
    }
  });

  it('rejects waiting requests on close and refuses new ones', async () => {
    const { run } = recorder(20);
    const batcher = new MicroBatcher(run, { maxBatch: 1, maxWaitMs: 0, maxQueue: 10, overflow: 'reject' });
    const running = batcher.submit(1);
    while (batcher.inFlight === 0) await new Promise((r) => setImmediate(r));
    const waiting = batcher.submit(2);
    batcher.close();
    await assert.rejects(waiting, BatcherClosedError);
    assert.equal(await running, 10, 'the running batch finishes');
    await assert.rejects(batcher.submit(3), BatcherClosedError);
  });
});
