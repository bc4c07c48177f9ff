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

/**
 * A node module whose RED._ translates with the node's own en-US catalog (the test runtime's
 * RED._ returns the bare key), so a test can check the text a user reads.
 */
export function withCatalog(type: string): unknown {
  const load = nodeModule(type) as (RED: unknown) => unknown;
  const file = path.resolve(__dirname, '..', '..', 'nodes', type, 'locales', 'en-US', `${type}.json`);
  const catalog = require(file) as Record<string, unknown>;
  const translate = (key: string, params: Record<string, unknown> = {}): string => {
    const text = key
      .split('.')
      .reduce<unknown>((at, part) => (at as Record<string, unknown>)?.[part], catalog);
    if (typeof text !== 'string') return key;
    return text.replace(/__([A-Za-z0-9_]+)__/g, (whole, name: string) =>
      name in params ? String(params[name]) : whole,
    );
  };
  return (RED: object) =>
    load(new Proxy(RED, { get: (target, prop) => (prop === '_' ? translate : Reflect.get(target, prop)) }));
}
