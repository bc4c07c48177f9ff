import type { Node, NodeAPI, NodeDef } from 'node-red';
import { COMPRESS_QUANTIZATIONS, compressStoredModel } from '../../lib/models/compress/compress';
import {
  LOADER_MODES,
  parseLoaderMessage,
  storeSource,
  type CompressDefaults,
  type LoadRequest,
} from '../../lib/models/store/loader-request';
import { PRUNE_SCOPES } from '../../lib/models/compress/prune';
import { useModel } from '../shared/model-config';
import { onClose, onInput, parseOrFail } from '../shared/node-utils';
import { Settings } from '../shared/settings';
import { Status } from '../shared/status';
import { modelStoreOf } from '../shared/user-dir';

type LoaderConfig = NodeDef & Record<string, unknown>;

function parseOptions(config: LoaderConfig) {
  const s = new Settings(config);
  const defaults: CompressDefaults = {
    quantize: s.choice('quantize', [...COMPRESS_QUANTIZATIONS, 'none'] as const, 'uint8'),
    prune: s.number('prune', 0, { min: 0, max: 0.99 }),
    pruneScope: s.choice('pruneScope', PRUNE_SCOPES, 'global'),
    saveAs: s.text('saveAs') || undefined,
    swap: s.bool('swap', false),
  };
  return { mode: s.choice('mode', LOADER_MODES, 'auto'), defaults };
}

/** Requests beyond the running one that may wait; more are rejected rather than piling up. */
const MAX_WAITING = 8;

export = function (RED: NodeAPI) {
  function EdgeModelLoader(this: Node, config: LoaderConfig) {
    RED.nodes.createNode(this, config);
    setUp(this, config);
  }

  function setUp(node: Node, config: LoaderConfig): void {
    const status = new Status(node, RED, 'edge-model-loader');
    const options = parseOrFail(node, status, () => parseOptions(config));
    if (!options) return;
    const { mode, defaults } = options;
    const store = modelStoreOf(RED);
    const model = useModel(RED, node, config.model);
    const stopping = new AbortController();
    let queue: Promise<void> = Promise.resolve();
    let waiting = 0;

    function target() {
      if (!model) throw new Error(RED._('edge-model-loader.errors.noTarget'));
      return model;
    }

    async function load(request: LoadRequest): Promise<Record<string, unknown>> {
      const into = target();
      status.set('working', 'status.loading', { source: request.source });
      const result = ((await into.load(request)) ?? {}) as unknown as Record<string, unknown> & {
        name?: string;
        version?: number;
      };
      status.set('ok', 'status.loaded', {
        name: result.name ?? request.source,
        version: result.version ?? '?',
      });
      return result;
    }

    async function handle(
      msg: Record<string, unknown>,
      send: (m: Record<string, unknown>) => void,
    ): Promise<void> {
      if (stopping.signal.aborted) throw new Error(RED._('edge-model-loader.errors.closed'));
      const parsed = parseLoaderMessage(msg.payload, mode, defaults);
      if (parsed.kind === 'load') {
        const result = await load(parsed.request);
        msg.payload = result;
        msg.model = { name: result.name, version: result.version };
        send(msg);
        return;
      }
      const { swap, ...request } = parsed.request;
      if (swap) target();
      status.set('working', 'status.compressing', { name: request.name });
      const { stored, report } = await compressStoredModel(store, request, { signal: stopping.signal });
      const version = { name: stored.meta.name, version: stored.meta.version };
      if (swap) await target().load(storeSource(version.name, version.version));
      status.set('ok', 'status.compressed', { ...version, ratio: report.sizeBytes.ratio.toFixed(1) });
      msg.payload = report;
      msg.model = version;
      send(msg);
    }

    // One request at a time: compressions are heavy and a swap must not race another.
    onInput(node, status, (msg, send) => {
      if (waiting >= MAX_WAITING) throw new Error(RED._('edge-model-loader.errors.busy'));
      waiting++;
      const run = queue.then(() => {
        waiting--;
        return handle(msg, send as (m: Record<string, unknown>) => void);
      });
      queue = run.catch(() => undefined);
      return run;
    });

    onClose(node, async () => {
      stopping.abort();
      await queue;
      status.clear();
    });
  }

  RED.nodes.registerType('edge-model-loader', EdgeModelLoader);
};
