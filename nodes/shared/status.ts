import type { Node, NodeAPI, NodeStatus } from 'node-red';

/**
 * What a status means; the look follows from it so every node paints the same state alike.
 * alert: a finding the user asked to be told about (e.g. an anomaly), not a fault of the node.
 */
export type StatusState = 'ok' | 'working' | 'waiting' | 'warning' | 'error' | 'alert';

const LOOK: Record<StatusState, Pick<NodeStatus, 'fill' | 'shape'>> = {
  ok: { fill: 'green', shape: 'dot' },
  working: { fill: 'blue', shape: 'ring' },
  waiting: { fill: 'grey', shape: 'ring' },
  warning: { fill: 'yellow', shape: 'dot' },
  error: { fill: 'red', shape: 'ring' },
  alert: { fill: 'red', shape: 'dot' },
};

/** Status texts are cut to this many characters, so one does not run under the next node in a flow. */
export const STATUS_MAX_CHARS = 48;

/** Cuts a status text so a long message still fits; the cause should lead. */
export function shortText(text: string, max = STATUS_MAX_CHARS): string {
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

export function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** An error that carries a stable code (see lib/errors.ts) and parameters for its text. */
interface CodedError {
  code: string;
  params?: Record<string, unknown>;
}

function isCoded(err: unknown): err is Error & CodedError {
  return err instanceof Error && typeof (err as Partial<CodedError>).code === 'string';
}

type Translate = NodeAPI['_'];

/**
 * The text of an error for the user: the node catalog's `errors.<code>` when it has one (with
 * the error's params), else the error's own message.
 */
export function translateError(translate: Translate, namespace: string, err: unknown): string {
  if (isCoded(err)) {
    const key = `${namespace}.errors.${err.code}`;
    const text = translate(key, { ...err.params, message: err.message } as Record<string, string | number>);
    // i18next answers a missing key with the key itself.
    if (text && text !== key && !text.endsWith(`:${key}`)) return text;
  }
  return errorText(err);
}

export interface StatusOptions {
  /** Updates in the same state are shown at most this often (the last one wins). Default 250. */
  intervalMs?: number;
}

/**
 * One node's status line. A change of state is shown at once; updates within a state at most
 * every `intervalMs`, so a fast stream does not flood the editor, and the latest is never lost.
 * Texts are catalog keys under the node's type (`status.learning` -> `<type>.status.learning`).
 */
export class Status {
  private readonly intervalMs: number;
  private timer: NodeJS.Timeout | undefined;
  private shownAt = 0;
  private state: StatusState | 'clear' | undefined;
  private pending: NodeStatus | undefined;

  constructor(
    private readonly node: Node,
    private readonly RED: Pick<NodeAPI, '_'>,
    private readonly namespace: string,
    options: StatusOptions = {},
  ) {
    this.intervalMs = options.intervalMs ?? 250;
  }

  /** The translated text of `key` in this node's catalog. */
  t(key: string, params?: Record<string, unknown>): string {
    return this.RED._(`${this.namespace}.${key}`, params as Record<string, string | number> | undefined);
  }

  /** Shows a catalog text in `state`. */
  set(state: StatusState, key: string, params?: Record<string, unknown>, force = false): void {
    this.text(state, this.t(key, params), force);
  }

  /** Shows a ready-made text (already translated or made of values) in `state`. */
  text(state: StatusState, text: string, force = false): void {
    const status: NodeStatus = { ...LOOK[state], text: shortText(text) };
    const now = Date.now();
    if (force || state !== this.state || now - this.shownAt >= this.intervalMs) {
      this.cancel();
      this.state = state;
      this.show(status, now);
      return;
    }
    this.pending = status;
    this.timer ??= setTimeout(
      () => {
        this.timer = undefined;
        if (this.pending) this.show(this.pending, Date.now());
      },
      this.intervalMs - (now - this.shownAt),
    );
  }

  /** Shows an error at once: its translated code when the catalog has one, else its message. */
  error(err: unknown): void {
    this.text('error', this.describe(err), true);
  }

  /** The user's text for `err` (see translateError). */
  describe(err: unknown): string {
    return translateError(this.RED._, this.namespace, err);
  }

  clear(): void {
    this.cancel();
    this.state = 'clear';
    this.node.status({});
  }

  /** Drops a pending update (call on close). */
  cancel(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.pending = undefined;
  }

  private show(status: NodeStatus, now: number): void {
    this.pending = undefined;
    this.shownAt = now;
    this.node.status(status);
  }
}
