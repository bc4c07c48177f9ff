import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';

/**
 * TFLite's own interpreter (@tensorflow/tfjs-tflite, WebAssembly) loaded in Node from
 * .tflite-ref/ (scripts/setup-tflite-ref.sh), the reference the TFLite converter is checked
 * against. It is not a dependency of the package: its peer is an older tfjs-core. It needs a few
 * browser shims and its single-thread build (no SharedArrayBuffer).
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
  run(inputs: ArrayLike<number>[]): number[][];
  /** Milliseconds per run (median of `runs`) on these inputs. */
  time(inputs: ArrayLike<number>[], runs: number): number;
}

interface RunnerTensor {
  name: string;
  dataType: string;
  shape: string;
  data(): { length: number; [i: number]: number; set(a: ArrayLike<number>): void };
}

interface Runner {
  getInputs(): RunnerTensor[];
  getOutputs(): RunnerTensor[];
  infer(): boolean;
  cleanUp?(): void;
}

interface TfliteModule {
  setWasmPath(p: string): void;
  loadTFLiteModel(model: ArrayBuffer, options?: { numThreads?: number }): Promise<{ modelRunner: Runner }>;
}

let loaded: TfliteModule | null | undefined;
let unavailable = '';

/** Why the reference cannot run here ('' when it can). */
export function tfliteReferenceUnavailable(): string {
  loadModule();
  return unavailable;
}

function loadModule(): TfliteModule | undefined {
  if (loaded !== undefined) return loaded ?? undefined;
  if (!fs.existsSync(path.join(PKG_DIR, 'package.json'))) {
    unavailable = `TFLite reference interpreter not installed (run scripts/setup-tflite-ref.sh): ${PKG_DIR}`;
    loaded = null;
    return undefined;
  }
  const restore = installShims();
  try {
    const mod = require(PKG_DIR) as TfliteModule;
    mod.setWasmPath(path.join(PKG_DIR, 'wasm') + '/');
    loaded = mod;
  } catch (err) {
    unavailable = `TFLite reference interpreter did not load: ${(err as Error).message}`;
    loaded = null;
  } finally {
    restore();
  }
  return loaded ?? undefined;
}

/**
 * Browser shims for the reference's loader, removed again afterwards (other libraries, e.g.
 * onnxruntime-web, look at `self` and SharedArrayBuffer to tell where they run).
 */
function installShims(): () => void {
  const g = globalThis as Record<string, unknown>;
  const keys = ['self', 'location', 'SharedArrayBuffer', 'importScripts', 'fetch'];
  const saved = new Map(keys.map((k) => [k, Object.getOwnPropertyDescriptor(g, k)]));
  g.self = globalThis;
  g.location = { href: 'file:///', origin: 'file://' };
  // The single-thread wasm build is chosen when SharedArrayBuffer is missing.
  delete g.SharedArrayBuffer;
  g.importScripts = (...files: string[]) => {
    for (const f of files)
      vm.runInThisContext(fs.readFileSync(f.replace(/^file:\/\//, ''), 'utf8'), { filename: f });
  };
  const realFetch = g.fetch as ((...args: unknown[]) => Promise<unknown>) | undefined;
  g.fetch = async (input: unknown, init?: unknown) => {
    const url = String(input);
    if (url.startsWith('/') || url.startsWith('file://')) {
      const bytes = fs.readFileSync(url.replace(/^file:\/\//, ''));
      const type = url.endsWith('.wasm') ? 'application/wasm' : 'application/octet-stream';
      return new Response(bytes, { headers: { 'Content-Type': type } });
    }
    if (!realFetch) throw new Error(`no fetch for ${url}`);
    return realFetch(input, init);
  };
  return () => {
    for (const [k, d] of saved) {
      if (d) Object.defineProperty(g, k, d);
      else delete g[k];
    }
  };
}

/** Loads a TFLite flatbuffer into the reference interpreter (undefined when it is unavailable). */
export async function loadReference(bytes: Uint8Array): Promise<RefModel | undefined> {
  const mod = loadModule();
  if (!mod) return undefined;
  const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
  const restore = installShims();
  let model: { modelRunner: Runner };
  try {
    model = await mod.loadTFLiteModel(buf, { numThreads: 1 });
  } finally {
    restore();
  }
  const runner = model.modelRunner;
  const info = (t: RunnerTensor): RefTensorInfo => ({
    name: t.name,
    dataType: t.dataType,
    shape: t.shape === '' ? [] : t.shape.split(',').map(Number),
  });
  const feed = (inputs: ArrayLike<number>[]) => {
    const ins = runner.getInputs();
    if (ins.length !== inputs.length) throw new Error(`reference wants ${ins.length} inputs`);
    ins.forEach((t, i) => t.data().set(inputs[i]));
  };
  const infer = () => {
    if (!runner.infer()) throw new Error('TFLite reference inference failed');
  };
  return {
    inputs: runner.getInputs().map(info),
    outputs: runner.getOutputs().map(info),
    run(inputs) {
      feed(inputs);
      infer();
      return runner.getOutputs().map((t) => Array.from(t.data() as ArrayLike<number>));
    },
    time(inputs, runs) {
      feed(inputs);
      infer();
      const times: number[] = [];
      for (let i = 0; i < runs; i++) {
        const t0 = performance.now();
        infer();
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      return times[Math.floor(times.length / 2)];
    },
  };
}
