import os from 'node:os';
import path from 'node:path';
import type { NodeAPI } from 'node-red';
import { DEFAULT_KEEP_VERSIONS, ModelStore } from '../../lib/models/store/store';

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

/**
 * The model store in the user directory. How many versions of a model it keeps comes from
 * settings.js: `edgeAi: { modelVersions: 5 }` (0 keeps every version; anything else invalid
 * falls back to the default with a warning).
 */
export function modelStoreOf(RED: NodeAPI): ModelStore {
  const edgeAi = (RED.settings as { edgeAi?: { modelVersions?: unknown } }).edgeAi;
  let keep = DEFAULT_KEEP_VERSIONS;
  const setting = edgeAi?.modelVersions;
  if (setting !== undefined) {
    if (typeof setting === 'number' && Number.isInteger(setting) && setting >= 0) keep = setting;
    else RED.log.warn(`edgeAi.modelVersions must be a whole number 0 or more; keeping ${keep} versions`);
  }
  return ModelStore.forUserDir(userDirOf(RED), { keep });
}
