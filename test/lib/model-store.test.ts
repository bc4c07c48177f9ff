import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ModelHandle } from '../../lib/models/serve/model-handle';
import { holdVersion, ModelStore, modelStoreEvents } from '../../lib/models/store/store';
import { onnxMlp } from '../fixtures/onnx-fixtures';

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

  describe('retention', () => {
    const write = (text: string) => (dir: string) => fs.writeFile(path.join(dir, 'model.onnx'), text);

    it('keeps the newest 5 versions by default, pruning after each save', async () => {
      const store = new ModelStore(root);
      const pruned: number[][] = [];
      for (let i = 1; i <= 8; i++) {
        const saved = await store.save('m', meta, write(`v${i}`));
        assert.equal(saved.meta.version, i);
        pruned.push(saved.pruned ?? []);
        assert.deepEqual(
          await store.versions('m'),
          Array.from({ length: Math.min(i, 5) }, (_, k) => i - Math.min(i, 5) + k + 1),
        );
      }
      assert.deepEqual(pruned.slice(5), [[1], [2], [3]]);
      assert.equal(await fs.readFile(path.join(root, 'm', '8', 'model.onnx'), 'utf8'), 'v8');
    });

    it('never removes a version in use or a pinned one; 0 keeps everything', async () => {
      const store = new ModelStore(root, { keep: 2 });
      await store.save('m', meta, write('v1'));
      await store.save('m', meta, write('v2'));
      await store.pin('m', 2);
      const release = holdVersion(root, 'm', 1);
      for (let i = 3; i <= 5; i++) await store.save('m', meta, write(`v${i}`));
      assert.deepEqual(await store.versions('m'), [1, 2, 4, 5]);
      release();
      await store.pin('m', 2, false);
      const saved = await store.save('m', meta, write('v6'));
      assert.deepEqual(saved.pruned, [1, 2, 4]);
      assert.deepEqual(await store.versions('m'), [5, 6]);
      await assert.rejects(store.pin('m', 1), /no version 1/);

      const all = new ModelStore(root, { keep: 0 });
      for (let i = 0; i < 6; i++) await all.save('n', meta, write('x'));
      assert.deepEqual(await all.versions('n'), [1, 2, 3, 4, 5, 6]);
      assert.throws(() => new ModelStore(root, { keep: -1 }), /whole number/);
    });

    it('gives concurrent saves of one model distinct versions with their own files', async () => {
      const stores = [new ModelStore(root, { keep: 0 }), new ModelStore(root, { keep: 0 })];
      const saves = Array.from({ length: 8 }, (_, i) =>
        stores[i % 2].save('m', { ...meta, tag: i }, async (dir) => {
          await new Promise((resolve) => setTimeout(resolve, 5 * (8 - i)));
          await fs.writeFile(path.join(dir, 'model.onnx'), `save ${i}`);
        }),
      );
      // One failing save in the middle neither blocks nor takes the number of the others.
      const failing = stores[0].save('m', meta, async () => {
        throw new Error('disk full');
      });
      const saved = await Promise.all(saves);
      await assert.rejects(failing, /disk full/);
      assert.deepEqual(
        saved.map((s) => s.meta.version).sort((a, b) => a - b),
        [1, 2, 3, 4, 5, 6, 7, 8],
      );
      for (const s of saved) {
        const text = await fs.readFile(path.join(root, 'm', String(s.meta.version), 'model.onnx'), 'utf8');
        assert.equal(text, `save ${s.meta.tag as number}`);
      }
      assert.deepEqual(await stores[1].versions('m'), [1, 2, 3, 4, 5, 6, 7, 8]);
    });

    it('keeps the version a model handle serves until the handle lets it go', async () => {
      const userDir = root;
      const store = ModelStore.forUserDir(userDir, { keep: 2 });
      const model = onnxMlp({ seed: 5 });
      await store.save('served', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), model.bytes));
      const handle = new ModelHandle({ userDir, store, runtime: 'onnxruntime', warmup: 0 });
      try {
        const info = await handle.load('store:served@1');
        assert.equal(info.version, 1);
        for (let i = 0; i < 3; i++) {
          await store.save('served', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), model.bytes));
        }
        assert.deepEqual(await store.versions('served'), [1, 3, 4]);
        await handle.load('store:served@4');
      } finally {
        await handle.close();
      }
      await store.save('served', meta, (dir) => fs.writeFile(path.join(dir, 'model.onnx'), model.bytes));
      assert.deepEqual(await store.versions('served'), [4, 5]);
    });
  });
});
