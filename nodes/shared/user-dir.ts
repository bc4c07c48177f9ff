import os from 'node:os';
import path from 'node:path';
import type { NodeAPI } from 'node-red';

/**
 * The Node-RED user directory: settings.userDir, else ~/.node-red, which is Node-RED's own
 * default. Never the OS temp dir or the working directory, so state survives a restart.
 */
export function userDirOf(RED: NodeAPI): string {
  const settings = RED.settings as { userDir?: unknown };
  return typeof settings.userDir === 'string' && settings.userDir
    ? settings.userDir
    : path.join(os.homedir(), '.node-red');
}
