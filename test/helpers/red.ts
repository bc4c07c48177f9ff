import path from 'node:path';
import helper from 'node-red-node-test-helper';

export { helper };

/** The compiled node module of a node type, as Node-RED loads it from the package. */
export function nodeModule(type: string): unknown {
  return require(path.resolve(__dirname, '..', '..', 'nodes', type, `${type}.js`));
}

export type FlowNode = Record<string, unknown> & { id: string; type: string };

/** Waits for `count` messages on a helper node's input, or fails after `ms`. */
export function collect(
  node: { on: (e: string, f: (msg: unknown) => void) => void },
  count: number,
  ms = 5000,
): Promise<Record<string, unknown>[]> {
  return new Promise((resolve, reject) => {
    const got: Record<string, unknown>[] = [];
    const timer = setTimeout(
      () => reject(new Error(`timed out after ${ms} ms with ${got.length}/${count} messages`)),
      ms,
    );
    node.on('input', (msg) => {
      got.push(msg as Record<string, unknown>);
      if (got.length === count) {
        clearTimeout(timer);
        resolve(got);
      }
    });
  });
}
