import fs from 'node:fs';
import path from 'node:path';

/**
 * Where this package's TF.js comes from. It ships the Node files of TF.js in dist/vendor; a
 * user's @tensorflow/tfjs-node, however, registers its 'tensorflow' backend on its own
 * @tensorflow/tfjs-core, and TF.js backends are per tfjs-core copy. So when @tensorflow/tfjs-node
 * is installed where Node finds it from this package (the Node-RED user directory) and its TF.js
 * is the version this package ships, the package loads TF.js (core, CPU backend, layers,
 * converter) from that install instead of its own copies: one TF.js engine, on which tfjs-node's
 * backend, this package's code and its WebAssembly backend all meet. Otherwise (no tfjs-node, or
 * another TF.js version) it uses its own copies and says why.
 *
 * The choice is made once per thread, when TF.js is first loaded: the vendored packages' entries
 * (dist/vendor/@tensorflow/<name>/index.js, written by the build) ask `userTfjsModule` first. This
 * file must not load TF.js itself.
 */

/** The packages taken from the user's install as a set (tfjs-node brings all of them). */
export const USER_TFJS_PACKAGES = [
  '@tensorflow/tfjs-core',
  '@tensorflow/tfjs-backend-cpu',
  '@tensorflow/tfjs-layers',
  '@tensorflow/tfjs-converter',
] as const;

export interface TfjsSource {
  /** Entry of the user's @tensorflow/tfjs-node, when the package runs on the user's TF.js. */
  tfjsNode?: string;
  /** The file loaded for each of USER_TFJS_PACKAGES, when from the user's install. */
  modules: Record<string, string>;
  /** Why the package runs on its own TF.js copies, when it does. */
  reason?: string;
}

/** This package's root (the compiled file is dist/lib/models/runtime/tfjs-source.js). */
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..', '..');

function resolveFrom(request: string, paths: string[]): string | undefined {
  try {
    return require.resolve(request, { paths });
  } catch {
    return undefined;
  }
}

function versionOf(manifest: string): string | undefined {
  try {
    return (JSON.parse(fs.readFileSync(manifest, 'utf8')) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/**
 * Looks for @tensorflow/tfjs-node from `from` the way Node would, then for the TF.js packages it
 * runs on (through @tensorflow/tfjs, which it depends on, else beside it), each of which must be
 * `version`.
 */
export function findUserTfjs(from: string, version: string): TfjsSource {
  const manifest = resolveFrom('@tensorflow/tfjs-node/package.json', [from]);
  if (manifest === undefined) return { modules: {}, reason: '@tensorflow/tfjs-node is not installed' };
  const nodeDir = path.dirname(manifest);
  const tfjsNode = resolveFrom(nodeDir, [nodeDir]);
  if (tfjsNode === undefined) {
    return { modules: {}, reason: `@tensorflow/tfjs-node in ${nodeDir} has no loadable entry` };
  }
  const union = resolveFrom('@tensorflow/tfjs/package.json', [nodeDir]);
  const bases = union === undefined ? [nodeDir] : [path.dirname(union), nodeDir];
  const modules: Record<string, string> = {};
  for (const name of USER_TFJS_PACKAGES) {
    const found = resolveFrom(`${name}/package.json`, bases);
    const entry = resolveFrom(name, bases);
    if (found === undefined || entry === undefined) {
      return { modules: {}, reason: `@tensorflow/tfjs-node is installed but ${name} is not found beside it` };
    }
    const got = versionOf(found);
    if (got !== version) {
      return {
        modules: {},
        reason: `@tensorflow/tfjs-node runs on ${name} ${got ?? '(unknown version)'}, this package on ${version}; install @tensorflow/tfjs-node ${version} to use it`,
      };
    }
    modules[name] = entry;
  }
  return { tfjsNode, modules };
}

let chosen: TfjsSource | undefined;

/**
 * The source TF.js comes from in this thread: decided by the first call (with `version`, the
 * TF.js version this package ships), the same answer afterwards.
 */
export function tfjsSource(version: string): TfjsSource {
  chosen ??= findUserTfjs(PACKAGE_ROOT, version);
  return chosen;
}

/** The source chosen in this thread, or undefined before TF.js was loaded. */
export function chosenTfjsSource(): TfjsSource | undefined {
  return chosen;
}

/**
 * The user's copy of TF.js package `name` (loaded), when the package runs on the user's TF.js;
 * undefined when it runs on its own copies. Called by the entries in dist/vendor.
 */
export function userTfjsModule(name: string, version: string): unknown {
  const file = tfjsSource(version).modules[name];
  return file === undefined ? undefined : require(file);
}
