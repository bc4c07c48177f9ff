import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  sign,
  verify,
  type KeyObject,
} from 'node:crypto';
import { FleetError } from '../errors';

/**
 * Ed25519 keys of a fleet. The private key signs model manifests and stays with whoever rolls
 * models out (in Node-RED: the edge-fleet node's credentials, never the flow JSON); every device
 * holds only the public key. Keys travel as one line of base64 (DER: PKCS#8 private, SPKI
 * public) so they paste into a form field; PEM is accepted too.
 */

export interface FleetKeyPair {
  /** SPKI DER, base64. */
  publicKey: string;
  /** PKCS#8 DER, base64. Keep it secret. */
  privateKey: string;
}

export function generateFleetKeys(): FleetKeyPair {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  return {
    publicKey: publicKey.export({ type: 'spki', format: 'der' }).toString('base64'),
    privateKey: privateKey.export({ type: 'pkcs8', format: 'der' }).toString('base64'),
  };
}

function checkEd25519(key: KeyObject, which: string): KeyObject {
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new FleetError(
      'fleet-key-invalid',
      `the fleet ${which} key is ${key.asymmetricKeyType}, not Ed25519`,
    );
  }
  return key;
}

export function readPrivateKey(text: string): KeyObject {
  const trimmed = text.trim();
  try {
    const key = trimmed.startsWith('-----')
      ? createPrivateKey(trimmed)
      : createPrivateKey({ key: Buffer.from(trimmed, 'base64'), format: 'der', type: 'pkcs8' });
    return checkEd25519(key, 'signing');
  } catch (err) {
    if (err instanceof FleetError) throw err;
    throw new FleetError('fleet-key-invalid', 'the fleet signing key is not an Ed25519 private key');
  }
}

export function readPublicKey(text: string): KeyObject {
  const trimmed = text.trim();
  try {
    const key = trimmed.startsWith('-----')
      ? createPublicKey(trimmed)
      : createPublicKey({ key: Buffer.from(trimmed, 'base64'), format: 'der', type: 'spki' });
    return checkEd25519(key, 'public');
  } catch (err) {
    if (err instanceof FleetError) throw err;
    throw new FleetError('fleet-key-invalid', 'the fleet public key is not an Ed25519 public key');
  }
}

/** The public key belonging to a private key. */
export function publicKeyOf(privateKey: KeyObject): KeyObject {
  return createPublicKey(privateKey);
}

/** A short fingerprint naming a public key in manifests and messages (16 hex digits). */
export function keyIdOf(publicKey: KeyObject): string {
  const der = publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('hex').slice(0, 16);
}

export function signBytes(data: Uint8Array, privateKey: KeyObject): string {
  return sign(null, data, privateKey).toString('base64');
}

export function verifyBytes(data: Uint8Array, signature: string, publicKey: KeyObject): boolean {
  try {
    return verify(null, data, publicKey, Buffer.from(signature, 'base64'));
  } catch {
    return false;
  }
}
