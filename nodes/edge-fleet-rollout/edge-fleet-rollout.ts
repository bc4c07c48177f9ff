import type { Node, NodeAPI, NodeDef } from 'node-red';
import { InputError } from '../../lib/errors';
import { getFleetNode } from '../shared/fleet-config';
import { failStart, onInput } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import { Status } from '../shared/status';

type RolloutDef = NodeDef & Record<string, unknown>;

/** What to publish: the configured model, or msg.payload as a name or {name, version}. */
function requestOf(payload: unknown, configured: string): { name: string; version?: number } {
  let name = configured;
  let version: number | undefined;
  if (typeof payload === 'string' && payload.trim()) name = payload.trim();
  else if (payload && typeof payload === 'object' && !Array.isArray(payload)) {
    const p = payload as Record<string, unknown>;
    if (typeof p.name === 'string' && p.name.trim()) name = p.name.trim();
    if (p.version !== undefined) {
      if (!Number.isSafeInteger(p.version) || (p.version as number) < 1) {
        throw new InputError(
          `msg.payload.version must be a whole number >= 1, not ${JSON.stringify(p.version)}`,
        );
      }
      version = p.version as number;
    }
  }
  if (!name) throw new InputError('no model to publish: set one in the node or send msg.payload = "name"');
  return { name, version };
}

export = function (RED: NodeAPI): void {
  function EdgeFleetRollout(this: Node, config: RolloutDef): void {
    RED.nodes.createNode(this, config);
    setup(this, config);
  }

  function setup(node: Node, config: RolloutDef): void {
    const status = new Status(node, RED, 'edge-fleet-rollout');
    const s = new Settings(config);
    const fleet = getFleetNode(RED, config.fleet);
    if (!fleet) {
      failStart(node, status, new Error(RED._('edge-fleet-rollout.errors.no-fleet')));
      return;
    }
    const configured = s.text('model');
    status.set('waiting', 'status.ready');
    onInput(node, status, async (msg, send) => {
      const { name, version } = requestOf(msg.payload, configured);
      status.set('working', 'status.publishing', { name });
      const published = await fleet.publish(name, version);
      const { manifest } = published;
      status.set('ok', 'status.published', {
        name,
        version: manifest.version,
        kb: (published.bytes / 1024).toFixed(0),
      });
      msg.payload = {
        name,
        version: manifest.version,
        bytes: published.bytes,
        chunks: manifest.chunks,
        files: manifest.files,
        keyId: manifest.keyId,
        ms: Math.round(published.ms),
      };
      send(msg);
    });
  }

  RED.nodes.registerType('edge-fleet-rollout', EdgeFleetRollout);
};
