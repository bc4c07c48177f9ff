import type * as tfl from '@tensorflow/tfjs-layers';
import { ModelLoadError } from '../../errors';
import type { ModelFiles } from '../store/model-files';
import { exportLayersModelToOnnx } from '../convert/onnx-export';
import { convertGraphModelToOnnx } from '../convert/graph-to-onnx';
import { ortAvailable, OrtRunner, type OrtRuntimeName } from './ort-runner';
import type { ModelRunner, RuntimeName } from './runner';
import { tfjsNodeMissing, type TfBackendName } from './tfjs';
import { TfjsRunner } from './tfjs-runner';
import { seededRandom } from '../../util/random';
import {
  compareOutputs,
  describeComparison,
  representativeFeeds,
  VerifyingRunner,
  type VerificationDecision,
} from './verify';
import { renamedRunner, runNamed } from './runner';

/**
 * Picks the runtime for a model. ONNX models run on ONNX Runtime (node where installed, else
 * web). Layers models are exported to ONNX when the exporter can express them, and the export
 * is checked against TF.js on a probe input before it is used; otherwise, and for graph
 * models, TF.js runs them (tfjs-node if installed, else wasm, else cpu). A preference narrows
 * the choice; what cannot be honoured falls back with the reason reported.
 */

export type RuntimePreference = 'auto' | 'onnxruntime' | 'tfjs' | RuntimeName;

export const RUNTIME_PREFERENCES: readonly RuntimePreference[] = [
  'auto',
  'onnxruntime',
  'onnxruntime-node',
  'onnxruntime-web',
  'tfjs',
  'tfjs-node',
  'tfjs-wasm',
  'tfjs-cpu',
];

export const DEFAULT_EXPORT_TOLERANCE = 1e-4;

export interface RunnerOptions {
  runtime?: RuntimePreference;
  /** Per-sample input shape for models whose input has unknown dimensions. */
  inputShape?: number[];
  /** Shape for unknown dimensions when none is configured, if it fits (e.g. from meta.json). */
  fallbackInputShape?: number[];
  /** Largest accepted |ONNX - TF.js| on the probe, relative to the output scale when above 1. */
  tolerance?: number;
  /** onnxruntime-node intra-op threads. */
  threads?: number;
  /** Layers -> ONNX converter; throws when a model cannot be expressed. */
  exporter?: (model: tfl.LayersModel) => Uint8Array;
  /** Samples saved with the model (meta.json `sample`), used to verify an export. */
  sample?: unknown;
  /** Statistics inputs are scaled with (meta.json `normalisation`), used to verify an export. */
  normalisation?: unknown;
  /**
   * When an export fails a random probe only (no sample, no statistics), TF.js serves while the
   * export is checked on this many first inputs, and takes over if they agree (0: no deferral).
   */
  verifyMessages?: number;
  /** Told when a deferred verification decides. */
  onVerified?: (decision: VerificationDecision) => void;
}

export const DEFAULT_VERIFY_MESSAGES = 8;

export interface RunnerSelection {
  runner: ModelRunner;
  /** A layers model running as its ONNX export. */
  exported: boolean;
  /** Largest |ONNX - TF.js| on the probe input, when an export was verified. */
  maxAbsDiff?: number;
  /** Why a faster or preferred runtime was not used. */
  fallbackReason?: string;
  notes: string[];
}

function ortOrder(preference: RuntimePreference): OrtRuntimeName[] {
  if (preference === 'onnxruntime-web') return ['onnxruntime-web'];
  return ['onnxruntime-node', 'onnxruntime-web'];
}

function tfjsBackends(preference: RuntimePreference): TfBackendName[] {
  if (preference === 'tfjs-node') return ['tensorflow', 'wasm', 'cpu'];
  if (preference === 'tfjs-wasm') return ['wasm', 'cpu'];
  if (preference === 'tfjs-cpu') return ['cpu'];
  return ['tensorflow', 'wasm', 'cpu'];
}

/** Deterministic pseudo-random values in [-1, 1), the same on every run. */
export function probeInput(size: number, seed = 12345): Float32Array {
  const uniform = seededRandom(seed);
  return Float32Array.from({ length: size }, () => uniform() * 2 - 1);
}

export function maxAbsDifference(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = Number.isNaN(d) ? Infinity : d;
  }
  return max;
}

function sameRuntime(preference: RuntimePreference, runtime: RuntimeName): boolean {
  if (preference === 'auto') return true;
  if (preference === 'tfjs') return runtime.startsWith('tfjs');
  if (preference === 'onnxruntime') return runtime.startsWith('onnxruntime');
  return preference === runtime;
}

async function startOrt(
  model: Uint8Array,
  preference: RuntimePreference,
  options: RunnerOptions,
  inputShape?: number[],
  fallbackInputShape?: number[],
): Promise<{ runner?: OrtRunner; reason?: string; missing?: boolean }> {
  const reasons: string[] = [];
  let failed = false;
  for (const runtime of ortOrder(preference)) {
    if (!ortAvailable(runtime)) {
      reasons.push(`${runtime} is not installed or does not load here`);
      continue;
    }
    try {
      const runner = await OrtRunner.create(model, runtime, {
        inputShape,
        fallbackInputShape,
        threads: options.threads,
      });
      return { runner, reason: reasons.length > 0 ? reasons.join('; ') : undefined };
    } catch (err) {
      // The file's own fault leads, whatever runtimes are missing.
      if (err instanceof ModelLoadError && err.code === 'model-invalid-onnx') throw err;
      // The same refusal from both ONNX Runtimes is said once.
      if (!reasons.includes((err as Error).message)) reasons.push((err as Error).message);
      failed = true;
      // A model one ONNX Runtime rejects, the other rejects too; keep the first message.
      if (err instanceof ModelLoadError && /could not load/.test(err.message)) break;
    }
  }
  return { reason: reasons.join('; ') || 'ONNX Runtime unavailable', missing: !failed };
}

/** Starts `files` on the best runtime allowed by `options.runtime`. */
export async function createRunner(files: ModelFiles, options: RunnerOptions = {}): Promise<RunnerSelection> {
  const preference = options.runtime ?? 'auto';
  const notes: string[] = [];
  if (files.format === 'onnx') {
    if (preference.startsWith('tfjs')) notes.push(`ONNX models run on ONNX Runtime, not ${preference}`);
    const ort = await startOrt(
      files.onnx,
      preference.startsWith('tfjs') ? 'auto' : preference,
      options,
      options.inputShape,
      options.fallbackInputShape,
    );
    if (!ort.runner) {
      throw new ModelLoadError(
        ort.reason ?? 'ONNX Runtime could not start',
        ort.missing ? 'runtime-missing' : 'runtime-failed',
      );
    }
    notes.push(...ort.runner.notes);
    const fallbackReason = sameRuntime(preference, ort.runner.runtime)
      ? undefined
      : (ort.reason ?? `runs on ${ort.runner.runtime}`);
    return { runner: ort.runner, exported: false, fallbackReason, notes };
  }

  const tfjs = await TfjsRunner.fromArtifacts(files.format, files.artifacts, {
    backends: tfjsBackends(preference),
    inputShape: options.inputShape,
    fallbackInputShape: options.fallbackInputShape,
  });
  notes.push(...tfjs.notes);
  let fallbackReason: string | undefined;
  const wantsTfjs = preference.startsWith('tfjs');
  if (wantsTfjs) {
    if (!sameRuntime(preference, tfjs.runtime)) {
      const why = preference === 'tfjs-node' ? tfjsNodeMissing() : undefined;
      fallbackReason = `${preference} could not start${why ? ` (${why})` : ''}; TF.js runs on ${tfjs.runtime}`;
    }
    return { runner: tfjs, exported: false, fallbackReason, notes };
  }

  // Layers model: its ONNX export; graph model: its GraphDef converted; either verified against TF.js.
  let onnx: Uint8Array;
  try {
    onnx =
      files.format === 'tfjs-graph'
        ? convertGraphModelToOnnx(files.artifacts)
        : (options.exporter ?? exportLayersModelToOnnx)(tfjs.layersModel as tfl.LayersModel);
  } catch (err) {
    fallbackReason = `not ${files.format === 'tfjs-graph' ? 'converted' : 'exported'} to ONNX: ${(err as Error).message}`;
    return { runner: tfjs, exported: false, fallbackReason, notes: [...notes, fallbackReason] };
  }
  const ort = await startOrt(onnx, preference, options, tfjs.inputShape);
  if (!ort.runner) {
    fallbackReason = `ONNX export could not run: ${ort.reason}`;
    return { runner: tfjs, exported: false, fallbackReason, notes: [...notes, fallbackReason] };
  }
  // The export under the layers model's input and output names.
  const exported = renamedRunner(ort.runner, tfjs.inputs, tfjs.outputs);
  const probe = representativeFeeds(tfjs.inputs, {
    sample: options.sample,
    normalisation: options.normalisation,
  });
  const tolerance = options.tolerance ?? DEFAULT_EXPORT_TOLERANCE;
  let maxAbsDiff = Infinity;
  try {
    const expected = await runNamed(tfjs, probe.feeds, probe.batch);
    const actual = await runNamed(exported, probe.feeds, probe.batch);
    const comparison = compareOutputs(expected, actual, tolerance);
    maxAbsDiff = comparison.maxAbsDiff;
    if (!comparison.ok)
      fallbackReason = describeComparison(comparison, `ONNX export on the ${probe.source} probe`);
  } catch (err) {
    fallbackReason = `ONNX export failed on the probe input: ${(err as Error).message}`;
  }
  if (fallbackReason) {
    const messages = options.verifyMessages ?? DEFAULT_VERIFY_MESSAGES;
    if (probe.source === 'random' && Number.isFinite(maxAbsDiff) && messages > 0) {
      const reason = `${fallbackReason}; TF.js serves until the export is checked on the first ${messages} messages`;
      const runner = new VerifyingRunner(tfjs, exported, {
        samples: messages,
        tolerance,
        onDecision: options.onVerified,
      });
      return { runner, exported: false, maxAbsDiff, fallbackReason: reason, notes: [...notes, reason] };
    }
    await ort.runner.dispose();
    return { runner: tfjs, exported: false, maxAbsDiff, fallbackReason, notes: [...notes, fallbackReason] };
  }
  await tfjs.dispose();
  notes.push(
    `exported to ONNX; max |ONNX - TF.js| on the ${probe.source} probe ${maxAbsDiff.toExponential(2)}`,
  );
  const runtimeReason = sameRuntime(preference, ort.runner.runtime)
    ? undefined
    : (ort.reason ?? 'preferred runtime unavailable');
  return { runner: exported, exported: true, maxAbsDiff, fallbackReason: runtimeReason, notes };
}
