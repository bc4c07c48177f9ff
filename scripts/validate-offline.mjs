// Preloaded into `node-red-dev validate` by `npm run validate` (scripts/validate.mjs).
// The scorecard's name checks (P08 similar package names, N01 duplicate node types) download
// https://catalogue.nodered.org/catalogue.json; without that host the tool aborts and checks
// nothing else. When (and only when) that download fails, answer with an empty catalogue and say
// which checks were skipped, so every other check still runs.
import fs from 'node:fs';
import Module from 'node:module';

const CATALOGUE_HOST = 'catalogue.nodered.org';
const originalLoad = Module._load;
let warned = false;

Module._load = function load(request, parent, isMain) {
  const loaded = originalLoad.call(this, request, parent, isMain);
  if (request !== 'axios' || !loaded || typeof loaded.get !== 'function' || loaded.__edgeOffline)
    return loaded;
  const get = loaded.get.bind(loaded);
  loaded.get = async (url, ...rest) => {
    try {
      return await get(url, ...rest);
    } catch (err) {
      if (!String(url).includes(CATALOGUE_HOST)) throw err;
      if (!warned) {
        warned = true;
        // Tells scripts/validate.mjs which results were not really checked.
        if (process.env.EDGE_VALIDATE_OFFLINE_MARK)
          fs.writeFileSync(process.env.EDGE_VALIDATE_OFFLINE_MARK, 'offline');
        console.warn(
          `  (offline) ${CATALOGUE_HOST} unreachable (${err.code || err.message}): ` +
            'P08 similar package names and N01 duplicate node types are NOT checked',
        );
      }
      return { data: { modules: [] } };
    }
  };
  loaded.__edgeOffline = true;
  return loaded;
};
