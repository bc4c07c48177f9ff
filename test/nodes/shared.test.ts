// The node-layer plumbing every node uses: status, commands, settings, user dir, state on close,
// and the edge-model adapter.
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Node, NodeAPI, NodeStatus } from 'node-red';
import { commandOf } from '../../nodes/shared/command';
import type { EdgeModelNode } from '../../nodes/shared/model-config';
import { Settings, SettingError, parseSettings } from '../../nodes/shared/settings';
import { Status } from '../../nodes/shared/status';
import { modelStoreOf, userDirOf } from '../../nodes/shared/user-dir';
import { collect, helper, nodeModule, type FlowNode } from '../helpers/red';
import { useTempUserDir } from '../helpers/user-dir';

const wait = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A node that records its statuses, and a catalog with a few texts. */
function fakes(catalog: Record<string, string> = {}) {
  const shown: NodeStatus[] = [];
  const node = { status: (s: NodeStatus) => shown.push(s) } as unknown as Node;
  const RED = {
    _: (key: string, params?: Record<string, unknown>) => {
      const text = catalog[key];
      if (text === undefined) return key;
      return text.replace(/__(\w+)__/g, (_, name: string) => String(params?.[name] ?? ''));
    },
  } as unknown as NodeAPI;
  return { shown, node, RED };
}

describe('node plumbing: Status', () => {
  it('shows a state change at once and throttles updates within a state, keeping the latest', async () => {
    const { shown, node, RED } = fakes({ 'edge-x.status.n': 'n=__n__' });
    const status = new Status(node, RED, 'edge-x', { intervalMs: 80 });
    status.set('working', 'status.n', { n: 1 });
    status.set('working', 'status.n', { n: 2 });
    status.set('working', 'status.n', { n: 3 });
    assert.deepEqual(shown, [{ fill: 'blue', shape: 'ring', text: 'n=1' }], 'later updates wait');
    await wait(120);
    assert.deepEqual(shown.at(-1), { fill: 'blue', shape: 'ring', text: 'n=3' }, 'the latest is shown');
    assert.equal(shown.length, 2);
    status.set('ok', 'status.n', { n: 4 });
    assert.deepEqual(shown.at(-1), { fill: 'green', shape: 'dot', text: 'n=4' }, 'a new state shows at once');
    status.set('ok', 'status.n', { n: 5 });
    status.cancel();
    await wait(120);
    assert.equal(shown.at(-1)?.text, 'n=4', 'cancel drops the pending update');
  });

  it('shows a coded error as the catalog text errors.<code>, else its message, within 48 characters', () => {
    const { shown, node, RED } = fakes({
      'edge-x.errors.i2c-bus-missing': 'no I2C bus __bus__: enable I2C or tick Simulate',
    });
    const status = new Status(node, RED, 'edge-x');
    const coded = Object.assign(new Error('no I2C bus 1 on this machine (/dev/i2c-1 missing); long story'), {
      code: 'i2c-bus-missing',
      params: { bus: 1 },
    });
    status.error(coded);
    assert.deepEqual(shown.at(-1), {
      fill: 'red',
      shape: 'ring',
      text: 'no I2C bus 1: enable I2C or tick Simulate',
    });
    status.error(Object.assign(new Error('plain message'), { code: 'not-in-catalog' }));
    assert.equal(shown.at(-1)?.text, 'plain message');
    status.error(new Error('x'.repeat(100)));
    assert.equal(shown.at(-1)?.text?.length, 48);
    assert.ok(shown.at(-1)?.text?.endsWith('…'));
  });
});

describe('node plumbing: commands', () => {
  const COMMANDS = ['reset', 'stats'] as const;
  it('reads msg.command, and the older msg.<command> === true and msg.topic forms', () => {
    assert.equal(commandOf({ command: 'reset' }, COMMANDS), 'reset');
    assert.equal(commandOf({ reset: true }, COMMANDS), 'reset');
    assert.equal(commandOf({ topic: 'stats' }, COMMANDS), 'stats');
    assert.equal(commandOf({ payload: 1, topic: 'bme280' }, COMMANDS), undefined, 'data is no command');
    assert.equal(commandOf({ reset: 'yes' }, COMMANDS), undefined, 'only true counts');
  });
  it('an unknown msg.command is an error naming it and the known ones', () => {
    assert.throws(
      () => commandOf({ command: 'rest' }, COMMANDS),
      (err: Error & { code?: string }) =>
        err.code === 'command-unknown' && /"rest"/.test(err.message) && /reset, stats/.test(err.message),
    );
  });
});

describe('node plumbing: settings', () => {
  it('a blank field takes its default; a bad one is an error naming the field', () => {
    const s = new Settings({ window: '', alpha: 'abc', method: 'zscore', count: '2.5', flag: 'true' });
    assert.equal(s.number('window', 10), 10);
    assert.throws(
      () => s.number('alpha', 0.1),
      (err: SettingError) => {
        assert.equal(err.code, 'setting-invalid');
        assert.equal(err.params.field, 'alpha');
        assert.match(err.message, /setting "alpha": "abc" is not a number/);
        return true;
      },
    );
    assert.throws(() => s.number('count', 1, { integer: true }), /"count".*whole number/);
    assert.throws(() => s.choice('method', ['minmax'], 'minmax'), /"method".*one of minmax/);
    assert.equal(s.bool('flag', false), true);
  });
  it('parses a table of settings, one line each', () => {
    const parsed = parseSettings(
      { window: '5', channels: 'a, b' },
      { window: (s) => s.number('window', 10), channels: (s) => s.list('channels') },
    );
    assert.deepEqual(parsed, { window: 5, channels: ['a', 'b'] });
  });
});

describe('node plumbing: userDirOf', () => {
  it("is Node-RED's settings.userDir, else ~/.node-red (never the temp dir or the cwd)", () => {
    assert.equal(userDirOf({ settings: { userDir: '/srv/red' } } as unknown as NodeAPI), '/srv/red');
    assert.equal(userDirOf({ settings: {} } as unknown as NodeAPI), path.join(os.homedir(), '.node-red'));
  });

  it('the model store lives there and keeps settings.edgeAi.modelVersions versions (default 5)', () => {
    const warnings: string[] = [];
    const red = (edgeAi?: unknown) =>
      ({
        settings: { userDir: '/srv/red', edgeAi },
        log: { warn: (w: string) => warnings.push(w) },
      }) as unknown as NodeAPI;
    const store = modelStoreOf(red());
    assert.equal(store.root, path.join('/srv/red', 'edge-ai', 'models'));
    assert.equal(store.keep, 5);
    assert.equal(modelStoreOf(red({ modelVersions: 2 })).keep, 2);
    assert.equal(modelStoreOf(red({ modelVersions: 0 })).keep, 0);
    assert.deepEqual(warnings, []);
    assert.equal(modelStoreOf(red({ modelVersions: 'lots' })).keep, 5);
    assert.match(warnings[0], /edgeAi.modelVersions must be a whole number/);
  });
});

describe('node plumbing: state on disk when a node closes', function () {
  this.timeout(30000);
  const home = useTempUserDir('edge-shared');
  const normaliseNode = nodeModule('edge-normalise');
  const anomalyNode = nodeModule('edge-anomaly');
  const flow = (): FlowNode[] => [
    { id: 'n', type: 'edge-normalise', learnCount: 5, wires: [['out']] },
    { id: 'a', type: 'edge-anomaly', learning: 30, wires: [['aout'], []] },
    { id: 'out', type: 'helper' },
    { id: 'aout', type: 'helper' },
  ];

  it('a redeploy or stop keeps the state; removing the node deletes it', async () => {
    await helper.load([normaliseNode, anomalyNode], flow());
    const got = collect(helper.getNode('out') as never, 3);
    const scored = collect(helper.getNode('aout') as never, 3);
    for (const v of [1, 2, 3]) {
      helper.getNode('n').receive({ payload: [v, v * 2] });
      helper.getNode('a').receive({ payload: [v, v * 2] });
    }
    await Promise.all([got, scored]);
    await helper.unload(); // a stop (and a restart): state is written and kept
    const files = ['normalise/n.json', 'anomaly/a.json'].map((f) => path.join(home.path, 'edge-ai', f));
    assert.deepEqual(
      files.map((f) => existsSync(f)),
      [true, true],
      'kept on stop',
    );

    await helper.load([normaliseNode, anomalyNode], flow());
    // Deploying a flow without the two nodes removes them (close with removed = true).
    await helper.setFlows([{ id: 'out', type: 'helper' }], 'nodes');
    await wait(100);
    assert.deepEqual(
      files.map((f) => existsSync(f)),
      [false, false],
      'deleted with the node',
    );
  });
});

describe('node plumbing: the edge-model config node tracks its users', function () {
  this.timeout(30000);
  useTempUserDir('edge-shared-model');
  const nodes = [nodeModule('edge-model'), nodeModule('edge-infer')];

  it('users register when they start and deregister when they close', async () => {
    const flow: FlowNode[] = [
      { id: 'm', type: 'edge-model', name: 'none' },
      { id: 'i1', type: 'edge-infer', model: 'm', wires: [[]] },
      { id: 'i2', type: 'edge-infer', model: 'm', wires: [[]] },
    ];
    await helper.load(nodes, flow);
    const model = helper.getNode('m') as unknown as EdgeModelNode;
    assert.deepEqual([...model.users].sort(), ['i1', 'i2']);
    await helper.setFlows(
      flow.filter((n) => n.id !== 'i2'),
      'nodes',
    );
    await wait(100);
    const after = helper.getNode('m') as unknown as EdgeModelNode;
    assert.deepEqual([...after.users], ['i1'], 'the removed user deregistered');
  });
});
