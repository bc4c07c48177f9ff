import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelStore, modelStoreEvents } from '../../lib/models/store/store';

describe('model store', () => {
  let root: string;
  beforeEach(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-store-'));
  });
  afterEach(() => fs.rm(root, { recursive: true, force: true }));

  const meta = { format: 'onnx' as const, entry: 'model.onnx' };

  it('saves numbered versions with file hashes and announces them', async () => {
    const store = new ModelStore(root);
    const seen: unknown[] = [];
    const listener = (e: { meta: { version: number } }) => seen.push(e.meta.version);
    modelStoreEvents.on('saved', listener);
    try {
      await store.save('m', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), 'abc'));
      const second = await store.save('m', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), 'abcd'));
      assert.equal(second.meta.version, 2);
      assert.deepEqual(await store.versions('m'), [1, 2]);
      assert.equal((await store.get('m'))?.meta.files[0].bytes, 4);
      assert.deepEqual(seen, [1, 2]);
      await store.verify(second);
    } finally {
      modelStoreEvents.off('saved', listener);
    }
  });

  it('removes the temp version a process killed during a save left behind', async function () {
    this.timeout(20_000);
    await new ModelStore(root).save('m', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), 'v1'));
    // A save killed (kill -9) between writing its files and the rename.
    const script = `
      const { promises: fs } = require('node:fs');
      const path = require('node:path');
      const { ModelStore } = require(${JSON.stringify(path.join(__dirname, '../../lib/models/store/store'))});
      new ModelStore(${JSON.stringify(root)}).save('m', { format: 'onnx', entry: 'model.onnx' }, async (dir) => {
        await fs.writeFile(path.join(dir, 'model.onnx'), Buffer.alloc(1 << 20));
        process.kill(process.pid, 'SIGKILL');
      });`;
    await new Promise<void>((resolve) => execFile(process.execPath, ['-e', script], () => resolve()));
    const left = (await fs.readdir(path.join(root, 'm'))).filter((n) => n.includes('.tmp-'));
    assert.equal(left.length, 1, 'the killed save left its temp directory');
    // A save in flight in another live process is not touched.
    const live = path.join(root, 'm', `.3.tmp-${process.ppid}-0123abcd`);
    await fs.mkdir(live);

    const store = new ModelStore(root);
    assert.deepEqual(await store.versions('m'), [1]);
    const entries = (await fs.readdir(path.join(root, 'm'))).sort();
    assert.deepEqual(entries, ['.3.tmp-' + process.ppid + '-0123abcd', '1']);
    const saved = await store.save('m', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), 'v2'));
    assert.equal(saved.meta.version, 2);
  });

  it('leaves the previous version current when a save fails midway', async () => {
    const store = new ModelStore(root);
    await store.save('m', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), 'good'));
    await assert.rejects(
      store.save('m', meta, async (dir) => {
        await fs.writeFile(path.join(dir, 'model.onnx'), 'half');
        throw new Error('disk full');
      }),
      /disk full/,
    );
    assert.deepEqual(await store.versions('m'), [1]);
    assert.deepEqual(await fs.readdir(path.join(root, 'm')), ['1']);
  });

  it('detects a damaged file and rejects unsafe names', async () => {
    const store = new ModelStore(root);
    const saved = await store.save('m', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), 'good'));
    await fs.writeFile(path.join(saved.dir, 'model.onnx'), 'bad!');
    await assert.rejects(store.verify(saved), /damaged/);
    assert.throws(() => ModelStore.checkName('../etc'), /invalid model name/);
  });
});
