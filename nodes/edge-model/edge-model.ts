import os from 'node:os';
import path from 'node:path';
import type { NodeAPI, NodeDef } from 'node-red';
import {
  DEFAULT_EXPORT_TOLERANCE,
  RUNTIME_PREFERENCES,
  type RuntimePreference,
} from '../../lib/models/runtime/select';
import { ModelNotInStoreYet } from '../../lib/errors';
import { ModelHandle } from '../../lib/models/serve/model-handle';
import { parseSource } from '../../lib/models/store/source';
import type { ModelFormat } from '../../lib/models/store/store';
import { requestSource, type EdgeModelNode, type ModelLoadRequest } from '../shared/model-config';
import { listSetting, numberSetting, onClose } from '../shared/node-utils';

interface EdgeModelDef extends NodeDef {
  source?: string;
  format?: string;
  runtime?: string;
  warmup?: string | number;
  labels?: string;
  inputShape?: string;
  follow?: boolean | string;
  root?: string;
  maxSizeMB?: string | number;
  timeoutSec?: string | number;
  sha256?: string;
  tolerance?: string | number;
}

const FORMATS = ['auto', 'tfjs-layers', 'tfjs-graph', 'onnx'];

export = function (RED: NodeAPI): void {
  function EdgeModel(this: EdgeModelNode, config: EdgeModelDef): void {
    RED.nodes.createNode(this, config);
    setup(this, config);
  }

  function setup(node: EdgeModelNode, config: EdgeModelDef): void {
    const settings = RED.settings as unknown as { userDir?: string };
    const userDir = settings.userDir || path.join(os.homedir(), '.node-red');
    const name = (config.name ?? '').trim() || undefined;
    const source = (config.source ?? '').trim();
    const follow = config.follow === true || config.follow === 'true';
    let followName = name;
    try {
      const spec = source ? parseSource(source) : undefined;
      if (spec?.store) followName = spec.store;
    } catch {
      // reported by the load below
    }
    const runtime = RUNTIME_PREFERENCES.includes(config.runtime as RuntimePreference)
      ? (config.runtime as RuntimePreference)
      : 'auto';
    const inputShape = listSetting(config.inputShape)
      .map(Number)
      .filter((d) => Number.isInteger(d) && d > 0);
    const handle = new ModelHandle({
      name,
      userDir,
      root: (config.root ?? '').trim() || undefined,
      format: FORMATS.includes(config.format ?? '') ? (config.format as ModelFormat | 'auto') : 'auto',
      runtime,
      inputShape: inputShape.length > 0 ? inputShape : undefined,
      labels: listSetting(config.labels),
      warmup: numberSetting(config.warmup, 3),
      maxBytes: numberSetting(config.maxSizeMB, 100) * 1024 * 1024,
      timeoutMs: numberSetting(config.timeoutSec, 30) * 1000,
      sha256: (config.sha256 ?? '').trim() || undefined,
      tolerance: numberSetting(config.tolerance, DEFAULT_EXPORT_TOLERANCE),
      followStore: follow,
      followName,
    });
    Object.assign(node, {
      handle,
      load: (s: Parameters<ModelHandle['load']>[0]) => handle.load(s),
      swap: (s: Parameters<ModelHandle['load']>[0]) => handle.load(s),
      modelInfo: () => handle.info,
      loadModel: (request: ModelLoadRequest) => handle.load(requestSource(request)),
    });

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
    });
    handle.on('load-failed', (err: Error) => {
      const waiting = follow && err instanceof ModelNotInStoreYet;
      if (waiting) node.log(RED._('edge-model.log.waiting', { name: followName ?? '' }));
      else node.error(RED._('edge-model.errors.load', { error: err.message }));
    });

    const first = source || (follow && followName ? `store:${followName}` : '');
    if (first) handle.load(first).catch(() => undefined); // reported by 'load-failed'

    onClose(node, () => handle.close());
  }

  RED.nodes.registerType('edge-model', EdgeModel);
};
