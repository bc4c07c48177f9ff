// `npm run validate`: the Node-RED flow library's scorecard (`node-red-dev validate`) for this
// package, runnable offline from catalogue.nodered.org (see validate-offline.mjs). It reads the
// built package (dist/), so npm run validate builds first. The scorecard is written to
// test-artifacts/scorecard.json; the exit code is non-zero when a check fails.
// node-red-dev comes through npx, pinned, so it is not part of every install.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const NODE_RED_DEV = 'node-red-dev@0.1.6';
// Checks the scorecard cannot make without catalogue.nodered.org (reported, not counted).
const NEED_CATALOGUE = { P08: 'similar package names', N01: 'node type names unique in the catalogue' };
// What the scorecard recommends that is a decision for the maintainers, not a defect.
const ACCEPTED = {
  P04: 'a scoped name is recommended for new packages; the package keeps its published name',
  D01: 'seven: mqtt and aedes (fleet), csv-parse (replay), flatbuffers (TFLite), protobufjs (ONNX), and onnxruntime-common and seedrandom, which the TF.js and onnxruntime-web files in dist/vendor require',
};

// Dependencies kept below their latest major on purpose (D03), with the reason.
const ACCEPTED_OUTDATED = {
  protobufjs:
    'stays on 7: the ONNX classes (lib/models/onnx-proto) are generated for its runtime, and onnxruntime-web uses 7',
};

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const out = path.join(root, 'test-artifacts', 'scorecard.json');
fs.mkdirSync(path.dirname(out), { recursive: true });
fs.rmSync(out, { force: true });

const shim = path.join(root, 'scripts', 'validate-offline.mjs');
const offlineMark = path.join(path.dirname(out), 'scorecard.offline');
fs.rmSync(offlineMark, { force: true });
const result = spawnSync('npx', ['--yes', NODE_RED_DEV, 'validate', '--path', root, '--output', out], {
  cwd: root,
  stdio: 'inherit',
  env: {
    ...process.env,
    NODE_OPTIONS: `${process.env.NODE_OPTIONS ?? ''} --import ${pathToFileURL(shim).href}`.trim(),
    EDGE_VALIDATE_OFFLINE_MARK: offlineMark,
  },
});
if (result.status !== 0 || !fs.existsSync(out)) {
  console.error(`validate: ${NODE_RED_DEV} did not finish (exit ${result.status ?? result.signal})`);
  process.exit(1);
}

// node-red-dev only prints "Unable to parse" for a node whose editor file is missing.
const pkg = JSON.parse(fs.readFileSync(path.join(root, 'package.json'), 'utf8'));
const missing = Object.values(pkg['node-red']?.nodes ?? {})
  .flatMap((js) => [js, js.replace(/\.js$/, '.html')])
  .filter((file) => !fs.existsSync(path.join(root, file)));
const scorecard = JSON.parse(fs.readFileSync(out, 'utf8'));
const offline = fs.existsSync(offlineMark);
fs.rmSync(offlineMark, { force: true });
const failed = [];
console.log('\nvalidate: scorecard summary');
for (const [check, result] of Object.entries(scorecard)) {
  if (check === 'package' || typeof result !== 'object' || !('test' in result)) continue;
  let note = result.test ? 'pass' : 'FAIL';
  if (NEED_CATALOGUE[check] && offline) note = `not checked offline (${NEED_CATALOGUE[check]})`;
  else if (!result.test && ACCEPTED[check]) note = `accepted: ${ACCEPTED[check]}`;
  else if (
    !result.test &&
    check === 'D03' &&
    Array.isArray(result.packages) &&
    result.packages.length > 0 &&
    result.packages.every((p) => ACCEPTED_OUTDATED[p])
  )
    note = `accepted: ${result.packages.map((p) => `${p} ${ACCEPTED_OUTDATED[p]}`).join('; ')}`;
  else if (!result.test) failed.push(check);
  console.log(`  ${check}: ${note}`);
}
if (missing.length) {
  console.log(`  package.json names missing node files: ${missing.join(', ')}`);
  failed.push('node files');
}
if (failed.length) {
  console.error(`validate: failing checks ${failed.join(', ')} (details above)`);
  process.exit(1);
}
