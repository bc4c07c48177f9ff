import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KeyObject } from 'node:crypto';
import { FleetConnection } from '../../lib/fleet/connection';
import { generateFleetKeys, readPrivateKey, readPublicKey } from '../../lib/fleet/keys';
import { mosquittoMissing, startEmbedded, startMosquitto, type TestBroker } from './mqtt-brokers';

/** A fleet key pair for tests: the key objects and their base64 text. */
export function testFleetKeys(): {
  privateKey: KeyObject;
  publicKey: KeyObject;
  text: { privateKey: string; publicKey: string };
} {
  const text = generateFleetKeys();
  return { privateKey: readPrivateKey(text.privateKey), publicKey: readPublicKey(text.publicKey), text };
}

export type BrokerKind = 'embedded' | 'mosquitto';

/**
 * The set-up fleet tests over a broker share, as mocha hooks of the calling `describe`: the broker
 * (Mosquitto skipped with its reason when it is not installed), a temp directory and a fresh
 * fleet name per test, and everything pushed on `open` closed after each test, last first.
 */
export interface FleetBed {
  readonly broker: TestBroker;
  readonly dir: string;
  readonly fleet: string;
  readonly open: { close(): Promise<void> }[];
  /** A connection of device `deviceId` to the test's fleet, connected, closed after the test. */
  connect(deviceId: string): Promise<FleetConnection>;
}

export function fleetBed(kind: BrokerKind, prefix: string): FleetBed {
  let broker: TestBroker | undefined;
  let dir = '';
  let fleet = '';
  let seq = 0;
  const open: { close(): Promise<void> }[] = [];

  before(async function () {
    if (kind === 'mosquitto') {
      const missing = mosquittoMissing();
      if (missing) {
        console.log(`      skipped: ${missing}`);
        this.skip();
      }
    }
    broker = kind === 'embedded' ? await startEmbedded() : await startMosquitto();
  });
  after(async () => broker?.stop());
  beforeEach(async () => {
    dir = await fs.mkdtemp(path.join(os.tmpdir(), `${prefix}-`));
    fleet = `${prefix}${process.pid}-${Date.now()}-${seq++}`;
  });
  afterEach(async () => {
    for (const o of open.splice(0).reverse()) await o.close();
    await fs.rm(dir, { recursive: true, force: true });
  });

  return {
    get broker() {
      if (!broker) throw new Error('the broker is not started yet');
      return broker;
    },
    get dir() {
      return dir;
    },
    get fleet() {
      return fleet;
    },
    open,
    async connect(deviceId: string): Promise<FleetConnection> {
      const connection = new FleetConnection({ url: this.broker.url, fleet, deviceId, reconnectMs: 200 });
      open.push(connection);
      await connection.waitConnected();
      return connection;
    },
  };
}
