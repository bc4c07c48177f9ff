import type { Node, NodeAPI, NodeDef } from 'node-red';
import { DEFAULT_EXPORT_TOLERANCE, RUNTIME_PREFERENCES } from '../../lib/models/runtime/select';
import { ModelNotInStoreYet } from '../../lib/errors';
import { ModelHandle, type LoadedModelInfo } from '../../lib/models/serve/model-handle';
import { parseSource } from '../../lib/models/store/source';
import { serveModel } from '../shared/model-config';
import { getFleetNode } from '../shared/fleet-config';
import { fleetSourceName } from '../../lib/fleet/topics';
import { errorText } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import { modelStoreOf, userDirOf } from '../shared/user-dir';

type EdgeModelDef = NodeDef & Record<string, unknown>;

const FORMATS = ['auto', 'tfjs-layers', 'tfjs-graph', 'onnx'] as const;

export = function (RED: NodeAPI): void {
  function EdgeModel(this: Node, config: EdgeModelDef): void {
    RED.nodes.createNode(this, config);
    try {
      setup(this, config);
    } catch (err) {
      // A config node has no status: the log says why its users find no model.
      this.error(RED._('edge-model.errors.load', { error: errorText(err) }));
    }
  }

  function setup(node: Node, config: EdgeModelDef): void {
    const s = new Settings(config);
    const name = s.text('name') || undefined;
    // 'fleet:<name>': follow the fleet's model of that name through the store.
    const fleetName = fleetSourceName(s.text('source'));
    const source = fleetName ? '' : s.text('source');
    const follow = fleetName !== undefined || s.bool('follow', false);
    let followName = fleetName ?? name;
    try {
      const spec = source ? parseSource(source) : undefined;
      if (spec?.store) followName = spec.store;
    } catch {
      // reported by the load below
    }
    const inputShape = s.numbers('inputShape', { integer: true, min: 1 });
    const handle = new ModelHandle({
      name,
      userDir: userDirOf(RED),
      store: modelStoreOf(RED),
      root: s.text('root') || undefined,
      format: s.choice('format', FORMATS, 'auto'),
      runtime: s.choice('runtime', RUNTIME_PREFERENCES, 'auto'),
      inputShape: inputShape.length > 0 ? inputShape : undefined,
      labels: s.list('labels'),
      warmup: s.number('warmup', 3, { integer: true, min: 0 }),
      maxBytes: s.number('maxSizeMB', 100, { above: 0 }) * 1024 * 1024,
      timeoutMs: s.number('timeoutSec', 30, { above: 0 }) * 1000,
      sha256: s.text('sha256') || undefined,
      shardOrigins: s.list('shardOrigins'),
      tolerance: s.number('tolerance', DEFAULT_EXPORT_TOLERANCE, { min: 0 }),
      followStore: follow,
      followName,
    });
    serveModel(node, handle);
    if (fleetName !== undefined) {
      const fleet = getFleetNode(RED, config.fleet);
      if (fleet)
        fleet.follow(node, fleetName, handle, s.number('maxSizeMB', 100, { above: 0 }) * 1024 * 1024);
      else node.error(RED._('edge-model.errors.no-fleet', { name: fleetName }));
    }

    let warnedNoNative = false;
    handle.on('loaded', (info) => {
      node.log(
        RED._('edge-model.log.loaded', {
          name: info.name,
          version: info.version ?? '-',
          runtime: info.runtime,
          input: info.inputShape.join('x'),
          output: info.outputShape.join('x'),
          ms: info.loadMs,
        }),
      );
      if (info.exported && info.maxAbsDiff !== undefined) {
        node.log(RED._('edge-model.log.exported', { diff: info.maxAbsDiff.toExponential(2) }));
      }
      if (info.fallbackReason) node.log(RED._('edge-model.log.fallback', { reason: info.fallbackReason }));
      if (info.noNative && !warnedNoNative) {
        warnedNoNative = true;
        node.warn(RED._('edge-model.warnings.noNative', { reason: info.noNative }));
      }
    });
    // An export checked on the first messages: what was decided, and why.
    handle.on('verified', (info: LoadedModelInfo, decision: { reason: string }) => {
      node.log(RED._('edge-model.log.verified', { runtime: info.runtime, reason: decision.reason }));
    });
    handle.on('load-failed', (err: Error) => {
      const waiting = follow && err instanceof ModelNotInStoreYet;
      if (waiting) node.log(RED._('edge-model.log.waiting', { name: followName ?? '' }));
      else node.error(RED._('edge-model.errors.load', { error: err.message }));
    });

    const first = source || (follow && followName ? `store:${followName}` : '');
    if (first) handle.load(first).catch(() => undefined); // reported by 'load-failed'
  }

  RED.nodes.registerType('edge-model', EdgeModel);
};
