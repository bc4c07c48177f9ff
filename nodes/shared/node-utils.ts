import type { Node, NodeMessage, NodeMessageInFlow } from 'node-red';

export type Send = (msg: NodeMessage | Array<NodeMessage | NodeMessage[] | null>) => void;
export type InputHandler = (
  msg: NodeMessageInFlow & Record<string, unknown>,
  send: Send,
) => Promise<void> | void;

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Status text is limited so that a long error message still fits under the node. */
export function shortText(text: string, max = 60): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function setErrorStatus(node: Node, err: unknown): void {
  node.status({ fill: 'red', shape: 'ring', text: shortText(errorText(err)) });
}

/**
 * Wires an input handler so that every failure (thrown or rejected) ends in done(err) with the
 * original message, so Catch nodes see it, and a red status; the flow keeps running.
 */
export function onInput(node: Node, handler: InputHandler): void {
  node.on('input', (msg, send, done) => {
    let result: Promise<void> | void;
    try {
      result = handler(msg as NodeMessageInFlow & Record<string, unknown>, send as Send);
    } catch (err) {
      setErrorStatus(node, err);
      done(err instanceof Error ? err : new Error(String(err)));
      return;
    }
    Promise.resolve(result).then(
      () => done(),
      (err: unknown) => {
        setErrorStatus(node, err);
        done(err instanceof Error ? err : new Error(String(err)));
      },
    );
  });
}

/** Registers close so that `release` runs once and `done` is called on every path. */
export function onClose(node: Node, release: (removed: boolean) => Promise<void> | void): void {
  node.on('close', (removed: boolean, done: () => void) => {
    Promise.resolve()
      .then(() => release(removed))
      .catch((err: unknown) => node.warn(`close: ${errorText(err)}`))
      .finally(() => done());
  });
}

/** Reads a number from an editor field (string or number), with a default for blank or bad input. */
export function numberSetting(value: unknown, fallback: number): number {
  if (value === '' || value === undefined || value === null) return fallback;
  const n = Number(value);
  return Number.isFinite(n) ? n : fallback;
}

/** Parses a comma-separated list from an editor field. */
export function listSetting(value: unknown): string[] {
  if (Array.isArray(value)) return value.map(String).filter(Boolean);
  if (typeof value !== 'string') return [];
  return value
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}
