/**
 * The one adapter between the `edge-model` config node and the nodes that use it, modelled on
 * Node-RED's MQTT broker node: users `register` when they start and `deregister` when they
 * close, and the config node releases its model when it closes itself.
 */
import type { Node, NodeAPI } from 'node-red';
import type { LoadedModelInfo, ModelHandle } from '../../lib/models/serve/model-handle';
import { parseSource, type ModelSourceInput, type ModelSourceSpec } from '../../lib/models/store/source';
import { onClose } from './node-utils';

/** What edge-model-loader sends: `source` as for load, `name` the store name of a download, `sha256` its pin. */
export interface ModelLoadRequest {
  source: string;
  name?: string;
  sha256?: string;
}

/**
 * What an `edge-model` config node offers. Every user shares the one loaded model; `load`
 * replaces it without dropping requests (running ones finish on the old model, which is disposed
 * afterwards); a failed load leaves the current model serving.
 */
export interface EdgeModelNode extends Node {
  readonly handle: ModelHandle;
  /** A path, an http(s) URL, 'store:name[@version]', a source spec or a loader request. */
  load(source: ModelSourceInput | ModelLoadRequest): Promise<LoadedModelInfo>;
  /** The model serving now: name, version, runtime, input/output shapes, labels, normalisation. */
  modelInfo(): LoadedModelInfo | undefined;
  register(user: Node): void;
  deregister(user: Node): void;
  /** Ids of the nodes using this model now. */
  readonly users: ReadonlySet<string>;
}

/** The source spec of a load: a loader request's name and sha256 override the parsed source. */
export function sourceOf(source: ModelSourceInput | ModelLoadRequest): ModelSourceInput {
  if (typeof source === 'string' || !('source' in source)) return source;
  if (typeof source.source !== 'string') throw new Error('a load request needs a source');
  const spec: ModelSourceSpec = parseSource(source.source);
  if (source.name) spec.name = source.name;
  if (source.sha256) spec.sha256 = source.sha256;
  return spec;
}

/** Makes `node` the edge-model config node serving `handle`; the handle closes with the node. */
export function serveModel(node: Node, handle: ModelHandle): EdgeModelNode {
  const users = new Set<string>();
  const served = Object.assign(node, {
    handle,
    users,
    load: (source: ModelSourceInput | ModelLoadRequest) => handle.load(sourceOf(source)),
    modelInfo: () => handle.info,
    register: (user: Node) => void users.add(user.id),
    deregister: (user: Node) => void users.delete(user.id),
  });
  onClose(node, async () => {
    users.clear();
    await handle.close();
  });
  return served;
}

/** The edge-model config node with id `id`, if it exists and is one. */
export function getModelNode(RED: NodeAPI, id: unknown): EdgeModelNode | undefined {
  if (typeof id !== 'string' || !id) return undefined;
  const node = RED.nodes.getNode(id) as Partial<EdgeModelNode> | null;
  return node && typeof node.load === 'function' ? (node as EdgeModelNode) : undefined;
}

/** 'fleet-refused' (EdgeAiError): a fleet version was refused, the current model keeps serving. */
type HandleListeners = Partial<
  Record<'loaded' | 'loading' | 'load-failed' | 'fleet-refused', (...args: never[]) => void>
>;

/**
 * For a node using the edge-model config node `id`: registers `user` with it and wires
 * `listeners` to its model handle, both undone when `user` closes.
 */
export function useModel(
  RED: NodeAPI,
  user: Node,
  id: unknown,
  listeners: HandleListeners = {},
): EdgeModelNode | undefined {
  const model = getModelNode(RED, id);
  if (!model) return undefined;
  model.register?.(user);
  const events = Object.entries(listeners) as [string, (...args: unknown[]) => void][];
  for (const [event, listener] of events) model.handle.on(event, listener);
  onClose(user, () => {
    for (const [event, listener] of events) model.handle.off(event, listener);
    model.deregister?.(user);
  });
  return model;
}
