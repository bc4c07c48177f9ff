import { readFileSync } from 'node:fs';
import path from 'node:path';
import { writeFileAtomic } from './atomic';

export interface StateFileOptions {
  /** Minimum time between writes; changes within it are written together. Default 5000 ms. */
  delayMs?: number;
  /** Called when a write fails; the state stays dirty and is written on the next change or flush. */
  onError?: (err: unknown) => void;
}

/**
 * A JSON state file written atomically and throttled: `changed()` schedules one write after
 * `delayMs`, so a stream of updates costs at most one write per interval; `close()` writes what
 * is pending and stops further writes.
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
    private readonly serialise: () => unknown,
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
  flush(): Promise<void> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    this.writing = this.writing.then(async () => {
      if (!this.dirty) return;
      this.dirty = false;
      try {
        await writeFileAtomic(this.file, `${JSON.stringify(this.serialise())}\n`);
        this.writes += 1;
      } catch (err) {
        this.dirty = true;
        this.options.onError?.(err);
      }
    });
    return this.writing;
  }

  /** Writes pending changes and stops scheduling writes. */
  async close(): Promise<void> {
    this.closed = true;
    await this.flush();
  }
}

/**
 * Where a node keeps its state: `<userDir>/edge-ai/<kind>/<node id>.json`, with the id reduced to
 * characters that are safe in a file name.
 */
export function nodeStateFile(userDir: string, kind: string, nodeId: string): string {
  return path.join(userDir, 'edge-ai', kind, `${nodeId.replace(/[^A-Za-z0-9._-]/g, '_')}.json`);
}
