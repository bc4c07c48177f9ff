import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { parentPort, workerData } from 'node:worker_threads';

// Worker side of tflite-reference.ts: loads @tensorflow/tfjs-tflite with the browser shims it
// needs in Node (self, location, importScripts, a fetch for local files, and no
// SharedArrayBuffer so that its single-thread build loads) and runs models on request.

interface RunnerTensor {
  name: string;
  dataType: string;
  shape: string;
  data(): { set(a: ArrayLike<number>): void } & ArrayLike<number>;
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

const pkgDir = (workerData as { pkgDir: string }).pkgDir;
const g = globalThis as Record<string, unknown>;
g.self = globalThis;
g.location = { href: 'file:///', origin: 'file://' };
delete g.SharedArrayBuffer;
g.importScripts = (...files: string[]) => {
  for (const f of files) {
    vm.runInThisContext(fs.readFileSync(f.replace(/^file:\/\//, ''), 'utf8'), { filename: f });
  }
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

let mod: TfliteModule | undefined;
const runners = new Map<number, Runner>();
let nextHandle = 1;

function tflite(): TfliteModule {
  if (!mod) {
    mod = require(pkgDir) as TfliteModule;
    mod.setWasmPath(path.join(pkgDir, 'wasm') + '/');
  }
  return mod;
}

function runner(handle: number): Runner {
  const r = runners.get(handle);
  if (!r) throw new Error(`no reference model ${handle}`);
  return r;
}

function infer(r: Runner, inputs?: number[][]): void {
  if (inputs) {
    const ins = r.getInputs();
    if (ins.length !== inputs.length) throw new Error(`the reference wants ${ins.length} inputs`);
    ins.forEach((t, i) => t.data().set(inputs[i]));
  }
  if (!r.infer()) throw new Error('TFLite reference inference failed');
}

const info = (t: RunnerTensor) => ({
  name: t.name,
  dataType: t.dataType,
  shape: t.shape === '' ? [] : t.shape.split(',').map(Number),
});

async function handle(m: Record<string, unknown>): Promise<unknown> {
  switch (m.op) {
    case 'load': {
      const bytes = m.bytes as Uint8Array;
      const buf = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength) as ArrayBuffer;
      const r = (await tflite().loadTFLiteModel(buf, { numThreads: 1 })).modelRunner;
      const h = nextHandle++;
      runners.set(h, r);
      return { handle: h, inputs: r.getInputs().map(info), outputs: r.getOutputs().map(info) };
    }
    case 'run': {
      const r = runner(m.handle as number);
      infer(r, m.inputs as number[][]);
      return r.getOutputs().map((t) => Array.from(t.data()));
    }
    case 'time': {
      const r = runner(m.handle as number);
      infer(r, m.inputs as number[][]);
      const times: number[] = [];
      for (let i = 0; i < (m.runs as number); i++) {
        const t0 = performance.now();
        infer(r);
        times.push(performance.now() - t0);
      }
      times.sort((a, b) => a - b);
      return times[Math.floor(times.length / 2)];
    }
    case 'close': {
      runners.get(m.handle as number)?.cleanUp?.();
      runners.delete(m.handle as number);
      return undefined;
    }
    default:
      throw new Error(`unknown request ${String(m.op)}`);
  }
}

parentPort!.on('message', (m: Record<string, unknown> & { id: number }) => {
  handle(m).then(
    (value) => parentPort!.postMessage({ id: m.id, ok: true, value }),
    (err: Error) => parentPort!.postMessage({ id: m.id, ok: false, error: err.message }),
  );
});
