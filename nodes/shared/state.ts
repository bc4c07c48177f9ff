/**
 * Where nodes keep state on disk, and one policy for it: removing a node from the flow
 * (close with removed=true) deletes its state; a redeploy, a restart or a stop keeps it.
 */
import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Node, NodeAPI } from 'node-red';
import { StateFile, nodeStateFile, type Serialiser, type StateFileOptions } from '../../lib/util/state-file';
import { userDirOf } from './user-dir';

/** The state file of `node` under `<userDir>/edge-ai/<kind>/`. */
export function nodeState(
  RED: NodeAPI,
  node: Node,
  kind: string,
  serialise: Serialiser,
  options: StateFileOptions = {},
): StateFile {
  return new StateFile(nodeStateFile(userDirOf(RED), kind, node.id), serialise, options);
}

/** A node's own folder of state, e.g. a training dataset: `<userDir>/edge-ai/<kind>/<id>`. */
export function nodeStateDir(RED: NodeAPI, node: Node, kind: string): string {
  return path.join(userDirOf(RED), 'edge-ai', kind, node.id.replace(/[^A-Za-z0-9._-]/g, '_'));
}

/** On close: deletes the state when the node was removed, else writes what is pending. */
export async function closeState(file: StateFile, removed: boolean, last?: Serialiser): Promise<void> {
  if (removed) await file.remove();
  else await file.close(last);
}

/** On close of a removed node: deletes its state folder. */
export async function removeStateDir(dir: string, removed: boolean): Promise<void> {
  if (removed) await fs.rm(dir, { recursive: true, force: true });
}
