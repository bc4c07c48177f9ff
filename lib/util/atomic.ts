import { promises as fs } from 'node:fs';
import path from 'node:path';
import crypto from 'node:crypto';

function tempName(target: string): string {
  return path.join(
    path.dirname(target),
    `.${path.basename(target)}.tmp-${process.pid}-${crypto.randomBytes(4).toString('hex')}`,
  );
}

const TEMP_ENTRY = /^\..+\.tmp-(\d+)-[0-9a-f]{8}$/;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temp files and directories in `dir` that atomic writes of a process which no longer
 * runs left behind (a crash between write and rename); a live process's writes are left alone.
 * Returns the names removed.
 */
export async function removeStaleTemps(dir: string): Promise<string[]> {
  const removed: string[] = [];
  for (const name of await fs.readdir(dir).catch(() => [] as string[])) {
    const match = TEMP_ENTRY.exec(name);
    if (!match) continue;
    const pid = Number(match[1]);
    if (pid === process.pid || alive(pid)) continue;
    await fs.rm(path.join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

async function fsyncPath(p: string): Promise<void> {
  const handle = await fs.open(p, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Writes a file so that readers see either the old or the complete new content, never a part. */
export async function writeFileAtomic(target: string, data: string | Uint8Array): Promise<void> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  const tmp = tempName(target);
  const handle = await fs.open(tmp, 'w');
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { force: true });
    throw err;
  }
  await fsyncPath(path.dirname(target)).catch(() => undefined);
}

/**
 * Builds a directory in a temporary sibling, fsyncs every file, then renames it into place.
 * `target` must not exist yet; on any failure the temporary directory is removed.
 */
export async function writeDirAtomic(target: string, fill: (tmpDir: string) => Promise<void>): Promise<void> {
  await fs.mkdir(path.dirname(target), { recursive: true });
  const tmp = tempName(target);
  await fs.mkdir(tmp);
  try {
    await fill(tmp);
    for (const entry of await fs.readdir(tmp, { recursive: true, withFileTypes: true })) {
      if (entry.isFile()) await fsyncPath(path.join(entry.parentPath ?? tmp, entry.name));
    }
    await fs.rename(tmp, target);
  } catch (err) {
    await fs.rm(tmp, { recursive: true, force: true });
    throw err;
  }
  await fsyncPath(path.dirname(target)).catch(() => undefined);
}

/**
 * Removes a directory so that readers see it whole or not at all: it is renamed to a temp name
 * first (a crash then leaves a temp entry that removeStaleTemps sweeps, never a half-deleted one).
 */
export async function removeDirAtomic(target: string): Promise<void> {
  const tmp = tempName(target);
  try {
    await fs.rename(target, tmp);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  await fs.rm(tmp, { recursive: true, force: true });
}

export async function readJsonFile<T>(file: string): Promise<T> {
  return JSON.parse(await fs.readFile(file, 'utf8')) as T;
}

export function sha256(data: Uint8Array | string): string {
  return crypto.createHash('sha256').update(data).digest('hex');
}
