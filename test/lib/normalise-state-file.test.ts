import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { StateFile, nodeStateFile } from '../../lib/util/state-file';

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('normalise state file', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-state-'));
  });
  afterEach(async () => {
    await fs.rm(dir, { recursive: true, force: true });
  });

  it('writes a burst of changes once, with the latest state', async () => {
    let state = 0;
    const file = new StateFile(path.join(dir, 'a', 's.json'), () => ({ state }), { delayMs: 150 });
    for (let i = 1; i <= 50; i++) {
      state = i;
      file.changed();
    }
    await wait(30);
    assert.equal(file.readSync(), undefined, 'nothing written before the delay');
    await wait(250);
    assert.equal(file.writes, 1);
    assert.deepEqual(file.readSync(), { state: 50 });
    state = 51;
    file.changed();
    await file.close();
    assert.equal(file.writes, 2, 'close writes what is pending');
    file.changed();
    await wait(200);
    assert.equal(file.writes, 2, 'no writes after close');
    assert.deepEqual(file.readSync(), { state: 51 });
  });

  it('leaves no temporary files behind and throws on a corrupt file', async () => {
    const target = path.join(dir, 's.json');
    const file = new StateFile(target, () => ({ ok: true }), { delayMs: 10 });
    file.changed();
    await file.flush();
    assert.deepEqual(await fs.readdir(dir), ['s.json']);
    await fs.writeFile(target, '{"half":');
    assert.throws(() => file.readSync(), SyntaxError);
  });

  it('reports a failed write and retries it on the next flush', async () => {
    const blocker = path.join(dir, 'blocker');
    await fs.writeFile(blocker, 'a file where a directory should be');
    const errors: unknown[] = [];
    const file = new StateFile(path.join(blocker, 's.json'), () => ({}), { onError: (e) => errors.push(e) });
    file.changed();
    await file.flush();
    assert.equal(errors.length, 1);
    await fs.rm(blocker);
    await file.close();
    assert.equal(file.writes, 1);
  });

  it('names node state files by kind and a file-safe node id', () => {
    assert.equal(
      nodeStateFile('/u', 'normalise', 'a1b2.c3'),
      path.join('/u', 'edge-ai', 'normalise', 'a1b2.c3.json'),
    );
    assert.equal(path.basename(nodeStateFile('/u', 'normalise', '../x/y')), '.._x_y.json');
  });

  it('takes an async serialiser, a last one on close, and remove() deletes the file and stops writes', async () => {
    let state = 1;
    const file = new StateFile(
      path.join(dir, 's.json'),
      async () => {
        await wait(5);
        return { state };
      },
      { delayMs: 20 },
    );
    file.changed();
    await file.flush();
    assert.deepEqual(file.readSync(), { state: 1 }, 'the awaited value is written');
    state = 2;
    file.changed();
    await file.close(() => ({ state: 'last' }));
    assert.deepEqual(file.readSync(), { state: 'last' }, 'close writes with the last serialiser');

    const removed = new StateFile(path.join(dir, 'r.json'), () => ({ state }), { delayMs: 20 });
    removed.changed();
    await removed.flush();
    removed.changed();
    await removed.remove();
    await wait(60);
    assert.equal(removed.readSync(), undefined, 'deleted, and the pending change is not written');
    await removed.remove(); // absent is fine
  });
});
