import type { Node, NodeAPI } from 'node-red';
import type { LoadedModelInfo, ModelHandle } from '../../lib/models/serve/model-handle';
import { parseSource, type ModelSourceInput, type ModelSourceSpec } from '../../lib/models/store/source';

/**
 * What an `edge-model` config node offers the nodes that use it. Every user shares the one
 * loaded model; `load`/`swap` replace it without dropping requests (running ones finish on the
 * old model, which is disposed afterwards); a failed load leaves the current model serving.
 */
export interface EdgeModelNode extends Node {
  readonly handle: ModelHandle;
  /** Loads a path, an http(s) URL, 'store:name[@version]' or a source spec, then swaps it in. */
  load(source: ModelSourceInput): Promise<LoadedModelInfo>;
  /** Same as load. */
  swap(source: ModelSourceInput): Promise<LoadedModelInfo>;
  /**
   * What edge-model-loader calls: `source` as for load, `name` the store name of a download,
   * `sha256` its pin. Resolves with the loaded model's info (name, version, runtime, ...).
   */
  loadModel(request: ModelLoadRequest): Promise<LoadedModelInfo>;
  /** The model serving now: name, version, runtime, input/output shapes, labels, normalisation. */
  modelInfo(): LoadedModelInfo | undefined;
}

export interface ModelLoadRequest {
  source: string;
  name?: string;
  sha256?: string;
}

/** The edge-model config node with id `id`, if it exists and is one. */
export function getModelNode(RED: NodeAPI, id: unknown): EdgeModelNode | undefined {
  if (typeof id !== 'string' || !id) return undefined;
  const node = RED.nodes.getNode(id) as EdgeModelNode | null;
  return node && typeof node.load === 'function' && node.handle ? node : undefined;
}

/** The source spec of a loader request (see edge-model-loader). */
export function requestSource(request: ModelLoadRequest): ModelSourceSpec {
  if (!request || typeof request.source !== 'string') throw new Error('a load request needs a source');
  const spec = parseSource(request.source);
  if (request.name) spec.name = request.name;
  if (request.sha256) spec.sha256 = request.sha256;
  return spec;
}
