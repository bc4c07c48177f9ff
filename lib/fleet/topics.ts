import { FleetError } from '../errors';

/**
 * The topics of one fleet under a root (default `edge-ai`):
 *
 *   <root>/<fleet>/models/<name>/manifest        retained signed manifest of the current version
 *   <root>/<fleet>/models/<name>/v<version>/<i>  retained chunk i of that version's files
 *   <root>/<fleet>/devices/<device>/models/<name> retained: the version a device runs (or refused)
 *   <root>/<fleet>/devices/<device>/online       retained "true" / "false" (last will)
 */

const SEGMENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

export function checkSegment(value: string, what: string): string {
  if (!SEGMENT.test(value)) {
    throw new FleetError(
      'setting-invalid',
      `${what} "${value}": use letters, digits, ".", "_" or "-" (max 100), starting with a letter or digit`,
    );
  }
  return value;
}

export class FleetTopics {
  readonly base: string;

  constructor(
    readonly fleet: string,
    readonly root = 'edge-ai',
  ) {
    checkSegment(fleet, 'fleet name');
    if (!root || /[#+]/.test(root) || root.startsWith('/') || root.endsWith('/')) {
      throw new FleetError(
        'setting-invalid',
        `topic root "${root}" must not be empty or hold # + or edge slashes`,
      );
    }
    this.base = `${root}/${fleet}`;
  }

  manifest(name: string): string {
    return `${this.base}/models/${name}/manifest`;
  }

  chunk(name: string, version: number, index: number): string {
    return `${this.base}/models/${name}/v${version}/${index}`;
  }

  chunks(name: string, version: number): string {
    return `${this.base}/models/${name}/v${version}/+`;
  }

  deviceModel(device: string, name: string): string {
    return `${this.base}/devices/${device}/models/${name}`;
  }

  deviceModels(name: string): string {
    return `${this.base}/devices/+/models/${name}`;
  }

  online(device: string): string {
    return `${this.base}/devices/${device}/online`;
  }
}

/** Whether `topic` matches the MQTT filter `filter` (+ one level, # the rest). */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}

/** `fleet:<name>`: the name of the fleet model an edge-model follows, else undefined. */
export function fleetSourceName(source: string): string | undefined {
  const match = /^fleet:(.+)$/.exec(source.trim());
  return match ? match[1].trim() : undefined;
}
