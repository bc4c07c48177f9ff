import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
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

/** What `npm pack` would put in the tarball (npm's own answer, from the files field). */
function packList(): Promise<Packed> {
  return new Promise((resolve, reject) => {
    execFile(
      'npm',
      ['pack', '--dry-run', '--json'],
      { cwd: ROOT, maxBuffer: 16 * 1024 * 1024 },
      (err, stdout) => {
        if (err) reject(err);
        else resolve((JSON.parse(stdout) as Packed[])[0]);
      },
    );
  });
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
    assert.ok(packed.unpackedSize < 5 * 1024 * 1024, `unpacked ${packed.unpackedSize} bytes`);
  });

  it("the repository's own install keeps onnxruntime-node with its bundled binaries (.npmrc)", () => {
    const npmrc = readFileSync(path.join(ROOT, '.npmrc'), 'utf8');
    assert.match(npmrc, /^onnxruntime-node-install=skip$/m);
  });
});
