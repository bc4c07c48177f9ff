import * as fs from 'node:fs';
import * as path from 'node:path';
import { Worker } from 'node:worker_threads';
import type { TfliteConversion } from '../../lib/models/convert/tflite';
import { sizeOf } from '../../lib/preprocess/shape';
import { rng } from '../fixtures/reference';

/**
 * TFLite's own interpreter (@tensorflow/tfjs-tflite, WebAssembly), the reference the TFLite
 * converter is checked against. It is installed into .tflite-ref/ by scripts/setup-tflite-ref.sh
 * and is not a dependency of the package. It runs in a worker thread: it brings its own (older)
 * tfjs-core and needs browser shims, neither of which may touch the test process's globals.
 */

export const TFLITE_REF_DIR = path.resolve(__dirname, '..', '..', '..', '.tflite-ref');
const PKG_DIR = path.join(TFLITE_REF_DIR, 'node_modules', '@tensorflow', 'tfjs-tflite');

export interface RefTensorInfo {
  name: string;
  dataType: string;
  shape: number[];
}

export interface RefModel {
  inputs: RefTensorInfo[];
  outputs: RefTensorInfo[];
  /** Runs once on raw input values (already quantized for integer inputs); returns raw outputs. */
  run(inputs: ArrayLike<number>[]): Promise<number[][]>;
  /** Milliseconds per run (median of `runs`) on these inputs, timed inside the worker. */
  time(inputs: ArrayLike<number>[], runs: number): Promise<number>;
  /** Frees the interpreter. */
  close(): Promise<void>;
}

/** Why the reference cannot run here ('' when it can). */
export function tfliteReferenceUnavailable(): string {
  if (!fs.existsSync(path.join(PKG_DIR, 'package.json'))) {
    return `TFLite reference interpreter not installed (run scripts/setup-tflite-ref.sh): ${PKG_DIR}`;
  }
  return '';
}

let worker: Worker | undefined;
let nextId = 1;
const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();

function call<T>(message: Record<string, unknown>): Promise<T> {
  if (!worker) {
    worker = new Worker(path.join(__dirname, 'tflite-reference-worker.js'), {
      workerData: { pkgDir: PKG_DIR },
    });
    worker.unref();
    worker.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: string }) => {
      const p = pending.get(m.id);
      pending.delete(m.id);
      if (m.ok) p?.resolve(m.value);
      else p?.reject(new Error(m.error));
    });
    worker.on('error', (err) => {
      for (const p of pending.values()) p.reject(err);
      pending.clear();
      worker = undefined;
    });
  }
  const id = nextId++;
  return new Promise<T>((resolve, reject) => {
    pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
    worker!.postMessage({ id, ...message });
  });
}

/** Loads a TFLite flatbuffer into the reference interpreter (undefined when it is unavailable). */
export async function loadReference(bytes: Uint8Array): Promise<RefModel | undefined> {
  if (tfliteReferenceUnavailable()) return undefined;
  const info = await call<{ handle: number; inputs: RefTensorInfo[]; outputs: RefTensorInfo[] }>({
    op: 'load',
    bytes: bytes.slice(),
  });
  const plain = (inputs: ArrayLike<number>[]) => inputs.map((a) => Array.from(a));
  return {
    inputs: info.inputs,
    outputs: info.outputs,
    run: (inputs) => call<number[][]>({ op: 'run', handle: info.handle, inputs: plain(inputs) }),
    time: (inputs, runs) => call<number>({ op: 'time', handle: info.handle, inputs: plain(inputs), runs }),
    close: () => call<void>({ op: 'close', handle: info.handle }),
  };
}

/** Stops the worker (tests and benchmarks call it when done). */
export async function closeReference(): Promise<void> {
  const w = worker;
  worker = undefined;
  if (w) await w.terminate();
}

export type TfliteTyped = Float32Array | Int8Array | Uint8Array | Int16Array | Int32Array;

/** Random inputs in each input's own type: the full int8 range, or reals in [-1, 1). */
export function randomInputs(conv: TfliteConversion, seed: number): TfliteTyped[] {
  const next = rng(seed);
  return conv.inputs.map((io) => {
    const n = sizeOf(io.shape);
    if (io.type === 'int8') return Int8Array.from({ length: n }, () => Math.floor(next() * 256) - 128);
    if (io.type === 'uint8') return Uint8Array.from({ length: n }, () => Math.floor(next() * 256));
    if (io.type === 'int16') return Int16Array.from({ length: n }, () => Math.floor(next() * 65536) - 32768);
    return Float32Array.from({ length: n }, () => next() * 2 - 1);
  });
}
