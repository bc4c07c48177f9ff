import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { EdgeAiError } from '../../lib/errors';
import { sha256 } from '../../lib/util/atomic';
import { readModelFiles } from '../../lib/models/store/model-files';
import { resolveSource, type ResolveOptions } from '../../lib/models/store/source';
import { ModelStore } from '../../lib/models/store/store';
import { onnxMlp } from '../fixtures/onnx-fixtures';
import { keras2Dense } from '../fixtures/tfjs-fixtures';

/**
 * Serves files from `dir` on 127.0.0.1; /hang never answers; ?chunked streams without length;
 * /old/model.json redirects to /dense/model.json.
 */
async function serve(dir: string): Promise<{ url: string; requests: string[]; close(): Promise<void> }> {
  const requests: string[] = [];
  const hanging: http.ServerResponse[] = [];
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://x');
    requests.push(url.pathname);
    if (url.pathname.startsWith('/hang')) {
      hanging.push(res);
      return;
    }
    if (url.pathname === '/old/model.json') {
      res.writeHead(302, { location: '/dense/model.json' });
      res.end();
      return;
    }
    try {
      const data = await fs.readFile(path.join(dir, decodeURIComponent(url.pathname)));
      if (url.searchParams.has('chunked')) {
        res.writeHead(200);
        for (let i = 0; i < data.length; i += 1024) res.write(data.subarray(i, i + 1024));
        res.end();
      } else {
        res.writeHead(200, { 'content-length': data.length });
        res.end(data);
      }
    } catch {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((resolve) => {
        for (const res of hanging) res.destroy();
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

describe('model sources: local paths, the store, http(s) downloads', function () {
  this.timeout(20000);
  let userDir: string;
  let served: string;
  let server: Awaited<ReturnType<typeof serve>>;
  let options: ResolveOptions;

  before(async () => {
    userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-sources-'));
    served = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-served-'));
    // A converter-style model whose shard sits in a sub-directory next to model.json.
    const fixture = await keras2Dense(path.join(served, 'dense'));
    await fs.mkdir(path.join(served, 'dense', 'weights'));
    await fs.rename(
      path.join(fixture.dir, 'group1-shard1of1.bin'),
      path.join(fixture.dir, 'weights', 'g1.bin'),
    );
    const json = JSON.parse(await fs.readFile(fixture.entry, 'utf8'));
    json.weightsManifest[0].paths = ['weights/g1.bin'];
    await fs.writeFile(fixture.entry, JSON.stringify(json));
    await fs.writeFile(path.join(served, 'mlp.onnx'), onnxMlp().bytes);
    server = await serve(served);
  });
  beforeEach(() => {
    options = { root: userDir, store: ModelStore.forUserDir(userDir), maxBytes: 1 << 20, timeoutMs: 2000 };
    server.requests.length = 0;
  });
  after(async () => {
    await server.close();
    await fs.rm(userDir, { recursive: true, force: true });
    await fs.rm(served, { recursive: true, force: true });
  });

  it('downloads model.json and its relative shards once into the store', async () => {
    const url = `${server.url}/dense/model.json`;
    const first = await resolveSource(url, { ...options, name: 'remote' });
    assert.equal(first.origin, 'url');
    assert.equal(first.version, 1);
    assert.deepEqual(server.requests, ['/dense/model.json', '/dense/weights/g1.bin']);
    const files = await readModelFiles(first.location, { root: first.root });
    assert.equal(files.format, 'tfjs-layers');
    assert.equal(files.meta?.source, url);
    const again = await resolveSource(url, { ...options, name: 'remote' });
    assert.equal(again.version, 1);
    assert.equal(server.requests.length, 2, 'no second download');
    const refreshed = await resolveSource({ url, refresh: true }, { ...options, name: 'remote' });
    assert.equal(refreshed.version, 2);
  });

  it('keeps weight shards on the model origin unless other origins are allowed', async () => {
    // Same server under another name: another origin, as a loopback admin endpoint would be.
    const other = server.url.replace('127.0.0.1', 'localhost');
    const json = JSON.parse(await fs.readFile(path.join(served, 'dense', 'model.json'), 'utf8'));
    json.weightsManifest[0].paths = [`${other}/dense/weights/g1.bin`];
    await fs.mkdir(path.join(served, 'foreign'), { recursive: true });
    await fs.writeFile(path.join(served, 'foreign', 'model.json'), JSON.stringify(json));
    const url = `${server.url}/foreign/model.json`;
    await assert.rejects(resolveSource(url, { ...options, name: 'foreign' }), (err: EdgeAiError) => {
      assert.equal(err.code, 'model-shard-origin');
      assert.match(err.message, /points a weight shard at http:\/\/localhost:\d+, another origin/);
      return true;
    });
    assert.deepEqual(server.requests, ['/foreign/model.json'], 'the foreign shard is never fetched');
    assert.deepEqual(await options.store.versions('foreign'), []);
    const allowed = await resolveSource(url, { ...options, name: 'foreign', shardOrigins: [other] });
    assert.equal((await readModelFiles(allowed.location, { root: allowed.root })).format, 'tfjs-layers');
  });

  it('resolves shards against the URL model.json finally came from after a redirect', async () => {
    const resolved = await resolveSource(`${server.url}/old/model.json`, { ...options, name: 'moved' });
    assert.deepEqual(server.requests, ['/old/model.json', '/dense/model.json', '/dense/weights/g1.bin']);
    assert.equal((await readModelFiles(resolved.location, { root: resolved.root })).format, 'tfjs-layers');
  });

  it('checks a sha256 pin before saving anything', async () => {
    const url = `${server.url}/mlp.onnx`;
    const digest = sha256(await fs.readFile(path.join(served, 'mlp.onnx')));
    await assert.rejects(
      resolveSource(url, { ...options, name: 'pinned', sha256: 'ab'.repeat(32) }),
      /sha256 of .*mlp\.onnx is [0-9a-f]{64}, but (ab){32} was pinned/,
    );
    assert.deepEqual(await options.store.versions('pinned'), []);
    const ok = await resolveSource(url, { ...options, name: 'pinned', sha256: digest.toUpperCase() });
    const files = await readModelFiles(ok.location, { root: ok.root });
    assert.equal(files.format, 'onnx');
  });

  it('enforces the size limit, with or without a content-length', async () => {
    const small = { ...options, maxBytes: 500 };
    await assert.rejects(
      resolveSource(`${server.url}/mlp.onnx`, { ...small, name: 'big' }),
      /over the model size limit of 500/,
    );
    await assert.rejects(
      resolveSource(`${server.url}/mlp.onnx?chunked`, { ...small, name: 'big' }),
      /exceeds the model size limit of 500 bytes/,
    );
    assert.deepEqual(await options.store.versions('big'), []);
  });

  it('gives up on a URL that never answers, and reports HTTP errors', async () => {
    const started = Date.now();
    await assert.rejects(
      resolveSource(`${server.url}/hang/model.json`, { ...options, timeoutMs: 300, name: 'hang' }),
      /timed out after 300 ms/,
    );
    assert.ok(Date.now() - started < 2000);
    await assert.rejects(
      resolveSource(`${server.url}/nothing.onnx`, { ...options, name: 'missing' }),
      /HTTP 404/,
    );
    await assert.rejects(resolveSource('ftp://example.com/m.onnx', options), /use http or https/);
  });

  it('confines local paths (and shard paths) to the allowed root', async () => {
    const inside = await keras2Dense(path.join(userDir, 'models', 'local'));
    const resolved = await resolveSource('models/local/model.json', options);
    assert.equal((await readModelFiles(resolved.location, { root: resolved.root })).format, 'tfjs-layers');
    assert.equal(
      (await readModelFiles(inside.entry, { root: userDir })).format,
      'tfjs-layers',
      'absolute inside',
    );
    await assert.rejects(
      readModelFiles('../elsewhere/model.json', { root: userDir }),
      /outside the allowed directory/,
    );
    await assert.rejects(
      readModelFiles(path.join(served, 'dense', 'model.json'), { root: userDir }),
      /outside/,
    );
    await fs.symlink(path.join(served, 'dense'), path.join(userDir, 'link'));
    await assert.rejects(
      readModelFiles('link/model.json', { root: userDir }),
      /links outside the allowed directory/,
    );
    // A model.json whose shard path climbs out of the root.
    const json = JSON.parse(await fs.readFile(inside.entry, 'utf8'));
    json.weightsManifest[0].paths = ['../../../etc/passwd'];
    await fs.writeFile(inside.entry, JSON.stringify(json));
    await assert.rejects(
      readModelFiles(inside.entry, { root: userDir }),
      /weight shard .* is outside the allowed directory/,
    );
    // Another root, when configured, is allowed instead.
    assert.equal((await readModelFiles('dense/model.json', { root: served })).format, 'tfjs-layers');
  });

  it('reads store versions by name and version', async () => {
    const store = options.store;
    const fixture = onnxMlp();
    for (let v = 0; v < 2; v++) {
      await store.save('local-store', { format: 'onnx', entry: 'model.onnx' }, (dir) =>
        fs.writeFile(path.join(dir, 'model.onnx'), fixture.bytes),
      );
    }
    assert.equal((await resolveSource('store:local-store', options)).version, 2);
    assert.equal((await resolveSource('store:local-store@1', options)).version, 1);
    await assert.rejects(resolveSource('store:local-store@9', options), /has no version 9/);
    await assert.rejects(resolveSource('store:unknown', options), /no model named unknown/);
  });
});
