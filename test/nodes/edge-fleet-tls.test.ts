// mqtts: the fleet connection against TLS brokers (Mosquitto, and aedes behind a node:tls server)
// with certificates made here by the openssl command-line tool.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, promises as fs, readFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { pathToFileURL } from 'node:url';
import type { EdgeAiError } from '../../lib/errors';
import { FleetConnection, type FleetTlsOptions } from '../../lib/fleet/connection';
import { MOSQUITTO, freePort, mosquittoMissing, waitListening } from '../helpers/mqtt-brokers';
import { helper, nodeModule, withCatalog } from '../helpers/red';
import { useTempUserDir } from '../helpers/user-dir';

const OPENSSL = ['/usr/bin/openssl', '/usr/local/bin/openssl'].find((p) => existsSync(p));

interface Pki {
  dir: string;
  ca: string;
  otherCa: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for 127.0.0.1/localhost and a client certificate it signed, and an unrelated CA. */
async function makePki(): Promise<Pki> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-tls-'));
  const f = (name: string) => path.join(dir, name);
  const run = (...args: string[]) => execFileSync(OPENSSL as string, args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  for (const ca of ['ca', 'other-ca']) {
    run(
      'req',
      '-x509',
      ...ec,
      '-keyout',
      f(`${ca}.key`),
      '-out',
      f(`${ca}.crt`),
      '-days',
      '2',
      '-subj',
      `/CN=${ca}`,
    );
  }
  await fs.writeFile(f('server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  await fs.writeFile(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const [name, ext] of [
    ['server', 'server.ext'],
    ['client', 'client.ext'],
  ]) {
    run('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`);
    run(
      'x509',
      '-req',
      '-in',
      f(`${name}.csr`),
      '-CA',
      f('ca.crt'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f(`${name}.crt`),
      '-days',
      '2',
      '-extfile',
      f(ext),
    );
  }
  // Mosquitto started as root reads its files as the user mosquitto: throwaway keys, readable by all.
  await fs.chmod(dir, 0o755);
  for (const name of await fs.readdir(dir)) await fs.chmod(f(name), 0o644);
  return {
    dir,
    ca: f('ca.crt'),
    otherCa: f('other-ca.crt'),
    serverCert: f('server.crt'),
    serverKey: f('server.key'),
    clientCert: f('client.crt'),
    clientKey: f('client.key'),
  };
}

interface TlsBroker {
  /** mqtts:// URL; `mutualUrl` also asks for a client certificate (Mosquitto only). */
  url: string;
  mutualUrl?: string;
  stop(): Promise<void>;
}

async function startMosquittoTls(pki: Pki): Promise<TlsBroker> {
  const [port, mutualPort] = [await freePort(), await freePort()];
  const conf = path.join(pki.dir, 'mosquitto.conf');
  const files = [`cafile ${pki.ca}`, `certfile ${pki.serverCert}`, `keyfile ${pki.serverKey}`];
  await fs.writeFile(
    conf,
    [
      'per_listener_settings true',
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      ...files,
      `listener ${mutualPort} 127.0.0.1`,
      'allow_anonymous true',
      ...files,
      'require_certificate true',
      'persistence false',
      'log_dest none',
      '',
    ].join('\n'),
  );
  const child: ChildProcess = spawn(MOSQUITTO, ['-c', conf], { stdio: 'ignore' });
  let exited = false;
  child.once('exit', () => (exited = true));
  await waitListening(port, 10000);
  await waitListening(mutualPort, 10000);
  return {
    url: `mqtts://127.0.0.1:${port}`,
    mutualUrl: `mqtts://127.0.0.1:${mutualPort}`,
    stop: async () => {
      if (exited) return;
      const gone = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await gone;
    },
  };
}

// aedes 1.x is an ES module: loaded as the embedded broker loads it.
const importModule = new Function('url', 'return import(url)') as (url: string) => Promise<unknown>;

async function startAedesTls(pki: Pki): Promise<TlsBroker> {
  type Broker = { handle: (s: net.Socket) => unknown; close: (cb: () => void) => void };
  const { Aedes } = (await importModule(pathToFileURL(require.resolve('aedes')).href)) as {
    Aedes: { createBroker: () => Promise<Broker> };
  };
  const broker = await Aedes.createBroker();
  const sockets = new Set<net.Socket>();
  const server = tls.createServer(
    { cert: readFileSync(pki.serverCert), key: readFileSync(pki.serverKey) },
    (socket) => broker.handle(socket),
  );
  server.on('secureConnection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.on('tlsClientError', () => undefined); // a client that refuses our certificate
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as net.AddressInfo;
  return {
    url: `mqtts://127.0.0.1:${port}`,
    stop: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await new Promise<void>((resolve) => broker.close(() => resolve()));
    },
  };
}

/** The first connection error, or undefined when it connects first. */
function firstOutcome(c: FleetConnection, ms = 10000): Promise<EdgeAiError | undefined> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`neither connected nor refused in ${ms} ms`)), ms);
    c.once('connect', () => {
      clearTimeout(timer);
      resolve(undefined);
    });
    c.once('connect-error', (err: EdgeAiError) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

let seq = 0;

for (const kind of ['mosquitto', 'aedes'] as const) {
  describe(`mqtts: the fleet connection against ${kind === 'mosquitto' ? 'Mosquitto' : 'aedes behind node:tls'} over TLS`, function () {
    this.timeout(30000);
    let pki: Pki;
    let broker: TlsBroker;
    const open: FleetConnection[] = [];

    before(async function () {
      if (!OPENSSL) {
        console.log('      skipped: the openssl command-line tool is not installed (Debian package openssl)');
        this.skip();
      }
      const missing = kind === 'mosquitto' ? mosquittoMissing() : undefined;
      if (missing) {
        console.log(`      skipped: ${missing}`);
        this.skip();
      }
      pki = await makePki();
      broker = kind === 'mosquitto' ? await startMosquittoTls(pki) : await startAedesTls(pki);
    });
    afterEach(async () => {
      for (const c of open.splice(0)) await c.close();
    });
    after(async () => {
      await broker?.stop();
      if (pki) await fs.rm(pki.dir, { recursive: true, force: true });
    });

    function connection(url: string, tlsOptions: FleetTlsOptions): FleetConnection {
      const c = new FleetConnection({
        url,
        fleet: 'tls',
        deviceId: `d${seq++}`,
        tls: tlsOptions,
        reconnectMs: 500,
      });
      open.push(c);
      return c;
    }

    it('connects when the broker certificate checks out against the CA, and messages flow', async () => {
      const c = connection(broker.url, { ca: pki.ca });
      assert.equal(await firstOutcome(c), undefined);
      const got = new Promise<string>((resolve) => {
        void c.subscribe('edge-ai/tls/echo', (_t, payload) => resolve(payload.toString()));
      });
      await new Promise((r) => setTimeout(r, 100));
      await c.publish('edge-ai/tls/echo', 'over TLS');
      assert.equal(await got, 'over TLS');
    });

    it('takes the CA as PEM text as well as a file path', async () => {
      const c = connection(broker.url, { ca: readFileSync(pki.ca, 'utf8') });
      assert.equal(await firstOutcome(c), undefined);
    });

    it('refuses a broker whose certificate another CA signed: fleet-tls-untrusted, and keeps refusing', async () => {
      const c = connection(broker.url, { ca: pki.otherCa });
      const err = await firstOutcome(c);
      assert.ok(err, 'connected to a broker it must not trust');
      assert.equal(err.code, 'fleet-tls-untrusted');
      // Mosquitto sends its CA along (a self-signed certificate in the chain), aedes only its own.
      assert.ok(
        ['UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN'].includes(
          String(err.params?.tlsCode),
        ),
        String(err.params?.tlsCode),
      );
      assert.match(err.message, /certificate not trusted/);
      // Reconnection attempts are refused alike; the connection never comes up.
      const again = await firstOutcome(c);
      assert.equal(again?.code, 'fleet-tls-untrusted');
      assert.equal(c.connected, false);
      assert.equal((c.lastError as EdgeAiError | undefined)?.code, 'fleet-tls-untrusted');
    });

    it('refuses a broker when no CA is given and its CA is not a public one', async () => {
      const c = connection(broker.url, {});
      const err = await firstOutcome(c);
      assert.equal(err?.code, 'fleet-tls-untrusted');
    });

    if (kind === 'mosquitto') {
      it('a broker that requires client certificates: in with the device certificate, out without', async () => {
        const withCert = connection(broker.mutualUrl as string, {
          ca: pki.ca,
          cert: pki.clientCert,
          key: pki.clientKey,
        });
        assert.equal(await firstOutcome(withCert), undefined);
        const without = connection(broker.mutualUrl as string, { ca: pki.ca });
        const err = await firstOutcome(without);
        assert.equal(err?.code, 'fleet-connect-failed');
        assert.equal(without.connected, false);
      });
    }
  });
}

describe('mqtts: a node shows why the fleet broker is refused', function () {
  this.timeout(30000);
  useTempUserDir('edge-fleet-tls');
  let pki: Pki;
  let broker: TlsBroker;

  before(async function () {
    if (!OPENSSL) {
      console.log('      skipped: the openssl command-line tool is not installed (Debian package openssl)');
      this.skip();
    }
    pki = await makePki();
    broker = await startAedesTls(pki);
  });
  afterEach(async () => helper.unload());
  after(async () => {
    await broker?.stop();
    if (pki) await fs.rm(pki.dir, { recursive: true, force: true });
  });

  it('edge-fleet-telemetry: red status "broker certificate not trusted" with the wrong CA, green with the right one', async () => {
    const flow = (ca: string) => [
      { id: 'f', type: 'edge-fleet', broker: broker.url, fleet: 'tls', deviceId: 'pi1', tlsCa: ca },
      { id: 't', type: 'edge-fleet-telemetry', fleet: 'f', source: 'pump', interval: 0.2, wires: [] },
    ];
    const statusesOf = () => {
      const statuses: { fill?: string; text?: string }[] = [];
      (helper.getNode('t') as unknown as { on: (e: string, f: (c: { args: [never] }) => void) => void }).on(
        'call:status',
        (call) => statuses.push(call.args[0]),
      );
      return statuses;
    };
    const until = async (
      statuses: { fill?: string; text?: string }[],
      test: (s: { fill?: string; text?: string }) => boolean,
    ) => {
      const deadline = Date.now() + 10000;
      while (!statuses.some(test)) {
        if (Date.now() > deadline) throw new Error(`status never matched: ${JSON.stringify(statuses)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return statuses.find(test) as { fill?: string; text?: string };
    };
    const nodes = [nodeModule('edge-fleet'), withCatalog('edge-fleet-telemetry')];
    await helper.load(nodes, flow(pki.otherCa));
    const refused = await until(statusesOf(), (s) => s.fill === 'red');
    assert.match(refused.text ?? '', /^broker certificate not trusted \(UNABLE_TO_VERIF/);

    await helper.unload();
    await helper.load(nodes, flow(pki.ca));
    const statuses = statusesOf();
    (helper.getNode('t') as unknown as { receive: (m: unknown) => void }).receive({
      payload: { score: 0.3, isAnomaly: false },
    });
    const ok = await until(statuses, (s) => s.fill === 'green' && /^score/.test(s.text ?? ''));
    assert.match(ok.text ?? '', /^score 0\.30 · /);
    assert.ok(!statuses.some((s) => s.fill === 'red'), JSON.stringify(statuses));
  });
});
