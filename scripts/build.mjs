// Compiles TypeScript (sources, tests and benchmarks, so all are type-checked) into dist/
// and lays each node's editor files (.html, locales) and its icon (icons/<type>.svg, in an icons/
// folder beside the .js, where Node-RED looks for a package's icons) beside its compiled .js. Each
// icon is shipped once: Node-RED finds any icon of the package in any of its nodes' folders.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { copyVendored, linkVendored } from './vendor-runtime.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const dist = path.join(root, process.env.EDGE_DIST || 'dist');

fs.rmSync(dist, { recursive: true, force: true });
execFileSync(
  process.execPath,
  [path.join(root, 'node_modules/typescript/bin/tsc'), '-p', root, '--outDir', dist],
  {
    stdio: 'inherit',
  },
);

// Vendored JavaScript modules in lib/ (each with its .d.ts and LICENSE) are copied as they are.
const vendored = path.join('lib', 'models', 'onnx-proto');
fs.cpSync(path.join(root, vendored), path.join(dist, vendored), { recursive: true });

// The Node files of TF.js and onnxruntime-web, shipped in dist/vendor (see vendor-runtime.mjs).
copyVendored(root, dist);
linkVendored(dist);

const nodesDir = path.join(root, 'nodes');
for (const type of fs.readdirSync(nodesDir)) {
  const src = path.join(nodesDir, type);
  if (!fs.statSync(src).isDirectory()) continue;
  const out = path.join(dist, 'nodes', type);
  fs.mkdirSync(out, { recursive: true });
  fs.cpSync(src, out, {
    recursive: true,
    filter: (file) => fs.statSync(file).isDirectory() || !file.endsWith('.ts'),
  });
  const icon = path.join(root, 'icons', `${type}.svg`);
  if (fs.existsSync(icon)) {
    fs.mkdirSync(path.join(out, 'icons'), { recursive: true });
    fs.copyFileSync(icon, path.join(out, 'icons', `${type}.svg`));
  }
}
