/**
 * Where a CSV replay may read from. Paths are confined like model paths: to a root directory
 * (the Node-RED user directory unless the node configures another), so a flow cannot replay
 * /etc/passwd or climb out with `..`. A relative path is looked up under the root, then in the
 * package's recordings/ folder (the recordings the examples replay); links are followed
 * before the check.
 */
import fs from 'node:fs';
import path from 'node:path';
import { SensorError } from './errors';

/** The package root: dist/lib/sensors/ -> three levels up. */
const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');

export function resolveCsvPath(file: string, root: string, packageRoot = PACKAGE_ROOT): string {
  // The package's recordings are allowed only under its recordings/ folder.
  const places = [{ base: root, allowed: root }];
  if (!path.isAbsolute(file))
    places.push({ base: packageRoot, allowed: path.join(packageRoot, 'recordings') });
  for (const { base, allowed } of places) {
    const wanted = path.resolve(base, file);
    if (!within(allowed, wanted)) continue;
    const real = realpathOrUndefined(wanted);
    if (real === undefined) continue;
    if (within(realpathOrUndefined(allowed) ?? allowed, real)) return real;
  }
  const wanted = path.resolve(root, file);
  if (!within(root, wanted) || fs.existsSync(wanted)) {
    throw new SensorError(
      'BAD_CONFIG',
      `CSV file ${file} is outside the allowed directory ${root}: move it there or set the node's allowed root`,
      undefined,
      'path-outside-root',
      { path: file, root },
    );
  }
  return wanted; // missing: the replay reports it when it opens the file
}

function within(dir: string, target: string): boolean {
  const rel = path.relative(dir, target);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

function realpathOrUndefined(p: string): string | undefined {
  try {
    return fs.realpathSync(p);
  } catch {
    return undefined;
  }
}
