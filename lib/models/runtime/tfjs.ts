import { promises as fs } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-backend-wasm';
import './tfjs-chained-ops';
import { chosenTfjsSource } from './tfjs-source';
import { decodeEntries, type ManifestEntry } from '../store/weights';

export { tf };

export type TfBackendName = 'wasm' | 'cpu' | 'tensorflow';

let tfjsNodeTried = false;
/** Why tfjs-node's backend is not available in this thread (set once it was looked for). */
let tfjsNodeMissingReason: string | undefined;

/**
 * Loads @tensorflow/tfjs-node when the user installed it (it is never a dependency). It is
 * loaded only when TF.js itself came from the user's install (see tfjs-source.ts): its backend
 * registers on that tfjs-core, which is the one this package then runs on.
 */
function tryTfjsNode(): boolean {
  if (!tfjsNodeTried) {
    tfjsNodeTried = true;
    const source = chosenTfjsSource();
    if (source?.tfjsNode === undefined) {
      tfjsNodeMissingReason = source?.reason ?? '@tensorflow/tfjs-node is not installed';
    } else {
      try {
        require(source.tfjsNode);
      } catch (err) {
        tfjsNodeMissingReason = `@tensorflow/tfjs-node does not load here: ${(err as Error).message.split('\n')[0]}`;
      }
    }
  }
  // (tf.findBackend answers null, not undefined, for a backend that is not registered.)
  const registered = tf.engine().registryFactory['tensorflow'] !== undefined;
  if (!registered)
    tfjsNodeMissingReason ??= "@tensorflow/tfjs-node loaded but registered no 'tensorflow' backend";
  return registered;
}

/**
 * Why TF.js cannot run on tfjs-node's native backend in this thread ('tensorflow'), so it runs
 * on wasm or cpu; undefined when it can.
 */
export function tfjsNodeMissing(): string | undefined {
  return tryTfjsNode() ? undefined : tfjsNodeMissingReason;
}

/** The one backend switch in flight: every caller awaits it instead of racing tf.setBackend. */
let switching: Promise<TfBackendName> | undefined;

/**
 * Switches TF.js to the first backend of `preference` that initialises in this process:
 * tfjs-node where installed, else wasm, else cpu. Returns the backend now active, only once it
 * is ready. Concurrent callers share one start; a start that failed is tried again by the next
 * call (a failure can be transient, e.g. the .wasm file could not be read).
 */
export async function useBackend(
  preference: readonly TfBackendName[] = ['tensorflow', 'wasm', 'cpu'],
): Promise<TfBackendName> {
  // tf.getBackend() names a backend as soon as its start began, so wait for any start first.
  while (switching) await switching.catch(() => undefined);
  const start = startBackend(preference);
  switching = start;
  try {
    return await start;
  } finally {
    if (switching === start) switching = undefined;
  }
}

async function startBackend(preference: readonly TfBackendName[]): Promise<TfBackendName> {
  for (const name of preference) {
    if (name === 'tensorflow' && !tryTfjsNode()) continue;
    if (tf.getBackend() === name && isReady(name)) return name;
    const before = name === 'wasm' ? processListeners() : undefined;
    try {
      if (await tf.setBackend(name)) {
        await tf.ready();
        return name;
      }
    } catch {
      // try the next one
    } finally {
      if (before) removeEmscriptenListeners(before);
    }
  }
  throw new Error(`none of the TF.js backends ${preference.join(', ')} could start`);
}

type ProcessEvent = 'uncaughtException' | 'unhandledRejection';
const PROCESS_EVENTS: readonly ProcessEvent[] = ['uncaughtException', 'unhandledRejection'];

function listenersOf(event: ProcessEvent): unknown[] {
  return (process as unknown as NodeJS.EventEmitter).listeners(event);
}

function processListeners(): Map<ProcessEvent, Set<unknown>> {
  return new Map(PROCESS_EVENTS.map((event) => [event, new Set<unknown>(listenersOf(event))]));
}

/**
 * The wasm backend's Emscripten glue, when it starts under Node, adds process listeners that
 * re-throw every uncaught exception and unhandled rejection, so an application embedding
 * Node-RED that handles those itself would exit. They do nothing else (an exit of the wasm
 * program is not used by TF.js), so the ones added during the start are removed; a listener is
 * removed only if it is new and has the glue's body, never one the application added meanwhile.
 */
function removeEmscriptenListeners(before: Map<ProcessEvent, Set<unknown>>): void {
  for (const event of PROCESS_EVENTS) {
    for (const listener of listenersOf(event)) {
      if (before.get(event)!.has(listener)) continue;
      const body = String(listener);
      const glue = event === 'uncaughtException' ? /ExitStatus/.test(body) : /throw reason/.test(body);
      if (glue) (process as unknown as NodeJS.EventEmitter).removeListener(event, listener as () => void);
    }
  }
}

/** True once `name` is initialised (not merely selected while its start is pending). */
function isReady(name: TfBackendName): boolean {
  return tf.engine().registry[name] !== undefined;
}

/** The active backend once any start in flight has finished (for callers bound to it). */
export async function activeBackend(): Promise<TfBackendName> {
  while (switching) await switching.catch(() => undefined);
  return tf.getBackend() as TfBackendName;
}

/** Reads a TF.js model.json and its weight shards from disk (shard paths relative to model.json). */
export function fileLoadHandler(modelJsonPath: string): tf.io.IOHandler {
  return {
    load: async () => {
      const modelJson = JSON.parse(await fs.readFile(modelJsonPath, 'utf8')) as tf.io.ModelJSON;
      const dir = path.dirname(modelJsonPath);
      const specs: tf.io.WeightsManifestEntry[] = [];
      const buffers: Buffer[] = [];
      for (const group of modelJson.weightsManifest ?? []) {
        specs.push(...group.weights);
        for (const shard of group.paths) buffers.push(await fs.readFile(path.resolve(dir, shard)));
      }
      const weightData = Buffer.concat(buffers);
      const bytes = weightData.buffer.slice(
        weightData.byteOffset,
        weightData.byteOffset + weightData.byteLength,
      );
      // Per-channel uint8/uint16 ranges (this package's extension) are decoded here: TF.js reads one range.
      if ((specs as ManifestEntry[]).some((spec) => Array.isArray(spec.quantization?.min))) {
        const decoded = decodeEntries(specs as ManifestEntry[], new Uint8Array(bytes));
        const plain = decoded.map(({ entry, dtype }) => ({ name: entry.name, shape: entry.shape, dtype }));
        const parts = decoded.map(
          ({ values }) => new Uint8Array(values.buffer, values.byteOffset, values.byteLength),
        );
        const joined = Buffer.concat(parts);
        const data = joined.buffer.slice(joined.byteOffset, joined.byteOffset + joined.byteLength);
        return tf.io.getModelArtifactsForJSONSync(modelJson, plain, data);
      }
      return tf.io.getModelArtifactsForJSONSync(modelJson, specs, bytes);
    },
  };
}

/** Weight specs with their encoded bytes, e.g. quantized weights in the converter's format. */
export interface PrecomputedWeights {
  weightSpecs: tf.io.WeightsManifestEntry[];
  weightData: tf.io.WeightData;
}

/**
 * Writes model.json and one weights.bin into `dir` (use inside ModelStore.save). With
 * `weights`, those specs and bytes are written instead of the ones in the saved artifacts,
 * so `model.save(fileSaveHandler(dir, quantized))` stores the model with quantized weights.
 */
export function fileSaveHandler(dir: string, weights?: PrecomputedWeights): tf.io.IOHandler {
  return {
    save: async (saved) => {
      const artifacts = weights ? { ...saved, ...weights } : saved;
      const weightsFile = 'weights.bin';
      const weightData = artifacts.weightData
        ? Buffer.from(tf.io.CompositeArrayBuffer.join(artifacts.weightData))
        : Buffer.alloc(0);
      const modelJson: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology as tf.io.ModelJSON['modelTopology'],
        format: artifacts.format,
        generatedBy: artifacts.generatedBy,
        convertedBy: artifacts.convertedBy,
        trainingConfig: artifacts.trainingConfig,
        userDefinedMetadata: artifacts.userDefinedMetadata,
        weightsManifest: [{ paths: [weightsFile], weights: artifacts.weightSpecs ?? [] }],
      };
      await fs.writeFile(path.join(dir, 'model.json'), JSON.stringify(modelJson));
      await fs.writeFile(path.join(dir, weightsFile), weightData);
      return { modelArtifactsInfo: tf.io.getModelArtifactsInfoForJSON(artifacts) };
    },
  };
}
