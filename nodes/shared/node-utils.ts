import type { Node, NodeMessage, NodeMessageInFlow } from 'node-red';
import { Status, errorText } from './status';

export { errorText, shortText } from './status';

export type Send = (msg: NodeMessage | Array<NodeMessage | NodeMessage[] | null>) => void;
export type InputHandler = (
  msg: NodeMessageInFlow & Record<string, unknown>,
  send: Send,
) => Promise<void> | void;

const asError = (err: unknown): Error => (err instanceof Error ? err : new Error(String(err)));

/**
 * Wires an input handler so that every failure (thrown or rejected) ends in done(err) with the
 * original message, so Catch nodes see it, and a red status; the flow keeps running.
 */
export function onInput(node: Node, status: Status, handler: InputHandler): void {
  node.on('input', (msg, send, done) => {
    const fail = (err: unknown): void => {
      status.error(err);
      done(asError(err));
    };
    let result: Promise<void> | void;
    try {
      result = handler(msg as NodeMessageInFlow & Record<string, unknown>, send as Send);
    } catch (err) {
      fail(err);
      return;
    }
    Promise.resolve(result).then(() => done(), fail);
  });
}

/**
 * Registers close so that `release` runs once and `done` is called on every path. `removed` is
 * true when the node is deleted (or disabled) in a deploy, false on a redeploy or a stop.
 */
export function onClose(node: Node, release: (removed: boolean) => Promise<void> | void): void {
  node.on('close', (removed: boolean, done: () => void) => {
    Promise.resolve()
      .then(() => release(removed === true))
      .catch((err: unknown) => node.warn(`close: ${errorText(err)}`))
      .finally(() => done());
  });
}

/**
 * A node that cannot start (e.g. a bad setting): red status naming the cause, one node.error,
 * and every message fails with the same error so Catch nodes see it.
 */
export function failStart(node: Node, status: Status, err: unknown): void {
  status.error(err);
  node.error(status.describe(err));
  onInput(node, status, () => {
    throw asError(err);
  });
}

/** Runs `parse` (settings, and what is built from them); on an error the node fails as failStart. */
export function parseOrFail<T>(node: Node, status: Status, parse: () => T): T | undefined {
  try {
    return parse();
  } catch (err) {
    failStart(node, status, err);
    return undefined;
  }
}
