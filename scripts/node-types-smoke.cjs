// Starts Node-RED on a user directory as `node-red --userDir <dir>` would (without its editor or
// HTTP server) and checks that every node type of node-red-contrib-edge-ai installed there (its
// package.json "node-red".nodes) loaded from the user directory, without an error.
//
//   node scripts/node-types-smoke.cjs <user dir> <node-red module dir>
//
// Node-RED is the checkout's (a development dependency): users bring their own. Prints one line
// per node type and exits non-zero on any failure.
/* global require */
'use strict';
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

const [userDir, nodeRedDir] = process.argv.slice(2).map((p) => path.resolve(p));
const NAME = 'node-red-contrib-edge-ai';
const pkgDir = path.join(userDir, 'node_modules', NAME);
const pkg = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));

async function main() {
  const RED = require(nodeRedDir);
  RED.init(http.createServer(), {
    userDir,
    flowFile: 'flows.json',
    credentialSecret: false,
    httpAdminRoot: false,
    httpNodeRoot: false,
    disableEditor: true,
    telemetry: { enabled: false },
    diagnostics: { enabled: false },
    logging: { console: { level: 'error', metrics: false, audit: false } },
  });
  await RED.start();
  try {
    const sets = RED.nodes.getNodeList().filter((set) => set.module === NAME);
    const failures = [];
    const info = RED.nodes.getModuleInfo(NAME);
    if (!info) throw new Error(`Node-RED did not find ${NAME} in ${userDir}`);
    if (fs.realpathSync(info.path) !== fs.realpathSync(pkgDir))
      throw new Error(`Node-RED loaded ${NAME} from ${info.path}, not from ${pkgDir}`);
    for (const [type, file] of Object.entries(pkg['node-red'].nodes)) {
      const set = sets.find((s) => s.types.includes(type));
      const constructor = RED.nodes.getType(type);
      if (!set) failures.push(`${type}: not registered`);
      else if (set.err) failures.push(`${type}: ${set.err}`);
      else if (!set.enabled) failures.push(`${type}: disabled`);
      else if (typeof constructor !== 'function') failures.push(`${type}: no constructor`);
      else console.log(`node types smoke: ${type} loads (${file})`);
    }
    if (failures.length > 0) throw new Error(failures.join('; '));
    console.log(`node types smoke: all ${Object.keys(pkg['node-red'].nodes).length} node types load`);
  } finally {
    await RED.stop();
  }
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`node types smoke: FAIL ${err.message ?? err}`);
    process.exit(1);
  },
);
