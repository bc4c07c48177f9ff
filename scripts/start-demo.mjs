// Starts a real Node-RED with this package loaded and the demo flow deployed.
// Usage: npm start [-- --port 1880 | -p 1880] [-- --reset] [-- --user-dir DIR | -u DIR]
// (like Node-RED's own -p and -u; PORT and EDGE_DEMO_DIR also work)
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    port: { type: 'string', short: 'p', default: process.env.PORT || '1880' },
    reset: { type: 'boolean', default: false },
    'user-dir': {
      type: 'string',
      short: 'u',
      default: process.env.EDGE_DEMO_DIR || path.join(root, '.node-red-demo'),
    },
  },
});
const port = Number(values.port);
if (!Number.isInteger(port) || port < 1 || port > 65535) {
  console.error(`--port must be a number from 1 to 65535, got "${values.port}"`);
  process.exit(2);
}
const userDir = path.resolve(values['user-dir']);
const DEMO_FLOW =
  process.env.EDGE_DEMO_FLOW || path.join(root, 'examples', '02 - Predictive maintenance dashboard.json');

fs.mkdirSync(userDir, { recursive: true });
fs.writeFileSync(
  path.join(userDir, 'settings.js'),
  `// Written by npm start; edit freely, it is rewritten on the next start.
module.exports = {
  uiPort: ${port},
  flowFile: 'flows.json',
  flowFilePretty: true,
  nodesDir: [${JSON.stringify(root)}],
  contextStorage: {
    default: { module: 'localfilesystem' },
    memory: { module: 'memory' },
  },
  logging: { console: { level: 'info', metrics: false, audit: false } },
  editorTheme: { projects: { enabled: false }, tours: false },
  diagnostics: { enabled: false },
  telemetry: { enabled: false },
  externalModules: { autoInstall: false, palette: { allowInstall: false } },
};
`,
);
const flowFile = path.join(userDir, 'flows.json');
if (values.reset || !fs.existsSync(flowFile)) {
  fs.copyFileSync(DEMO_FLOW, flowFile);
  console.log(`Deployed the demo flow ${path.basename(DEMO_FLOW)} into ${userDir}`);
} else {
  console.log(`Keeping your flows in ${flowFile} (npm start -- --reset restores the demo)`);
}

const red = spawn(
  process.execPath,
  [path.join(root, 'node_modules', 'node-red', 'red.js'), '--userDir', userDir, '--port', String(port)],
  {
    stdio: 'inherit',
  },
);
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => red.kill(signal));
red.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));
