import assert from 'node:assert/strict';
import { SerialQueue, type QueueEntry } from '../../lib/util/serial-queue';

const tick = (ms = 1): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('serial queue', () => {
  it('runs items and tasks one at a time in submission order, also when earlier ones are slower', async () => {
    const log: string[] = [];
    let running = 0;
    const q = new SerialQueue<number, number>({
      one: async (x) => {
        running++;
        assert.equal(running, 1, 'two jobs ran at once');
        await tick(x);
        log.push(`item ${x}`);
        running--;
        return x * 2;
      },
    });
    const results = Promise.all([
      q.push(5),
      q.run(async () => {
        log.push('task');
        return 'done';
      }),
      q.push(1),
    ]);
    assert.deepEqual(await results, [10, 'done', 2]);
    assert.deepEqual(log, ['item 5', 'task', 'item 1']);
  });

  it('rejects only the failing job and keeps going', async () => {
    const q = new SerialQueue<number, number>({
      one: async (x) => {
        if (x < 0) throw new Error(`negative ${x}`);
        return x;
      },
    });
    const a = q.push(1);
    const b = q.push(-1);
    const c = q.push(3);
    assert.equal(await a, 1);
    await assert.rejects(b, /negative -1/);
    assert.equal(await c, 3);
  });

  it('hands consecutive items to the batch runner, never across a task, at most maxBatch at once', async () => {
    const batches: number[][] = [];
    const q = new SerialQueue<number, number>({
      one: async (x) => x,
      batch: async (entries: QueueEntry<number, number>[]) => {
        batches.push(entries.map((e) => e.item));
        for (const e of entries) e.resolve(e.item * 10);
      },
      canBatch: () => true,
      maxBatch: 3,
    });
    const out = await Promise.all([
      q.push(1),
      q.push(2),
      q.push(3),
      q.push(4),
      q.push(5),
      q.idle(),
      q.push(6),
    ]);
    assert.deepEqual(out, [10, 20, 30, 40, 50, undefined, 60]);
    // The first item starts at once; what queues up meanwhile goes together.
    assert.deepEqual(batches, [[1], [2, 3, 4], [5], [6]]);
  });

  it("rejects a throwing batch runner's entries instead of leaving them pending", async () => {
    const q = new SerialQueue<number, number>({
      one: async (x) => x,
      batch: async () => {
        throw new Error('batch failed');
      },
      canBatch: () => true,
    });
    await assert.rejects(Promise.all([q.push(1), q.push(2)]), /batch failed/);
    assert.equal(await q.run(async () => 7), 7);
  });

  it('after close, rejects waiting and later jobs but lets the running one finish', async () => {
    let release!: () => void;
    const q = new SerialQueue<number, number>({
      one: (x) => new Promise<number>((r) => (release = () => r(x))),
    });
    const running = q.push(1);
    const waiting = q.push(2);
    await tick();
    assert.equal(q.length, 1);
    q.close(() => new Error('closed'));
    release();
    assert.equal(await running, 1);
    await assert.rejects(waiting, /closed/);
    await assert.rejects(q.push(3), /closed/);
    assert.equal(q.closed, true);
  });
});
