/**
 * Request/response over a worker thread: numbered requests, progress events, errors that
 * arrive with their class and code, cancellation that reaches a busy worker (a shared flag
 * read between steps), and termination that settles everything still pending.
 *
 * Main thread: `new WorkerClient(script)`, then `request(method, params, options)`.
 * Worker thread: `serveRpc({ method: async (params, call) => result })`.
 */

import { Worker, parentPort } from 'node:worker_threads';
import { WorkerStoppedError } from '../errors';

/** What a handler in the worker gets besides its parameters. */
export interface RpcCall<P = unknown> {
  /** True once the caller cancelled; read it between steps of long work. */
  cancelled(): boolean;
  progress(event: P): void;
  /** Buffers of the result to move rather than copy. */
  transfer(...buffers: ArrayBufferLike[]): void;
}

// Handlers take their own parameter types; the client's request names them at the call site.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type RpcHandlers = Record<string, (params: any, call: RpcCall<any>) => Promise<unknown>>;

interface RequestMessage {
  id: number;
  method: string;
  params: unknown;
  /** Int32Array[1]; non-zero = cancelled. */
  cancel: SharedArrayBuffer;
}

interface SerialisedError {
  /** Constructor name: finds the class to revive it as. */
  type: string;
  name: string;
  message: string;
  stack?: string;
  /** Own data fields, e.g. `code` and `params`. */
  fields: Record<string, unknown>;
}

type ReplyMessage =
  | { id: number; kind: 'result'; value: unknown }
  | { id: number; kind: 'error'; error: SerialisedError }
  | { id: number; kind: 'progress'; event: unknown };

export { WorkerStoppedError };

function serialise(err: unknown): SerialisedError {
  if (!(err instanceof Error)) return { type: 'Error', name: 'Error', message: String(err), fields: {} };
  const fields: Record<string, unknown> = {};
  for (const [key, value] of Object.entries(err)) {
    try {
      structuredClone(value);
      fields[key] = value;
    } catch {
      // A field that cannot cross a thread boundary stays behind.
    }
  }
  return { type: err.constructor.name, name: err.name, message: err.message, stack: err.stack, fields };
}

/** Serves `handlers` to the thread that started this worker. */
export function serveRpc(handlers: RpcHandlers): void {
  const port = parentPort;
  if (!port) throw new Error('serveRpc runs inside a worker thread');
  port.on('message', (msg: RequestMessage) => {
    const flag = new Int32Array(msg.cancel);
    const transfer: ArrayBufferLike[] = [];
    const call: RpcCall = {
      cancelled: () => Atomics.load(flag, 0) !== 0,
      progress: (event) => port.postMessage({ id: msg.id, kind: 'progress', event } satisfies ReplyMessage),
      transfer: (...buffers) => transfer.push(...buffers),
    };
    const handler = Object.prototype.hasOwnProperty.call(handlers, msg.method)
      ? handlers[msg.method]
      : undefined;
    const run = handler
      ? handler(msg.params, call)
      : Promise.reject(new Error(`unknown worker method "${msg.method}"`));
    run.then(
      (value) => {
        const moved = [...new Set(transfer)].filter((b): b is ArrayBuffer => b instanceof ArrayBuffer);
        port.postMessage({ id: msg.id, kind: 'result', value } satisfies ReplyMessage, moved);
      },
      (err: unknown) =>
        port.postMessage({ id: msg.id, kind: 'error', error: serialise(err) } satisfies ReplyMessage),
    );
  });
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type ErrorClass = abstract new (...args: any[]) => Error;

export interface RequestOptions<P> {
  onProgress?: (event: P) => void;
  /** Buffers of the parameters to move rather than copy. */
  transfer?: ArrayBufferLike[];
  /** Receives the id that `cancel` takes. */
  onId?: (id: number) => void;
}

interface Pending {
  resolve: (value: unknown) => void;
  reject: (err: Error) => void;
  onProgress?: (event: unknown) => void;
  cancel: Int32Array;
}

export interface WorkerClientOptions {
  /** Error classes the worker may throw, by name: they arrive as instances of these. */
  errors?: ErrorClass[];
  /** Names the worker in messages, e.g. "training worker". */
  label?: string;
}

/** The main-thread end of one worker thread. */
export class WorkerClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private readonly errorClasses = new Map<string, ErrorClass>();
  private readonly label: string;
  private nextId = 1;
  private stopped: Error | null = null;
  /** Settles once the thread has exited. */
  readonly exited: Promise<void>;

  private static threads = 0;

  /** Worker threads started through this class that have not yet exited. */
  static get liveThreads(): number {
    return WorkerClient.threads;
  }

  constructor(script: string, options: WorkerClientOptions = {}) {
    this.label = options.label ?? 'worker';
    for (const cls of options.errors ?? []) this.errorClasses.set(cls.name, cls);
    this.worker = new Worker(script);
    WorkerClient.threads++;
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        WorkerClient.threads--;
        this.stop(new WorkerStoppedError(`the ${this.label} stopped unexpectedly (exit code ${code})`));
        resolve();
      }),
    );
    this.worker.on('error', (err) => this.stop(err));
    this.worker.on('message', (msg: ReplyMessage) => this.receive(msg));
  }

  get running(): boolean {
    return this.stopped === null;
  }

  /** Calls `method` in the worker; resolves with its result or rejects with its error. */
  request<R, P = unknown>(method: string, params?: unknown, options: RequestOptions<P> = {}): Promise<R> {
    if (this.stopped) return Promise.reject(this.stopped);
    const id = this.nextId++;
    const cancel = new Int32Array(new SharedArrayBuffer(4));
    options.onId?.(id);
    return new Promise<R>((resolve, reject) => {
      this.pending.set(id, {
        resolve: resolve as (value: unknown) => void,
        reject,
        onProgress: options.onProgress as ((event: unknown) => void) | undefined,
        cancel,
      });
      const msg: RequestMessage = { id, method, params, cancel: cancel.buffer as SharedArrayBuffer };
      const transfer = [...new Set(options.transfer ?? [])].filter(
        (b): b is ArrayBuffer => b instanceof ArrayBuffer && b.byteLength > 0,
      );
      this.worker.postMessage(msg, transfer);
    });
  }

  /** Asks a request (or, without an id, every pending one) to stop; its handler decides when. */
  cancel(id?: number): void {
    for (const [key, p] of this.pending) if (id === undefined || key === id) Atomics.store(p.cancel, 0, 1);
  }

  /**
   * Ends the thread now; pending requests reject with `reason` (default WorkerStoppedError).
   * Resolves once the thread has exited.
   */
  async terminate(reason?: Error): Promise<void> {
    this.stop(reason ?? new WorkerStoppedError(`the ${this.label} was stopped`));
    await this.worker.terminate();
    await this.exited;
  }

  private stop(err: Error): void {
    if (!this.stopped) this.stopped = err;
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
  }

  private receive(msg: ReplyMessage): void {
    const p = this.pending.get(msg.id);
    if (!p) return;
    if (msg.kind === 'progress') {
      p.onProgress?.(msg.event);
      return;
    }
    this.pending.delete(msg.id);
    if (msg.kind === 'result') p.resolve(msg.value);
    else p.reject(this.revive(msg.error));
  }

  /** An error of the class the worker threw (when registered), with its message and fields. */
  private revive(e: SerialisedError): Error {
    const cls = this.errorClasses.get(e.type);
    const err = new Error(e.message);
    if (cls) Object.setPrototypeOf(err, cls.prototype);
    Object.defineProperty(err, 'name', { value: e.name, configurable: true, writable: true });
    Object.assign(err, e.fields);
    if (e.stack) err.stack = `${e.stack}\n    (in the ${this.label})`;
    return err;
  }
}
