// Makes an Ed25519 key pair for a fleet: the public key goes into every device's edge-fleet
// configuration, the private key only into the one that rolls models out (its Signing key
// credential). With a directory argument, also writes fleet-public.key and fleet-private.key
// (mode 600) there.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { generateFleetKeys } = require(path.join(root, 'dist/lib/fleet/keys.js'));

const keys = generateFleetKeys();
const dir = process.argv[2];
if (dir) {
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, 'fleet-public.key'), `${keys.publicKey}\n`);
  fs.writeFileSync(path.join(dir, 'fleet-private.key'), `${keys.privateKey}\n`, { mode: 0o600 });
  console.log(
    `wrote ${path.join(dir, 'fleet-public.key')} and ${path.join(dir, 'fleet-private.key')} (mode 600)`,
  );
}
console.log(`public key (every device):\n  ${keys.publicKey}`);
console.log(
  `private key (signing key, keep secret, only where models are rolled out):\n  ${keys.privateKey}`,
);
