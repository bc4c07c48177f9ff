import { promises as fs, readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './atomic';

export interface StateFileOptions {
  /** Minimum time between writes; changes within it are written together. Default 5000 ms. */
  delayMs?: number;
  /** Called when a write fails; the state stays dirty and is written on the next change or flush. */
  onError?: (err: unknown) => void;
}

/** Gives the state to write; may be async (e.g. a snapshot queued between two samples). */
export type Serialiser = () => unknown;

/**
 * A JSON state file written atomically and throttled: `changed()` schedules one write after
 * `delayMs`, so a stream of updates costs at most one write per interval; `close()` writes what
 * is pending and stops further writes; `remove()` stops writes and deletes the file.
 */
export class StateFile {
  private readonly delayMs: number;
  private timer: NodeJS.Timeout | null = null;
  private dirty = false;
  private closed = false;
  private writing: Promise<void> = Promise.resolve();
  writes = 0;

  constructor(
    readonly file: string,
    private readonly serialise: Serialiser,
    private readonly options: StateFileOptions = {},
  ) {
    this.delayMs = options.delayMs ?? 5000;
  }

  /**
   * Reads the saved state; undefined when there is none. Synchronous so a node has its state
   * before its first message. Throws when the file exists but is not JSON.
   */
  readSync(): unknown {
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    return JSON.parse(text);
  }

  /** Marks the state changed; it is written within `delayMs`. */
  changed(): void {
    if (this.closed) return;
    this.dirty = true;
    if (this.timer) return;
    // The first change after a write opens the interval, so writes are at least delayMs apart.
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.flush();
    }, this.delayMs);
    this.timer.unref?.();
  }

  /** Writes now if there are unsaved changes; resolves when the write is done (errors go to onError). */
  flush(serialise: Serialiser = this.serialise): Promise<void> {
    this.stopTimer();
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      try {
        const state: unknown = await serialise();
        await writeFileAtomic(this.file, `${JSON.stringify(state)}\n`);
        this.writes += 1;
      } catch (err) {
        this.dirty = true;
        this.options.onError?.(err);
      }
    });
    return this.writing;
  }

  /**
   * Writes pending changes and stops scheduling writes. `last` replaces the serialiser for this
   * final write, e.g. one that takes the state now instead of waiting for queued work.
   */
  async close(last?: Serialiser): Promise<void> {
    this.closed = true;
    await this.flush(last);
  }

  /** Stops writes, waits for a running one, and deletes the file (absent is fine). */
  async remove(): Promise<void> {
    this.closed = true;
    this.dirty = false;
    this.stopTimer();
    await this.writing;
    await fs.rm(this.file, { force: true });
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }
}

/**
 * Where a node keeps its state: `<userDir>/edge-ai/<kind>/<node id>.json`, with the id reduced to
 * characters that are safe in a file name.
 */
export function nodeStateFile(userDir: string, kind: string, nodeId: string): string {
  return path.join(userDir, 'edge-ai', kind, `${nodeId.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}
