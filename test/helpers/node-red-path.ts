// Which Node-RED the tests run against: the one in node_modules, or another install named by
// EDGE_NODE_RED_PATH (the folder holding its package.json), e.g. Node-RED 5 under Node 22.
import path from 'node:path';

/** The folder of the Node-RED package under test. */
export function nodeRedPackageDir(): string {
  const override = process.env.EDGE_NODE_RED_PATH;
  if (override) return path.resolve(override);
  return path.dirname(require.resolve('node-red/package.json'));
}

/** The runtime entry point (package.json "main"), as node-red-node-test-helper expects it. */
export function nodeRedMain(): string {
  return require.resolve(nodeRedPackageDir());
}

/** The command-line launcher (red.js), as `node-red` runs it. */
export function nodeRedLauncher(): string {
  return path.join(nodeRedPackageDir(), 'red.js');
}

export function nodeRedVersion(): string {
  return (require(path.join(nodeRedPackageDir(), 'package.json')) as { version: string }).version;
}
