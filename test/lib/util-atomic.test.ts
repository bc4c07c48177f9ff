import assert from 'node:assert/strict';
import fsSync, { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { removeDirAtomic, writeDirAtomic, writeFileAtomic } from '../../lib/util/atomic';

type Spied = { events: string[]; restore: () => void; failRename?: boolean };

/**
 * Records, in order, the file-system calls an atomic write makes: open, write, fsync (with the
 * path of the handle), rename. `failRename` makes rename fail as a full disk or a crash would.
 */
async function spy(dir: string): Promise<Spied> {
  const probe = await fs.open(path.join(dir, '.probe'), 'w');
  const FileHandle = Object.getPrototypeOf(probe) as {
    sync: (this: { fd: number }) => Promise<void>;
    writeFile: (this: { fd: number }, data: unknown) => Promise<void>;
  };
  await probe.close();
  await fs.rm(path.join(dir, '.probe'));
  const paths = new Map<number, string>();
  const name = (p: string) =>
    p === dir ? '<dir>' : path.relative(dir, p).replace(/\.tmp-[0-9]+-[0-9a-f]{8}/, '.tmp');
  const state: Spied = { events: [], restore: () => undefined };
  const original = {
    open: fs.open,
    rename: fs.rename,
    sync: FileHandle.sync,
    writeFile: FileHandle.writeFile,
  };
  fs.open = async function (...args: Parameters<typeof fs.open>) {
    const handle = await original.open.apply(fs, args);
    paths.set(handle.fd, String(args[0]));
    return handle;
  } as typeof fs.open;
  FileHandle.sync = async function () {
    state.events.push(`fsync ${name(paths.get(this.fd) ?? '?')}`);
    return original.sync.call(this);
  };
  FileHandle.writeFile = async function (data: unknown) {
    state.events.push(`write ${name(paths.get(this.fd) ?? '?')}`);
    return original.writeFile.call(this, data);
  };
  fs.rename = async function (from: fsSync.PathLike, to: fsSync.PathLike) {
    state.events.push(`rename ${name(String(from))} -> ${name(String(to))}`);
    if (state.failRename)
      throw Object.assign(new Error('ENOSPC: no space left on device'), { code: 'ENOSPC' });
    return original.rename.call(fs, from, to);
  } as typeof fs.rename;
  state.restore = () => {
    fs.open = original.open;
    fs.rename = original.rename;
    FileHandle.sync = original.sync;
    FileHandle.writeFile = original.writeFile;
  };
  return state;
}

describe('atomic writes: the contract', () => {
  let dir: string;
  let spied: Spied | undefined;
  beforeEach(() => {
    dir = fsSync.mkdtempSync(path.join(os.tmpdir(), 'edge-atomic-'));
  });
  afterEach(() => {
    spied?.restore();
    spied = undefined;
    fsSync.rmSync(dir, { recursive: true, force: true });
  });

  it('a file: write a temp sibling, fsync it, rename it over the target, then fsync the directory', async () => {
    const target = path.join(dir, 'state.json');
    spied = await spy(dir);
    await writeFileAtomic(target, '{"v":1}');
    spied.restore();
    assert.deepEqual(spied.events, [
      'write .state.json.tmp',
      'fsync .state.json.tmp',
      'rename .state.json.tmp -> state.json',
      'fsync <dir>',
    ]);
    assert.equal(fsSync.readFileSync(target, 'utf8'), '{"v":1}');
  });

  it('a directory: every file fsynced inside the temp directory before one rename, then the parent fsynced', async () => {
    const target = path.join(dir, 'v1');
    spied = await spy(dir);
    await writeDirAtomic(target, async (tmp) => {
      await fs.writeFile(path.join(tmp, 'model.json'), '{}');
      await fs.mkdir(path.join(tmp, 'sub'));
      await fs.writeFile(path.join(tmp, 'sub', 'weights.bin'), Buffer.alloc(1000, 7));
    });
    spied.restore();
    const events = spied.events;
    const rename = events.indexOf('rename .v1.tmp -> v1');
    assert.ok(rename > 0, events.join('\n'));
    assert.deepEqual(events.slice(0, rename).sort(), [
      'fsync .v1.tmp/model.json',
      'fsync .v1.tmp/sub/weights.bin',
    ]);
    assert.deepEqual(events.slice(rename + 1), ['fsync <dir>']);
    assert.equal(fsSync.readFileSync(path.join(target, 'sub', 'weights.bin')).length, 1000);
  });

  it('a directory is removed by one rename to a temp entry first, so a crash never leaves part of it', async () => {
    const target = path.join(dir, 'v3');
    await writeDirAtomic(target, async (tmp) => {
      await fs.writeFile(path.join(tmp, 'model.json'), '{}');
      await fs.writeFile(path.join(tmp, 'weights.bin'), Buffer.alloc(1000, 7));
    });
    spied = await spy(dir);
    await removeDirAtomic(target);
    await removeDirAtomic(path.join(dir, 'never-there'));
    spied.restore();
    assert.deepEqual(spied.events, ['rename v3 -> .v3.tmp', 'rename never-there -> .never-there.tmp']);
    assert.deepEqual(fsSync.readdirSync(dir), []);
  });

  it('a failing rename leaves the old content and no temp entry, for a file and a directory', async () => {
    const target = path.join(dir, 'state.json');
    fsSync.writeFileSync(target, 'old');
    spied = await spy(dir);
    spied.failRename = true;
    await assert.rejects(writeFileAtomic(target, 'new'), /ENOSPC/);
    await assert.rejects(
      writeDirAtomic(path.join(dir, 'v2'), async (tmp) => fs.writeFile(path.join(tmp, 'a'), 'x')),
      /ENOSPC/,
    );
    spied.restore();
    assert.equal(fsSync.readFileSync(target, 'utf8'), 'old');
    assert.deepEqual(fsSync.readdirSync(dir), ['state.json']);
  });

  it('a reader during large writes sees only the whole old or the whole new content', async function () {
    this.timeout(60000);
    const target = path.join(dir, 'big.bin');
    const size = 4 * 1024 * 1024;
    const versions = [Buffer.alloc(size, 0x61), Buffer.alloc(size, 0x62)];
    await writeFileAtomic(target, versions[0]);
    let writing = true;
    let reads = 0;
    const seen = new Set<string>();
    const reader = (async () => {
      while (writing) {
        const got = await fs.readFile(target);
        reads++;
        const whole = got.length === size && (got.equals(versions[0]) || got.equals(versions[1]));
        assert.ok(whole, `read ${reads}: ${got.length} bytes, first ${got[0]} last ${got[got.length - 1]}`);
        seen.add(String.fromCharCode(got[0]));
      }
    })();
    for (let i = 1; i <= 30; i++) await writeFileAtomic(target, versions[i % 2]);
    writing = false;
    await reader;
    assert.ok(reads >= 5, `${reads} reads`);
    assert.deepEqual([...seen].sort(), ['a', 'b'], 'the reader saw both versions');
  });
});
