// `npm run measure:install`: what a user's install of this package costs. Packs the package,
// installs the tarball into a clean Node-RED user directory the way the palette manager does
// (`npm install --omit=dev` there, production dependencies only), and prints the size of
// node_modules, the time, whether onnxruntime-node is present, and the largest packages. It then
// runs a model on each runtime from the installed package (scripts/runtime-smoke.cjs) and has
// Node-RED load every node type from the user directory (scripts/node-types-smoke.cjs).
//
//   node scripts/install-size.mjs [--native] [--keep] [--target-mb 250]
//
// Default: the install as a user gets it without any setting (onnxruntime-node's install script
// runs as it would for them). --native sets onnxruntime-node-install=skip, as the README tells
// users to, which keeps onnxruntime-node with its bundled CPU binaries. The size that is checked
// against the target is node_modules without onnxruntime-node (the user install the target is
// about); the exit code is 1 when it is over the target or a content check fails.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    native: { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
    'target-mb': { type: 'string', default: '250' },
  },
});
const targetMb = Number(values['target-mb']);
const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const MB = 1024 * 1024;

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-install-size-'));
const userDir = path.join(work, 'node-red');
fs.mkdirSync(userDir);
// What Node-RED writes into a new user directory.
fs.writeFileSync(
  path.join(userDir, 'package.json'),
  JSON.stringify({
    name: 'node-red-project',
    description: 'A Node-RED Project',
    version: '0.0.1',
    private: true,
  }),
);

/** Bytes on disk under `dir` (du -sk), or the sum of file sizes where du is missing. */
function diskBytes(dir) {
  const du = spawnSync('du', ['-sk', dir], { encoding: 'utf8' });
  if (du.status === 0) return Number(du.stdout.split(/\s/)[0]) * 1024;
  let total = 0;
  for (const entry of fs.readdirSync(dir, { recursive: true, withFileTypes: true })) {
    if (entry.isFile()) total += fs.statSync(path.join(entry.parentPath, entry.name)).size;
  }
  return total;
}

/** Top-level packages of node_modules (scoped ones as @scope/name) with their size. */
function packages(modules) {
  const out = [];
  for (const name of fs.readdirSync(modules)) {
    if (name.startsWith('.')) continue;
    const dir = path.join(modules, name);
    if (name.startsWith('@')) {
      for (const sub of fs.readdirSync(dir))
        out.push({ name: `${name}/${sub}`, bytes: diskBytes(path.join(dir, sub)) });
    } else out.push({ name, bytes: diskBytes(dir) });
  }
  return out.sort((a, b) => b.bytes - a.bytes);
}

const failures = [];
try {
  console.log('packing the package (npm pack) ...');
  const packed = JSON.parse(
    // dist/ as it is (measure:install builds first): --ignore-scripts skips the prepack build.
    execFileSync(npm, ['pack', '--json', '--ignore-scripts', '--pack-destination', work], {
      cwd: root,
      encoding: 'utf8',
    }),
  )[0];
  const tarball = path.join(work, packed.filename);
  const files = packed.files.map((f) => f.path);
  const maps = files.filter((f) => f.endsWith('.map'));
  const svgs = files.filter((f) => f.endsWith('.svg'));
  if (maps.length > 0) failures.push(`the tarball has ${maps.length} source maps (${maps[0]}, ...)`);
  const iconNames = svgs.map((f) => path.posix.basename(f));
  if (svgs.some((f) => path.posix.basename(path.posix.dirname(f)) !== 'icons'))
    failures.push('icons are shipped outside an icons/ folder');
  if (new Set(iconNames).size !== iconNames.length) failures.push('an icon is shipped more than once');

  const args = [
    'install',
    '--no-audit',
    '--no-fund',
    '--no-update-notifier',
    '--omit=dev',
    '--save',
    tarball,
  ];
  if (values.native) args.push('--onnxruntime-node-install=skip');
  const env = { ...process.env };
  delete env.ONNXRUNTIME_NODE_INSTALL;
  delete env.npm_config_onnxruntime_node_install;
  console.log(
    `installing into a clean user directory: npm ${args.join(' ').replace(tarball, '<tarball>')} ...`,
  );
  const started = process.hrtime.bigint();
  const install = spawnSync(npm, args, { cwd: userDir, env, encoding: 'utf8' });
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  if (install.status !== 0) {
    process.stdout.write(install.stdout);
    process.stderr.write(install.stderr);
    throw new Error(`npm install failed (exit ${install.status})`);
  }
  const modules = path.join(userDir, 'node_modules');
  const list = packages(modules);
  const total = diskBytes(modules);
  const nativeDir = path.join(modules, 'onnxruntime-node');
  const nativePresent = fs.existsSync(nativeDir);
  const nativeBytes = nativePresent ? diskBytes(nativeDir) : 0;
  const withoutNative = total - nativeBytes;
  const nativeLoads =
    nativePresent &&
    spawnSync(process.execPath, ['-e', "require('onnxruntime-node')"], { cwd: userDir, stdio: 'ignore' })
      .status === 0;
  // TF.js and onnxruntime-web run from the files the package ships (dist/vendor): the smoke
  // runs a model on each runtime in the installed package and checks where its modules came from.
  const smokeStarted = process.hrtime.bigint();
  const smoke = spawnSync(
    process.execPath,
    [path.join(root, 'scripts', 'runtime-smoke.cjs'), path.join(modules, 'node-red-contrib-edge-ai')],
    { cwd: userDir, encoding: 'utf8' },
  );
  const smokeSeconds = Number(process.hrtime.bigint() - smokeStarted) / 1e9;
  const smokeLines = (smoke.stdout + smoke.stderr).split('\n').filter((l) => l.startsWith('runtime smoke'));
  if (smoke.status !== 0) failures.push(`the installed package does not run: ${smokeLines.join('; ')}`);
  // Node-RED (the checkout's; users bring their own) started on the user directory loads every
  // node type of the installed package.
  const typesStarted = process.hrtime.bigint();
  const types = spawnSync(
    process.execPath,
    [
      path.join(root, 'scripts', 'node-types-smoke.cjs'),
      userDir,
      path.dirname(createRequire(path.join(root, 'package.json')).resolve('node-red/package.json')),
    ],
    { cwd: userDir, encoding: 'utf8', timeout: 120_000 },
  );
  const typesSeconds = Number(process.hrtime.bigint() - typesStarted) / 1e9;
  const typesLines = (types.stdout + types.stderr)
    .split('\n')
    .filter((l) => l.startsWith('node types smoke'));
  if (types.status !== 0)
    failures.push(`Node-RED does not load the installed node types: ${typesLines.join('; ')}`);
  const unwanted = [
    '@flowfuse/node-red-dashboard',
    'onnx-proto',
    'onnxruntime-web',
    '@tensorflow/tfjs-core',
    '@tensorflow/tfjs-layers',
  ].filter((p) => fs.existsSync(path.join(modules, p)));
  if (unwanted.length > 0) failures.push(`installed but not needed: ${unwanted.join(', ')}`);
  const protobufs = spawnSync(npm, ['ls', 'protobufjs', '--all', '--parseable'], {
    cwd: userDir,
    encoding: 'utf8',
  })
    .stdout.split('\n')
    .filter(Boolean);
  if (protobufs.length > 1) failures.push(`${protobufs.length} copies of protobufjs`);

  const mb = (b) => (b / MB).toFixed(1);
  console.log('');
  console.log(`| install (${values.native ? 'onnxruntime-node-install=skip' : 'no setting'}) | value |`);
  console.log('|---|---:|');
  console.log(`| tarball | ${(packed.size / 1024).toFixed(0)} kB, ${packed.entryCount} files |`);
  console.log(`| npm install time | ${seconds.toFixed(1)} s |`);
  console.log(`| node_modules | ${mb(total)} MB, ${list.length} packages |`);
  console.log(
    `| onnxruntime-node | ${nativePresent ? `present, ${mb(nativeBytes)} MB, ${nativeLoads ? 'loads' : 'does NOT load'}` : 'absent'} |`,
  );
  console.log(
    `| node_modules without onnxruntime-node | ${mb(withoutNative)} MB (target <= ${targetMb} MB) |`,
  );
  console.log(`| protobufjs copies | ${protobufs.length} |`);
  console.log(
    `| node types loaded by Node-RED from the user directory | ${types.status === 0 ? 'all' : 'FAILS'} (${typesSeconds.toFixed(1)} s) |`,
  );
  console.log(
    `| a model on tfjs-wasm, tfjs-cpu, onnxruntime-web; an epoch in worker threads | ${smoke.status === 0 ? 'runs' : 'FAILS'} (${smokeSeconds.toFixed(1)} s) |`,
  );
  console.log('');
  console.log('| largest packages | MB |');
  console.log('|---|---:|');
  for (const p of list.slice(0, 10)) console.log(`| ${p.name} | ${mb(p.bytes)} |`);
  const vendorDir = path.join(modules, 'node-red-contrib-edge-ai', 'dist', 'vendor');
  if (fs.existsSync(vendorDir)) {
    console.log('');
    console.log('| shipped in node-red-contrib-edge-ai/dist/vendor (what Node loads) | MB |');
    console.log('|---|---:|');
    for (const p of packages(vendorDir).filter((e) => !e.name.endsWith('.md')))
      console.log(`| ${p.name} | ${mb(p.bytes)} |`);
  }
  console.log('');
  if (withoutNative > targetMb * MB)
    failures.push(`${mb(withoutNative)} MB is over the ${targetMb} MB target`);
  for (const f of failures) console.log(`FAIL: ${f}`);
  console.log(
    failures.length === 0
      ? 'install size: all checks pass'
      : `install size: ${failures.length} check(s) failed`,
  );
} finally {
  if (values.keep) console.log(`kept ${work}`);
  else fs.rmSync(work, { recursive: true, force: true });
}
process.exitCode = failures.length > 0 ? 1 : 0;
