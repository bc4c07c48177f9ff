import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { useEmbeddedBroker } from '../../lib/fleet/embedded-broker';

/** The brokers fleet tests and benchmarks run against: the embedded one always, Mosquitto when installed. */

export const MOSQUITTO = '/usr/sbin/mosquitto';

export interface TestBroker {
  kind: 'embedded' | 'mosquitto';
  url: string;
  stop(): Promise<void>;
}

export function mosquittoMissing(): string | undefined {
  return existsSync(MOSQUITTO) ? undefined : `${MOSQUITTO} is not installed (Debian package mosquitto)`;
}

/** A TCP port free on the loopback interface now. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on the loopback `port`. */
export async function waitListening(port: number, ms: number): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`mosquitto did not listen on port ${port} within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/**
 * Starts Mosquitto on a free loopback port (anonymous, no persistence) from a temp config.
 * `configure` may write more files into the config's directory (readable by all: Mosquitto
 * started as root reads them as the user mosquitto) and returns lines that replace
 * `allow_anonymous true` (e.g. a password file and an ACL file).
 */
export async function startMosquitto(
  port?: number,
  configure?: (dir: string) => Promise<string[]>,
): Promise<TestBroker> {
  const chosen = port ?? (await freePort());
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'mosquitto-'));
  const conf = path.join(dir, 'mosquitto.conf');
  const access = configure ? await configure(dir) : ['allow_anonymous true'];
  // Mosquitto started as root reads its password and ACL files as the user mosquitto.
  if (configure) await fs.chmod(dir, 0o755);
  await fs.writeFile(
    conf,
    [
      `listener ${chosen} 127.0.0.1`,
      ...access,
      'persistence false',
      'log_dest none',
      'max_inflight_messages 0',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  let exited = false;
  child.once('exit', () => (exited = true));
  try {
    await waitListening(chosen, 10000);
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
  return {
    kind: 'mosquitto',
    url: `mqtt://127.0.0.1:${chosen}`,
    stop: async () => {
      if (!exited) {
        const gone = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await gone;
      }
      await fs.rm(dir, { recursive: true, force: true });
    },
  };
}

export async function startEmbedded(): Promise<TestBroker> {
  const broker = await useEmbeddedBroker(0);
  return { kind: 'embedded', url: broker.url, stop: () => broker.release() };
}
