import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..', '..');

interface Packed {
  files: { path: string; size: number }[];
  unpackedSize: number;
}

interface PackageJson {
  dependencies: Record<string, string>;
  optionalDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
  'node-red': { nodes: Record<string, string> };
}

/**
 * What `npm pack` would put in the tarball (npm's own answer, from the files field), without its
 * prepack build: the tests run on the dist/ just built.
 */
function packList(): Promise<Packed> {
  return new Promise((resolve, reject) => {
    execFile(
      'npm',
      ['pack', '--dry-run', '--json', '--ignore-scripts'],
      { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout) => {
        if (err) reject(err);
        else resolve((JSON.parse(stdout) as Packed[])[0]);
      },
    );
  });
}

/** package.json of an installed package, found the way Node looks for it (up from the checkout). */
function installedManifest(name: string): string {
  for (let dir = ROOT; ; dir = path.dirname(dir)) {
    const file = path.join(dir, 'node_modules', name, 'package.json');
    if (existsSync(file)) return file;
    if (path.dirname(dir) === dir) throw new Error(`${name} is not installed above ${ROOT}`);
  }
}

describe('the published package: lean and complete', function () {
  this.timeout(60000);
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as PackageJson;
  let packed: Packed;
  let files: string[];
  before(async function () {
    try {
      packed = await packList();
    } catch (err) {
      console.log(`      skipped: npm pack --dry-run failed here: ${(err as Error).message.split('\n')[0]}`);
      this.skip();
    }
    files = packed.files.map((f) => f.path);
  });

  it('ships every node with its editor files and icon, each icon once, and no source maps, tests or benchmarks', () => {
    for (const [type, file] of Object.entries(pkg['node-red'].nodes)) {
      assert.ok(files.includes(file), `${file} is missing`);
      assert.ok(files.includes(file.replace(/\.js$/, '.html')), `${type}.html is missing`);
      const icon = `${path.posix.dirname(file)}/icons/${type}.svg`;
      assert.ok(files.includes(icon), `${icon} is missing`);
    }
    const svgs = files.filter((f) => f.endsWith('.svg'));
    const names = svgs.map((f) => path.posix.basename(f));
    assert.deepEqual(names, [...new Set(names)], `each icon once: ${svgs.join(', ')}`);
    assert.ok(svgs.length <= Object.keys(pkg['node-red'].nodes).length);
    assert.deepEqual(
      files.filter((f) => f.endsWith('.map')),
      [],
    );
    assert.deepEqual(
      files.filter((f) => /^dist\/(test|bench)\//.test(f)),
      [],
    );
  });

  it('carries its ONNX classes and the example recordings; examples holds only flows', () => {
    assert.ok(files.includes('dist/lib/models/onnx-proto/index.js'));
    assert.ok(files.includes('dist/lib/models/onnx-proto/LICENSE'));
    assert.ok(files.includes('recordings/pump-bearing-run.csv'));
    const examples = files.filter((f) => f.startsWith('examples/'));
    assert.ok(examples.length >= 5);
    assert.deepEqual(
      examples.filter((f) => !/^examples\/[^/]+\.json$/.test(f)),
      [],
    );
  });

  it('depends on what users run: no Dashboard 2, one protobuf library', () => {
    const runtime = { ...pkg.dependencies, ...pkg.optionalDependencies };
    assert.equal(runtime['@flowfuse/node-red-dashboard'], undefined, 'Dashboard 2 is a dev dependency');
    assert.ok(pkg.devDependencies['@flowfuse/node-red-dashboard']);
    assert.equal(runtime['onnx-proto'], undefined);
    assert.ok(runtime.protobufjs?.startsWith('^7'), 'protobufjs 7, the one onnxruntime-web uses');
    const own = packed.files
      .filter((f) => !f.path.startsWith('dist/vendor/'))
      .reduce((n, f) => n + f.size, 0);
    assert.ok(own < 5 * 1024 * 1024, `the package's own files unpack to ${own} bytes`);
  });

  it('ships only the TF.js and onnxruntime-web files Node loads (dist/vendor); those packages are dev dependencies', () => {
    const runtime = { ...pkg.dependencies, ...pkg.optionalDependencies };
    const vendored = [
      '@tensorflow/tfjs-core',
      '@tensorflow/tfjs-layers',
      '@tensorflow/tfjs-converter',
      '@tensorflow/tfjs-backend-cpu',
      '@tensorflow/tfjs-backend-wasm',
      'onnxruntime-web',
    ];
    for (const name of vendored) {
      assert.equal(runtime[name], undefined, `${name} is not installed for users`);
      assert.ok(pkg.devDependencies[name], `${name} is a dev dependency (the source of dist/vendor)`);
      const meta = JSON.parse(
        readFileSync(path.join(ROOT, 'dist', 'vendor', name, 'package.json'), 'utf8'),
      ) as {
        version: string;
        main: string;
      };
      assert.ok(
        files.includes(`dist/vendor/${name}/${meta.main}`),
        `${name}'s Node entry ${meta.main} is shipped`,
      );
      const published = JSON.parse(readFileSync(installedManifest(name), 'utf8')) as {
        version: string;
        dependencies?: Record<string, string>;
      };
      assert.equal(meta.version, published.version, `${name} copied from the installed version`);
      if (name === 'onnxruntime-web') {
        assert.equal(runtime['onnxruntime-common'], published.dependencies?.['onnxruntime-common']);
      }
    }
    const vendor = packed.files.filter((f) => f.path.startsWith('dist/vendor/'));
    assert.ok(files.includes('dist/vendor/LICENSES.md'));
    assert.deepEqual(
      vendor
        .map((f) => f.path)
        .filter((f) => !/(\.node(\.min)?\.js|\.mjs|\.wasm|\/package\.json|\/LICENSES\.md)$/.test(f))
        .filter((f) => !/^dist\/vendor\/@tensorflow\/[^/]+\/index\.js$/.test(f)),
      [],
      "Node entries, their WebAssembly files, package.json and the TF.js entries that pick the user's tfjs-node install only (no browser bundles, no source maps)",
    );
    const bytes = vendor.reduce((n, f) => n + f.size, 0);
    assert.ok(bytes < 25 * 1024 * 1024, `dist/vendor unpacks to ${bytes} bytes`);
  });

  it('runs a model on tfjs-wasm, tfjs-cpu and onnxruntime-web, every module of theirs from dist/vendor', async () => {
    const out = await new Promise<string>((resolve, reject) => {
      execFile(
        process.execPath,
        [path.join(ROOT, 'scripts', 'runtime-smoke.cjs'), ROOT],
        { cwd: ROOT, timeout: 60000 },
        (err, stdout, stderr) =>
          err ? reject(new Error(`${err.message}\n${stdout}${stderr}`)) : resolve(stdout),
      );
    });
    for (const runtime of ['tfjs-wasm', 'tfjs-cpu', 'onnxruntime-web']) {
      assert.match(out, new RegExp(`runtime smoke: ${runtime} runs`));
    }
    assert.match(out, /modules came from dist\/vendor/);
  });

  it("the repository's own install keeps onnxruntime-node with its bundled binaries (.npmrc)", () => {
    const npmrc = readFileSync(path.join(ROOT, '.npmrc'), 'utf8');
    assert.match(npmrc, /^onnxruntime-node-install=skip$/m);
  });
});
