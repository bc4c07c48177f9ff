import assert from 'node:assert/strict';
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
