// Shared pieces of the browser tests: a real Node-RED in a child process with this package
// loaded, Debian's Chromium driven by playwright-core, and what package.json says we ship.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { nodeRedLauncher, nodeRedPackageDir } from '../helpers/node-red-path';

/** dist/test/browser -> the repository. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..', '..');
export const ARTIFACTS_DIR = path.join(REPO_ROOT, 'test-artifacts');
/** Debian's Chromium; EDGE_CHROMIUM_PATH names another build (e.g. chromium-browser elsewhere). */
export const CHROMIUM_PATH = process.env.EDGE_CHROMIUM_PATH || '/usr/bin/chromium';
/** The flow `npm start` deploys (see scripts/start-demo.mjs). */
export const DEMO_EXAMPLE = '02 - Predictive maintenance dashboard';
export const PALETTE_CATEGORY = 'edge AI';

/** Skips the calling suite, with the reason printed, when Chromium is not installed. */
export function requireChromium(ctx: Mocha.Context): void {
  if (!fs.existsSync(CHROMIUM_PATH)) {
    console.log(`      skipped: no Chromium at ${CHROMIUM_PATH} (apt-get install chromium)`);
    ctx.skip();
  }
}

// ---------------------------------------------------------------------------------------------
// What the package declares

export interface PackageNodeSet {
  /** Key in package.json "node-red".nodes. */
  set: string;
  /** The runtime file package.json names, relative to the repository. */
  file: string;
  /** The editor file Node-RED loads beside it. */
  html: string;
  /** Node types the editor file registers (empty when it is missing). */
  types: string[];
  /** Files package.json implies that do not exist, relative to the repository. */
  missing: string[];
}

export interface PackageInfo {
  name: string;
  sets: PackageNodeSet[];
  /** Example names (file names without .json), sorted, from examples/. */
  examples: string[];
}

export function packageInfo(): PackageInfo {
  const pkg = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as {
    name: string;
    'node-red'?: { nodes?: Record<string, string> };
  };
  const sets = Object.entries(pkg['node-red']?.nodes ?? {}).map(([set, file]): PackageNodeSet => {
    const html = file.replace(/\.js$/, '.html');
    const missing = [file, html].filter((f) => !fs.existsSync(path.join(REPO_ROOT, f)));
    const types = missing.includes(html)
      ? []
      : registeredTypes(fs.readFileSync(path.join(REPO_ROOT, html), 'utf8'));
    return { set, file, html, types, missing };
  });
  const examplesDir = path.join(REPO_ROOT, 'examples');
  const examples = fs.existsSync(examplesDir)
    ? fs
        .readdirSync(examplesDir)
        .filter((f) => f.endsWith('.json'))
        .map((f) => f.slice(0, -'.json'.length))
        .sort()
    : [];
  return { name: pkg.name, sets, examples };
}

function registeredTypes(html: string): string[] {
  return [...html.matchAll(/RED\.nodes\.registerType\(\s*['"]([^'"]+)['"]/g)].map((m) => m[1]);
}

export function readExample(name: string): Record<string, unknown>[] {
  return JSON.parse(fs.readFileSync(path.join(REPO_ROOT, 'examples', `${name}.json`), 'utf8'));
}

// ---------------------------------------------------------------------------------------------
// A real Node-RED

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** The dashboard package, when the Node-RED under test would not find it in its own tree. */
function dashboardDirsFor(redDir: string): string[] {
  let dashboard: string;
  try {
    dashboard = path.dirname(require.resolve('@flowfuse/node-red-dashboard/package.json'));
  } catch {
    return [];
  }
  // Node-RED scans the node_modules folders above its own install; the one in ours is found.
  const ownTree = path.resolve(redDir, '..');
  return dashboard.startsWith(ownTree + path.sep) ? [] : [dashboard];
}

export interface NodeRedOptions {
  /** Flows deployed at start (default: none, the editor opens an empty "Flow 1"). */
  flows?: unknown[];
}

export class NodeRedProcess {
  /** Every line the runtime printed, in order. */
  readonly output: string[] = [];
  private exited: Promise<number | null>;

  private constructor(
    readonly url: string,
    readonly userDir: string,
    private readonly child: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
    let pending = '';
    const onData = (chunk: Buffer) => {
      pending += chunk.toString('utf8');
      const lines = pending.split('\n');
      pending = lines.pop() ?? '';
      this.output.push(...lines);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
  }

  /** Starts Node-RED on a free local port with a fresh user directory and this package loaded. */
  static async start(options: NodeRedOptions = {}): Promise<NodeRedProcess> {
    const port = await freePort();
    const userDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-ai-red-'));
    const redDir = nodeRedPackageDir();
    const nodesDir = [REPO_ROOT, ...dashboardDirsFor(redDir)];
    // The settings of scripts/start-demo.mjs, bound to 127.0.0.1.
    fs.writeFileSync(
      path.join(userDir, 'settings.js'),
      `module.exports = {
  uiHost: '127.0.0.1',
  uiPort: ${port},
  flowFile: 'flows.json',
  credentialSecret: false,
  nodesDir: ${JSON.stringify(nodesDir)},
  contextStorage: { default: { module: 'memory' } },
  logging: { console: { level: 'info', metrics: false, audit: false } },
  editorTheme: { projects: { enabled: false }, tours: false },
  diagnostics: { enabled: false },
  telemetry: { enabled: false },
  externalModules: { autoInstall: false, palette: { allowInstall: false } },
};
`,
    );
    if (options.flows) fs.writeFileSync(path.join(userDir, 'flows.json'), JSON.stringify(options.flows));
    const child = spawn(process.execPath, [nodeRedLauncher(), '--userDir', userDir, '--port', String(port)], {
      cwd: userDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const red = new NodeRedProcess(`http://127.0.0.1:${port}/`, userDir, child);
    // mocha --exit ends the process without after hooks of aborted suites: take Node-RED along.
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    child.once('exit', () => process.removeListener('exit', killOnExit));
    try {
      await red.waitForOutput(/Server now running/, 60_000);
      await red.waitForOutput(/Started flows/, 30_000);
    } catch (err) {
      await red.stop();
      throw err;
    }
    return red;
  }

  /** Resolves once a printed line matches, failing with the output so far otherwise. */
  async waitForOutput(pattern: RegExp, ms: number, from = 0): Promise<string> {
    const deadline = Date.now() + ms;
    for (;;) {
      const line = this.output.slice(from).find((l) => pattern.test(l));
      if (line) return line;
      if (this.child.exitCode !== null || this.child.signalCode !== null) {
        throw new Error(`Node-RED exited (${this.child.exitCode ?? this.child.signalCode}):\n${this.tail()}`);
      }
      if (Date.now() > deadline)
        throw new Error(`Node-RED did not print ${pattern} in ${ms} ms:\n${this.tail()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Lines logged at error level from line `from` on. */
  errors(from = 0): string[] {
    return this.output.slice(from).filter((l) => /\[error\]/.test(l));
  }

  tail(lines = 40): string {
    return this.output.slice(-lines).join('\n');
  }

  /** Calls the admin HTTP API (no auth in these settings). */
  async api(method: string, route: string, body?: unknown): Promise<unknown> {
    const res = await fetch(new URL(route, this.url), {
      method,
      headers: {
        accept: 'application/json',
        ...(body === undefined
          ? {}
          : { 'content-type': 'application/json', 'node-red-deployment-type': 'full' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    if (!res.ok) throw new Error(`${method} ${route}: HTTP ${res.status} ${text}`);
    return text ? JSON.parse(text) : undefined;
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGINT');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
      await this.exited;
      clearTimeout(timer);
    }
    fs.rmSync(this.userDir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// Chromium

/** Flags that keep the browser headless, sandbox-free (CI runs as root) and off the network. */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-default-apps',
  '--disable-extensions',
  '--disable-dev-shm-usage',
  '--no-default-browser-check',
  '--metrics-recording-only',
  // Anything not on the loopback interface goes to a closed port, so a page that needs the
  // internet fails here as it would on a board without it (loopback bypasses proxies).
  '--proxy-server=http://127.0.0.1:9',
];

export interface PageProblem {
  kind: 'console' | 'pageerror' | 'http';
  text: string;
}

export class Browser {
  /** Console errors, uncaught page errors and failed HTTP responses of every page, in order. */
  readonly problems: PageProblem[] = [];

  private constructor(
    readonly context: BrowserContext,
    private readonly profileDir: string,
  ) {}

  /** Launches Chromium with a fresh profile directory. */
  static async launch(): Promise<Browser> {
    const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-ai-chromium-'));
    const context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: CHROMIUM_ARGS,
      viewport: { width: 1400, height: 900 },
      timeout: 60_000,
    });
    return new Browser(context, profileDir);
  }

  async newPage(): Promise<Page> {
    const page = await this.context.newPage();
    page.setDefaultTimeout(15_000);
    page.on('console', (m) => {
      if (m.type() === 'error')
        this.problems.push({ kind: 'console', text: `${m.text()} (${m.location().url})` });
    });
    page.on('pageerror', (err) => this.problems.push({ kind: 'pageerror', text: err.stack ?? String(err) }));
    page.on('response', (res) => {
      if (res.status() >= 400) this.problems.push({ kind: 'http', text: `${res.status()} ${res.url()}` });
    });
    return page;
  }

  /** Problems recorded since `from` (an index into problems), as lines for an assertion message. */
  problemsSince(from: number): string[] {
    return this.problems.slice(from).map((p) => `${p.kind}: ${p.text}`);
  }

  async close(): Promise<void> {
    await this.context.close();
    fs.rmSync(this.profileDir, { recursive: true, force: true });
  }
}

/** Opens the editor and waits until the palette and the flows are loaded. */
export async function openEditor(page: Page, red: NodeRedProcess): Promise<void> {
  await page.goto(red.url, { waitUntil: 'domcontentloaded' });
  await page.waitForFunction(
    () => !!window.RED?.nodes?.version?.() && !!window.$ && !$('#red-ui-loading-progress').is(':visible'),
    undefined,
    { timeout: 30_000 },
  );
}

export function artifactPath(name: string): string {
  fs.mkdirSync(ARTIFACTS_DIR, { recursive: true });
  return path.join(ARTIFACTS_DIR, name);
}
