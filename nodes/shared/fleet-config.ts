/** The adapter between the `edge-fleet` config node and the nodes that use it. */
import type { Node, NodeAPI } from 'node-red';
import type { FleetConnection } from '../../lib/fleet/connection';
import type { PublishedModel } from '../../lib/fleet/rollout';
import type { ModelHandle } from '../../lib/models/serve/model-handle';
import type { AggregatorOptions, FederatedAggregator } from '../../lib/fleet/federated-aggregator';
import type { FederatedClient } from '../../lib/fleet/federated-client';

export interface EdgeFleetNode extends Node {
  /** The connection, once the (embedded) broker is up. */
  connection(): Promise<FleetConnection>;
  /** Publishes store model `name` (newest or `version`), signed with the fleet key. */
  publish(name: string, version?: number): Promise<PublishedModel>;
  /**
   * Makes `handle` (an edge-model following the store) follow fleet model `name`: checked
   * versions are saved to the store, the version running is reported; undone when `user` closes.
   */
  follow(user: Node, name: string, handle: ModelHandle, maxBytes: number): void;
  /** A device's federated client for fleet model `name` (global versions go to the model store). */
  federatedClient(name: string): Promise<FederatedClient>;
  /** An aggregator of federated rounds, publishing with the fleet's signing key. */
  aggregator(options: Omit<AggregatorOptions, 'privateKey'>): Promise<FederatedAggregator>;
}

/** The edge-fleet config node with id `id`, if it exists and is one. */
export function getFleetNode(RED: NodeAPI, id: unknown): EdgeFleetNode | undefined {
  if (typeof id !== 'string' || !id) return undefined;
  const node = RED.nodes.getNode(id) as Partial<EdgeFleetNode> | null;
  return node && typeof node.follow === 'function' ? (node as EdgeFleetNode) : undefined;
}
