import assert from 'node:assert/strict';
import path from 'node:path';
import { WorkerClient, WorkerStoppedError } from '../../lib/util/worker-rpc';
import { FixtureError } from '../fixtures/rpc-errors';

const SCRIPT = path.join(__dirname, '..', 'fixtures', 'rpc-worker.js');

describe('worker RPC', function () {
  this.timeout(20000);
  let client: WorkerClient;

  beforeEach(() => {
    client = new WorkerClient(SCRIPT, { errors: [FixtureError], label: 'test worker' });
  });
  afterEach(async () => {
    await client.terminate();
  });

  it('answers concurrent requests each with its own result, whatever order they finish in', async () => {
    const answers = await Promise.all([
      client.request('echo', { value: 'slow', delayMs: 60 }),
      client.request('echo', { value: { n: 2 }, delayMs: 0 }),
      client.request('echo', { value: [3], delayMs: 20 }),
    ]);
    assert.deepEqual(answers, ['slow', { n: 2 }, [3]]);
  });

  it('moves transferred buffers both ways', async () => {
    const data = new Float32Array([1, 2, 3]);
    const reply = await client.request<{ out: Float32Array; movedIn: number }>(
      'double',
      { data },
      { transfer: [data.buffer] },
    );
    assert.equal(data.byteLength, 0, 'the input buffer moved to the worker');
    assert.equal(reply.movedIn, 12);
    assert.deepEqual(Array.from(reply.out), [2, 4, 6]);
  });

  it('an error crosses with its class, message, code and params; the worker keeps serving', async () => {
    const err = await client.request('fail', { n: 7 }).then(
      () => assert.fail('resolved'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof FixtureError, 'revived as its class');
    assert.equal(err.message, 'failed with 7');
    assert.equal(err.name, 'FixtureError');
    assert.equal(err.code, 'fixture-failed');
    assert.deepEqual(err.params, { n: 7 });
    assert.equal(await client.request('echo', { value: 1 }), 1);
    await assert.rejects(client.request('nope'), /unknown worker method "nope"/);
  });

  it('reports progress before the result', async () => {
    const events: unknown[] = [];
    const result = await client.request('progress', { n: 3 }, { onProgress: (e) => events.push(e) });
    assert.equal(result, 'done');
    assert.deepEqual(events, [{ step: 1 }, { step: 2 }, { step: 3 }]);
  });

  it('cancel reaches a worker that never yields, and only the request it names', async () => {
    let id = 0;
    let progressed = 0;
    const spinning = client.request('spin', null, { onId: (i) => (id = i), onProgress: () => progressed++ });
    while (progressed === 0) await new Promise((r) => setTimeout(r, 5));
    client.cancel(id + 1000); // another id: no effect
    await new Promise((r) => setTimeout(r, 50));
    client.cancel(id);
    await assert.rejects(spinning, (e: Error & { code?: string }) => e.code === 'cancelled');
    assert.equal(await client.request('echo', { value: 'after' }), 'after');
  });

  it('terminate rejects what is pending, ends the thread and refuses later requests', async () => {
    const live = WorkerClient.liveThreads;
    const pending = assert.rejects(client.request('hang'), WorkerStoppedError);
    await client.terminate();
    await pending;
    assert.equal(WorkerClient.liveThreads, live - 1);
    assert.equal(client.running, false);
    await assert.rejects(client.request('echo', { value: 1 }), WorkerStoppedError);
    const reason = new Error('closing');
    const other = new WorkerClient(SCRIPT);
    const hung = assert.rejects(other.request('hang'), (e) => e === reason);
    await other.terminate(reason);
    await hung;
  });

  it('a worker that dies rejects its pending requests instead of leaving them hanging', async () => {
    const a = assert.rejects(client.request('hang'), /stopped unexpectedly \(exit code 3\)/);
    const b = assert.rejects(client.request('crash'), WorkerStoppedError);
    await Promise.all([a, b]);
    assert.equal(client.running, false);
  });
});
