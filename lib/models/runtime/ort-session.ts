import { spawnSync } from 'node:child_process';
import type * as OrtWeb from 'onnxruntime-web';

/** The two ONNX Runtime packages that run in Node: the native addon and the WebAssembly build. */
export type OrtRuntimeName = 'onnxruntime-node' | 'onnxruntime-web';

/** Both packages share the onnxruntime-common API, so one module type covers them. */
export type OrtModule = typeof OrtWeb;
export type OrtInferenceSession = OrtWeb.InferenceSession;
export type OrtSessionOptions = OrtWeb.InferenceSession.SessionOptions;

/**
 * Each package named literally, so the build points onnxruntime-web at the Node files this
 * package ships (dist/vendor, scripts/vendor-runtime.mjs).
 */
const ORT_PACKAGES: Record<OrtRuntimeName, () => OrtModule> = {
  'onnxruntime-node': () => require('onnxruntime-node') as OrtModule,
  'onnxruntime-web': () => require('onnxruntime-web') as OrtModule,
};

const loaded = new Map<OrtRuntimeName, OrtModule | null>();
/** Why onnxruntime-node is not used in this process (set once it was looked for). */
let nativeMissing: string | undefined;

/**
 * Loads onnxruntime-node in a child process first: a native addon that crashes while loading
 * (a binary for another CPU, an emulator) would take Node-RED down with it. Returns why it
 * cannot be used, or undefined when it loads. EDGE_AI_ORT_PROBE=0 skips the child process and
 * loads it in this process directly.
 */
function probeNativeOrt(): string | undefined {
  let entry: string;
  try {
    entry = require.resolve('onnxruntime-node');
  } catch {
    return 'onnxruntime-node is not installed';
  }
  if (process.env.EDGE_AI_ORT_PROBE === '0') return undefined;
  // The child says it started before it loads the addon, so "cannot start" and "crashed while
  // loading" are told apart.
  const probe = spawnSync(
    process.execPath,
    ['-e', `process.stdout.write('started\\n'); require(${JSON.stringify(entry)})`],
    { stdio: ['ignore', 'pipe', 'pipe'], timeout: 120_000, encoding: 'utf8' },
  );
  const code = (probe.error as NodeJS.ErrnoException | undefined)?.code;
  if (code === 'ETIMEDOUT') return 'onnxruntime-node did not load within 120 s';
  if (probe.error || !(probe.stdout ?? '').startsWith('started')) {
    // This Node cannot start itself (seen under qemu-user without binfmt): loading the addon
    // unchecked could crash the process, so it is not used unless the user says so.
    return `onnxruntime-node not used: Node could not start a child process to check it (${code ?? `exit code ${probe.status}`}); EDGE_AI_ORT_PROBE=0 loads it without the check`;
  }
  if (probe.signal) return `onnxruntime-node crashed while loading (${probe.signal})`;
  if (probe.status !== 0) {
    const lines = (probe.stderr ?? '').split('\n').filter((l) => /Error/.test(l));
    return `onnxruntime-node does not load here: ${(lines[0] ?? `exit code ${probe.status}`).trim()}`;
  }
  return undefined;
}

/** Returns the ONNX Runtime package of that name, or undefined when it is not installed or fails to load. */
export function loadOrt(runtime: OrtRuntimeName): OrtModule | undefined {
  // Load order matters: see DEFAULT_PROVIDERS. The native package must register 'cpu' first.
  if (runtime === 'onnxruntime-web' && !loaded.has('onnxruntime-node')) loadOrt('onnxruntime-node');
  if (!loaded.has(runtime)) {
    if (runtime === 'onnxruntime-node') nativeMissing = probeNativeOrt();
    if (nativeMissing !== undefined && runtime === 'onnxruntime-node') {
      loaded.set(runtime, null);
    } else {
      try {
        // onnxruntime-node is an optional dependency (a native addon); onnxruntime-web always is there.
        loaded.set(runtime, ORT_PACKAGES[runtime]());
      } catch (err) {
        if (runtime === 'onnxruntime-node') {
          nativeMissing = `onnxruntime-node does not load here: ${(err as Error).message.split('\n')[0]}`;
        }
        loaded.set(runtime, null);
      }
    }
  }
  return loaded.get(runtime) ?? undefined;
}

/**
 * Why the native ONNX Runtime (onnxruntime-node) is not available in this process, so models
 * run on the slower onnxruntime-web; undefined when it loads.
 */
export function nativeOrtMissing(): string | undefined {
  loadOrt('onnxruntime-node');
  return nativeMissing;
}

/** The runtimes that load in this process, fastest first. */
export function availableOrtRuntimes(): OrtRuntimeName[] {
  return (['onnxruntime-node', 'onnxruntime-web'] as const).filter((r) => loadOrt(r) !== undefined);
}

/** An ONNX Runtime session with one float32 input and one output, as made by createOrtSession. */
export interface OrtSession {
  readonly runtime: OrtRuntimeName;
  readonly session: OrtInferenceSession;
  readonly inputName: string;
  readonly outputName: string;
  /** Runs the model on one float32 tensor and returns the first output. */
  run(input: Float32Array, dims: readonly number[]): Promise<{ data: Float32Array; dims: number[] }>;
  /** Runs the model and returns every float32 output by name. */
  runAll(
    input: Float32Array,
    dims: readonly number[],
  ): Promise<Record<string, { data: Float32Array; dims: number[] }>>;
  /** Releases the native or wasm session; further runs fail. Safe to call twice. */
  release(): Promise<void>;
}

/**
 * Both packages register their backends in the one onnxruntime-common they share, and a
 * backend name keeps whichever package registered it first. So onnxruntime-node is loaded
 * before onnxruntime-web (its 'cpu' wins), and each session names its execution provider:
 * 'wasm' exists only in onnxruntime-web. Without that, a session created through
 * onnxruntime-web silently runs on the native backend (or the reverse).
 */
const DEFAULT_PROVIDERS: Record<OrtRuntimeName, string[]> = {
  'onnxruntime-node': ['cpu'],
  'onnxruntime-web': ['wasm'],
};

let liveSessions = 0;

/** How many sessions made by createOrtSession are not yet released (for leak checks). */
export function liveOrtSessionCount(): number {
  return liveSessions;
}

/**
 * Creates a session from ONNX model bytes. `prefer` picks the runtime: 'auto' takes
 * onnxruntime-node where it loads and falls back to onnxruntime-web; naming a runtime uses
 * only that one and fails when it is unavailable.
 */
export async function createOrtSession(
  bytes: Uint8Array,
  prefer: OrtRuntimeName | 'auto' = 'auto',
  options: OrtSessionOptions = {},
): Promise<OrtSession> {
  const candidates = prefer === 'auto' ? availableOrtRuntimes() : [prefer];
  const errors: string[] = [];
  for (const runtime of candidates) {
    const ort = loadOrt(runtime);
    if (!ort) {
      errors.push(`${runtime} is not installed`);
      continue;
    }
    let session: OrtInferenceSession;
    try {
      session = await ort.InferenceSession.create(bytes, {
        executionProviders: DEFAULT_PROVIDERS[runtime],
        ...options,
      });
    } catch (err) {
      errors.push(`${runtime}: ${(err as Error).message}`);
      continue;
    }
    const actual = ortSessionBackend(session);
    if (actual && actual !== runtime) {
      // Someone loaded onnxruntime-web before onnxruntime-node in this process.
      await session.release();
      errors.push(`${runtime}: the session ran on ${actual} (load onnxruntime-node first)`);
      continue;
    }
    liveSessions++;
    return wrapSession(ort, runtime, session);
  }
  throw new Error(`no ONNX Runtime could open the model (${errors.join('; ') || 'none installed'})`);
}

/** Which package's backend a session really runs on, from its (internal) handler. */
export function ortSessionBackend(session: OrtInferenceSession): OrtRuntimeName | undefined {
  const handler = (session as unknown as { handler?: object }).handler;
  if (!handler) return undefined;
  return 'fetchModelAndCopyToWasmMemory' in handler ? 'onnxruntime-web' : 'onnxruntime-node';
}

function wrapSession(ort: OrtModule, runtime: OrtRuntimeName, session: OrtInferenceSession): OrtSession {
  const inputName = session.inputNames[0];
  const outputName = session.outputNames[0];
  let released = false;
  return {
    runtime,
    session,
    inputName,
    outputName,
    async run(input, dims) {
      const results = await session.run({ [inputName]: new ort.Tensor('float32', input, dims as number[]) });
      const out = results[outputName];
      if (!(out.data instanceof Float32Array))
        throw new Error(`output ${outputName} is ${out.type}, not float32`);
      return { data: out.data, dims: out.dims.slice() };
    },
    async runAll(input, dims) {
      const results = await session.run({ [inputName]: new ort.Tensor('float32', input, dims as number[]) });
      const outputs: Record<string, { data: Float32Array; dims: number[] }> = {};
      for (const [name, out] of Object.entries(results)) {
        if (out.data instanceof Float32Array) outputs[name] = { data: out.data, dims: out.dims.slice() };
      }
      return outputs;
    },
    async release() {
      if (released) return;
      released = true;
      liveSessions--;
      await session.release();
    },
  };
}
