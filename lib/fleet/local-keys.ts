import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { FleetError } from '../errors';
import { generateFleetKeys, type FleetKeyPair } from './keys';
import { checkSegment } from './topics';

/**
 * A fleet key pair generated once and kept on this machine (`<dir>/<fleet>.json`, readable by
 * its owner only): for a fleet that lives on one machine (the embedded broker, an example, a
 * test bench) and so needs no key to be copied anywhere. A real fleet keeps the signing key
 * where models are published from and gives the devices only the public key.
 */
export function localFleetKeys(dir: string, fleet: string): FleetKeyPair {
  const file = path.join(dir, `${checkSegment(fleet, 'fleet name')}.json`);
  try {
    const kept = JSON.parse(readFileSync(file, 'utf8')) as Partial<FleetKeyPair>;
    if (typeof kept.publicKey === 'string' && typeof kept.privateKey === 'string') {
      return { publicKey: kept.publicKey, privateKey: kept.privateKey };
    }
    throw new FleetError('fleet-key-invalid', `${file} holds no fleet key pair`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') {
      if (err instanceof FleetError) throw err;
      throw new FleetError('fleet-key-invalid', `${file}: ${(err as Error).message}`);
    }
  }
  const keys = generateFleetKeys();
  mkdirSync(dir, { recursive: true });
  const tmp = `${file}.${process.pid}.tmp`;
  writeFileSync(tmp, `${JSON.stringify(keys)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return keys;
}
