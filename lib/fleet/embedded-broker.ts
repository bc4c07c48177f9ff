import net from 'node:net';
import { pathToFileURL } from 'node:url';
import { FleetError } from '../errors';

/**
 * The optional embedded MQTT broker (aedes) for a machine with no broker: one per port per
 * process, shared by every fleet connection that asks for it and closed when the last lets go.
 * Production fleets use a real broker; this is for a single machine, examples and tests.
 */

export interface EmbeddedBroker {
  readonly port: number;
  readonly url: string;
  /** Lets go of this use; the broker stops when no use is left. */
  release(): Promise<void>;
}

interface Running {
  port: number;
  uses: number;
  close: () => Promise<void>;
  ready: Promise<number>;
}

const running = new Map<string, Running>();

/** Node's dynamic import(), kept as is by the CommonJS build (which would turn it into require()). */
const importModule = new Function('url', 'return import(url)') as (url: string) => Promise<unknown>;

/**
 * aedes 1.x is an ES module (and needs Node.js 20 or later): loaded with import() so every Node.js
 * 20 works, not only those whose require() loads ES modules (20.19+, 22.12+).
 */
async function loadAedes(url: string): Promise<AedesClass> {
  try {
    const file = require.resolve('aedes');
    const loaded = (await importModule(pathToFileURL(file).href)) as { Aedes?: AedesClass };
    if (!loaded.Aedes) throw new Error('aedes has no export Aedes (aedes 1.x expected)');
    return loaded.Aedes;
  } catch (err) {
    throw new FleetError(
      'fleet-connect-failed',
      `the embedded broker (aedes) does not load on Node.js ${process.versions.node} ` +
        `(it needs Node.js 20 or later): ${(err as Error).message}`,
      { url },
    );
  }
}

interface AedesClass {
  createBroker: () => Promise<{ handle: (s: net.Socket) => unknown; close: (cb: () => void) => void }>;
}

async function start(host: string, port: number): Promise<{ port: number; close: () => Promise<void> }> {
  const AedesClass = await loadAedes(`mqtt://${host}:${port}`);
  const broker = await AedesClass.createBroker();
  const server = net.createServer((socket) => broker.handle(socket));
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) =>
      reject(
        new FleetError(
          'fleet-connect-failed',
          `the embedded broker cannot listen on ${host}:${port}: ${err.message}`,
          {
            url: `mqtt://${host}:${port}`,
          },
        ),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  const actual = (server.address() as net.AddressInfo).port;
  return {
    port: actual,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    },
  };
}

/** Starts (or shares) the embedded broker on `host:port`; port 0 picks a free one (never shared). */
export async function useEmbeddedBroker(port: number, host = '127.0.0.1'): Promise<EmbeddedBroker> {
  const key = `${host}:${port}`;
  let entry = port === 0 ? undefined : running.get(key);
  if (!entry) {
    let closer: (() => Promise<void>) | undefined;
    const created: Running = {
      port,
      uses: 0,
      close: async () => closer?.(),
      ready: start(host, port).then((r) => {
        closer = r.close;
        created.port = r.port;
        return r.port;
      }),
    };
    entry = created;
    if (port !== 0) running.set(key, created);
    created.ready.catch(() => running.delete(key));
  }
  const use = entry;
  use.uses++;
  try {
    await use.ready;
  } catch (err) {
    use.uses--;
    throw err;
  }
  let released = false;
  return {
    port: use.port,
    url: `mqtt://${host}:${use.port}`,
    release: async () => {
      if (released) return;
      released = true;
      use.uses--;
      if (use.uses > 0) return;
      if (running.get(key) === use) running.delete(key);
      await use.close();
    },
  };
}
