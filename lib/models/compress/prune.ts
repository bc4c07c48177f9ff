/**
 * Magnitude pruning of TF.js layers model weights: the smallest-magnitude kernel weights are
 * set to exactly zero until the target sparsity is reached, over all kernels at once (global)
 * or layer by layer. Biases, normalisation parameters and embeddings are never pruned.
 */
import type { io } from '@tensorflow/tfjs-core';
import type { LayersModel } from '@tensorflow/tfjs-layers';
import {
  decodeWeightData,
  encodeWeights,
  modelArtifacts,
  type DecodedWeight,
  type ManifestEntry,
  type QuantizationPlan,
} from './quantize';

export type PruneScope = 'global' | 'per-layer';
export const PRUNE_SCOPES: readonly PruneScope[] = ['global', 'per-layer'];

export interface PruneOptions {
  /** Fraction of kernel weights to set to zero, 0 <= sparsity < 1. */
  sparsity: number;
  scope?: PruneScope;
  /** Which weights may be pruned; kernels by default. */
  isPrunable?: (weight: DecodedWeight) => boolean;
}

export interface LayerSparsity {
  layer: string;
  parameters: number;
  zeros: number;
  sparsity: number;
}

export interface SparsityStats {
  /** Parameters of every weight (all dtypes). */
  totalParameters: number;
  /** Parameters of the prunable weights (kernels). */
  prunableParameters: number;
  /** Zeros among the prunable weights / prunableParameters. */
  sparsity: number;
  /** Zeros among all float32 weights / their count (biases included). */
  overallSparsity: number;
  layers: LayerSparsity[];
}

export interface PruneStats extends SparsityStats {
  target: number;
  scope: PruneScope;
  /** Weights set to zero by this pruning (already-zero weights not counted). */
  newlyZeroed: number;
}

/** `dense_1/kernel`, `sequential_4/lstm/recurrent_kernel`, `conv/depthwise_kernel:0`, ... */
export function isKernelName(name: string): boolean {
  const last = name.replace(/:\d+$/, '').split('/').pop() ?? '';
  return /kernel$/i.test(last);
}

function isKernelWeight(weight: DecodedWeight): boolean {
  return weight.dtype === 'float32' && isKernelName(weight.name);
}

/** The layer a weight belongs to: its name without the last path segment. */
export function layerOf(name: string): string {
  const parts = name.replace(/:\d+$/, '').split('/');
  return parts.length > 1 ? parts.slice(0, -1).join('/') : parts[0];
}

export function checkSparsity(sparsity: unknown): number {
  const value = Number(sparsity);
  if (typeof sparsity === 'boolean' || !Number.isFinite(value) || value < 0 || value >= 1) {
    throw new Error(
      `sparsity must be a number from 0 up to (not including) 1, got ${JSON.stringify(sparsity)}`,
    );
  }
  return value;
}

function countZeros(values: ArrayLike<number>): number {
  let zeros = 0;
  for (let i = 0; i < values.length; i++) if (values[i] === 0) zeros++;
  return zeros;
}

/** Sparsity of weights as they are, per layer and overall. */
export function measureSparsity(
  weights: readonly DecodedWeight[],
  isPrunable: (weight: DecodedWeight) => boolean = isKernelWeight,
): SparsityStats {
  let totalParameters = 0;
  let floatParameters = 0;
  let floatZeros = 0;
  const layers = new Map<string, { parameters: number; zeros: number }>();
  for (const weight of weights) {
    const n = weight.values.length;
    totalParameters += n;
    if (weight.dtype !== 'float32') continue;
    const zeros = countZeros(weight.values);
    floatParameters += n;
    floatZeros += zeros;
    if (!isPrunable(weight)) continue;
    const layer = layerOf(weight.name);
    const entry = layers.get(layer) ?? { parameters: 0, zeros: 0 };
    entry.parameters += n;
    entry.zeros += zeros;
    layers.set(layer, entry);
  }
  const list = [...layers].map(([layer, { parameters, zeros }]) => ({
    layer,
    parameters,
    zeros,
    sparsity: parameters > 0 ? zeros / parameters : 0,
  }));
  const prunableParameters = list.reduce((n, l) => n + l.parameters, 0);
  const prunableZeros = list.reduce((n, l) => n + l.zeros, 0);
  return {
    totalParameters,
    prunableParameters,
    sparsity: prunableParameters > 0 ? prunableZeros / prunableParameters : 0,
    overallSparsity: floatParameters > 0 ? floatZeros / floatParameters : 0,
    layers: list,
  };
}

/**
 * Zeros exactly round(sparsity * n) of the n values across `arrays` (fewer only if NaNs are
 * present): all values below the k-th smallest magnitude, then ties at that magnitude in order.
 */
function pruneSmallest(arrays: Float32Array[], sparsity: number): number {
  const n = arrays.reduce((sum, a) => sum + a.length, 0);
  const k = Math.round(sparsity * n);
  if (k === 0) return 0;
  const magnitudes = new Float32Array(n);
  let offset = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) magnitudes[offset + i] = Math.abs(a[i]);
    offset += a.length;
  }
  magnitudes.sort();
  const threshold = magnitudes[k - 1];
  let below = 0;
  for (let i = 0; i < k; i++) if (magnitudes[i] < threshold) below++;
  let tiesToZero = k - below;
  let newlyZeroed = 0;
  for (const a of arrays) {
    for (let i = 0; i < a.length; i++) {
      const m = Math.abs(a[i]);
      if (m < threshold || (m === threshold && tiesToZero > 0)) {
        if (m === threshold) tiesToZero--;
        if (a[i] !== 0) newlyZeroed++;
        a[i] = 0;
      }
    }
  }
  return newlyZeroed;
}

/** Returns pruned copies of the weights (the input is left untouched) and the sparsity reached. */
export function pruneWeights(
  weights: readonly DecodedWeight[],
  options: PruneOptions,
): { weights: DecodedWeight[]; stats: PruneStats } {
  const sparsity = checkSparsity(options.sparsity);
  const scope = options.scope ?? 'global';
  if (!(PRUNE_SCOPES as readonly string[]).includes(scope)) {
    throw new Error(`prune scope must be one of ${PRUNE_SCOPES.join(', ')}, got "${scope}"`);
  }
  const isPrunable = options.isPrunable ?? isKernelWeight;
  const pruned = weights.map((w) =>
    isPrunable(w) && w.dtype === 'float32'
      ? { ...w, shape: [...w.shape], values: Float32Array.from(w.values) }
      : w,
  );
  const targets = pruned.filter((w) => isPrunable(w) && w.dtype === 'float32');
  let newlyZeroed = 0;
  if (scope === 'global') {
    newlyZeroed = pruneSmallest(
      targets.map((w) => w.values as Float32Array),
      sparsity,
    );
  } else {
    const byLayer = new Map<string, Float32Array[]>();
    for (const w of targets) {
      const layer = layerOf(w.name);
      byLayer.set(layer, [...(byLayer.get(layer) ?? []), w.values as Float32Array]);
    }
    for (const arrays of byLayer.values()) newlyZeroed += pruneSmallest(arrays, sparsity);
  }
  return {
    weights: pruned,
    stats: { target: sparsity, scope, newlyZeroed, ...measureSparsity(pruned, isPrunable) },
  };
}

/** Prunes the weights of model artifacts, then optionally quantizes them. */
export function pruneArtifacts(
  artifacts: io.ModelArtifacts,
  options: PruneOptions & { quantize?: QuantizationPlan },
): { artifacts: io.ModelArtifacts; stats: PruneStats } {
  const weights = decodeWeightData((artifacts.weightSpecs ?? []) as ManifestEntry[], artifacts.weightData);
  const { weights: pruned, stats } = pruneWeights(weights, options);
  const encoded = encodeWeights(pruned, options.quantize);
  return {
    artifacts: {
      ...artifacts,
      weightSpecs: encoded.weightSpecs as io.WeightsManifestEntry[],
      weightData: encoded.weightData,
    },
    stats,
  };
}

/** Pruned (optionally quantized) artifacts of a layers model; the model itself is unchanged. */
export async function pruneLayersModel(
  model: LayersModel,
  options: PruneOptions & { quantize?: QuantizationPlan },
): Promise<{ artifacts: io.ModelArtifacts; stats: PruneStats }> {
  return pruneArtifacts(await modelArtifacts(model), options);
}
