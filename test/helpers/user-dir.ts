import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { helper } from './red';

/**
 * Gives each test (or, with `scope: 'all'`, the whole describe) a fresh Node-RED user directory
 * under the OS temp dir, set as the runtime's settings.userDir; the flows are unloaded, the
 * previous userDir restored and the directory deleted afterwards. Read `.path` inside tests.
 */
export function useTempUserDir(prefix: string, scope: 'each' | 'all' = 'each'): { readonly path: string } {
  const dir = { path: '' };
  let previous: unknown;
  const setUp = async (): Promise<void> => {
    dir.path = await fs.mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
    const settings = helper.settings() as Record<string, unknown>;
    previous = settings.userDir;
    settings.userDir = dir.path;
  };
  const tearDown = async (): Promise<void> => {
    await helper.unload();
    const settings = helper.settings() as Record<string, unknown>;
    if (previous === undefined) delete settings.userDir;
    else settings.userDir = previous;
    await fs.rm(dir.path, { recursive: true, force: true });
  };
  if (scope === 'each') {
    beforeEach(setUp);
    afterEach(tearDown);
  } else {
    before(setUp);
    after(tearDown);
  }
  return dir;
}
