/**
 * The one call the model loader makes into an `edge-model` config node: load a model (path,
 * URL or store version) and swap it in without dropping messages. The edge-model node exposes
 * it as `loadModel(request)`.
 */
import type { LoadRequest } from '../../lib/models/store/loader-request';

export interface EdgeModelLoadResult {
  name?: string;
  version?: number;
  runtime?: string;
  [key: string]: unknown;
}

interface LoadableModel {
  loadModel(request: LoadRequest): Promise<EdgeModelLoadResult>;
}

export function canLoadModels(target: unknown): target is LoadableModel {
  return (
    target !== null &&
    typeof target === 'object' &&
    typeof (target as Partial<LoadableModel>).loadModel === 'function'
  );
}

/** Loads `request` into the edge-model config node `target`; resolves once the swap is done. */
export async function loadIntoEdgeModel(target: unknown, request: LoadRequest): Promise<EdgeModelLoadResult> {
  if (!canLoadModels(target))
    throw new Error('the target edge-model node cannot load models (no loadModel method)');
  return (await target.loadModel(request)) ?? {};
}
