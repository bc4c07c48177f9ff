import type { Node, NodeAPI, NodeDef } from 'node-red';
import { compressStoredModel } from '../../lib/models/compress/compress';
import {
  LOADER_MODES,
  parseLoaderMessage,
  storeSource,
  type CompressDefaults,
  type LoaderMode,
  type LoadRequest,
} from '../../lib/models/store/loader-request';
import type { PruneScope } from '../../lib/models/compress/prune';
import { ModelStore } from '../../lib/models/store/store';
import { numberSetting, onClose, onInput, shortText } from '../shared/node-utils';
import { loadIntoEdgeModel } from './edge-model-target';

interface LoaderConfig extends NodeDef {
  mode?: string;
  model?: string;
  quantize?: string;
  prune?: string | number;
  pruneScope?: string;
  saveAs?: string;
  swap?: boolean;
}

/** Requests beyond the running one that may wait; more are rejected rather than piling up. */
const MAX_WAITING = 8;

export = function (RED: NodeAPI) {
  function EdgeModelLoader(this: Node, config: LoaderConfig) {
    RED.nodes.createNode(this, config);
    setUp(this, config);
  }

  function setUp(node: Node, config: LoaderConfig): void {
    const mode: LoaderMode = (LOADER_MODES as readonly string[]).includes(config.mode ?? '')
      ? (config.mode as LoaderMode)
      : 'auto';
    const defaults: CompressDefaults = {
      quantize: (config.quantize || 'uint8') as CompressDefaults['quantize'],
      prune: numberSetting(config.prune, 0),
      pruneScope: (config.pruneScope || 'global') as PruneScope,
      saveAs: config.saveAs?.trim() || undefined,
      swap: config.swap === true,
    };
    const userDir = (RED.settings as { userDir?: string }).userDir ?? process.cwd();
    const store = ModelStore.forUserDir(userDir);
    const stopping = new AbortController();
    let queue: Promise<void> = Promise.resolve();
    let waiting = 0;

    const target = (): unknown => (config.model ? RED.nodes.getNode(config.model) : undefined);

    async function load(request: LoadRequest): Promise<Record<string, unknown>> {
      const model = target();
      if (!model) throw new Error(RED._('edge-model-loader.errors.noTarget'));
      node.status({
        fill: 'blue',
        shape: 'dot',
        text: shortText(RED._('edge-model-loader.status.loading', { source: request.source })),
      });
      const result = await loadIntoEdgeModel(model, request);
      node.status({
        fill: 'green',
        shape: 'dot',
        text: RED._('edge-model-loader.status.loaded', {
          name: result.name ?? request.source,
          version: result.version ?? '?',
        }),
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
      if (swap && !target()) throw new Error(RED._('edge-model-loader.errors.noTarget'));
      node.status({
        fill: 'blue',
        shape: 'dot',
        text: RED._('edge-model-loader.status.compressing', { name: request.name }),
      });
      const { stored, report } = await compressStoredModel(store, request, { signal: stopping.signal });
      const version = { name: stored.meta.name, version: stored.meta.version };
      if (swap) await loadIntoEdgeModel(target(), storeSource(version.name, version.version));
      node.status({
        fill: 'green',
        shape: 'dot',
        text: RED._('edge-model-loader.status.compressed', {
          ...version,
          ratio: report.sizeBytes.ratio.toFixed(1),
        }),
      });
      msg.payload = report;
      msg.model = version;
      send(msg);
    }

    // One request at a time: compressions are heavy and a swap must not race another.
    onInput(node, (msg, send) => {
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
      node.status({});
    });
  }

  RED.nodes.registerType('edge-model-loader', EdgeModelLoader);
};
