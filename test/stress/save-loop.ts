/**
 * Child process of the stress harness: saves model versions (a few MB each) and rewrites a
 * state file as fast as it can, until it is killed with SIGKILL. Tells its parent once it runs.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { ModelStore } from '../../lib/models/store/store';
import { writeFileAtomic } from '../../lib/util/atomic';

async function main(): Promise<void> {
  const dir = process.argv[2];
  const store = new ModelStore(path.join(dir, 'models'));
  const weights = Buffer.alloc(2 * 1024 * 1024);
  let n = 0;
  process.send?.('running');
  for (;;) {
    n++;
    weights.fill(n & 0xff);
    await store.save('crash', { format: 'tfjs-layers', entry: 'model.json' }, async (tmp) => {
      await fs.writeFile(path.join(tmp, 'model.json'), JSON.stringify({ n }));
      await fs.writeFile(path.join(tmp, 'weights.bin'), weights);
    });
    await writeFileAtomic(
      path.join(dir, 'state.json'),
      JSON.stringify({ n, values: Array.from({ length: 1000 }, (_, i) => i * n) }),
    );
    await store.prune('crash', 5);
  }
}

void main();
