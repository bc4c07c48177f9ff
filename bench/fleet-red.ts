/**
 * Real Node-RED runtimes as fleet devices for bench:fleet: each a child process running node-red
 * with this package and a flow whose edge-model follows `fleet:<name>`. A runtime runs a version
 * once its edge-model has loaded it; it then reports it, retained, on devices/<id>/models/<name>.
 */
import type { FleetConnection } from '../lib/fleet/connection';
import { NodeRedProcess } from '../test/browser/harness';
import { printTable } from './cli';

interface Report {
  version: number;
  at: number;
}

const RUN_TIMEOUT_MS = 60_000;

export class RedDevices {
  readonly rows: string[][] = [];
  private readonly reports = new Map<string, Report>();
  private readonly waiters = new Set<() => void>();

  private constructor(
    readonly ids: string[],
    private readonly runtimes: NodeRedProcess[],
  ) {}

  /** Starts `count` runtimes on `publisher`'s broker and fleet; resolves once all are connected. */
  static async start(
    publisher: FleetConnection,
    count: number,
    publicKey: string,
    name: string,
  ): Promise<RedDevices> {
    const ids = Array.from({ length: count }, (_, i) => `red${i}`);
    const online = new Set<string>();
    const devices = new RedDevices(ids, []);
    await publisher.subscribe(publisher.topics.deviceModels(name), (topic, payload) => {
      const device = topic.split('/').slice(-3)[0];
      try {
        const report = JSON.parse(payload.toString()) as { version?: number };
        if (typeof report.version === 'number') {
          const had = devices.reports.get(device);
          if (!had || had.version !== report.version)
            devices.reports.set(device, { version: report.version, at: performance.now() });
          for (const wake of devices.waiters) wake();
        }
      } catch {
        // a cleared report
      }
    });
    await publisher.subscribe(`${publisher.topics.base}/devices/+/online`, (topic, payload) => {
      const device = topic.split('/').slice(-2)[0];
      if (payload.toString() === 'true') online.add(device);
      else online.delete(device);
      for (const wake of devices.waiters) wake();
    });
    const started = await Promise.allSettled(
      ids.map((id) =>
        NodeRedProcess.start({
          flows: [
            { id: 'tab', type: 'tab', label: 'fleet device' },
            {
              id: 'fleet',
              type: 'edge-fleet',
              broker: publisher.options.url,
              fleet: publisher.options.fleet,
              deviceId: id,
              publicKey,
              topicRoot: publisher.options.topicRoot ?? 'edge-ai',
            },
            { id: 'model', type: 'edge-model', name, source: `fleet:${name}`, fleet: 'fleet', warmup: 1 },
          ],
        }),
      ),
    );
    devices.runtimes.push(...started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : [])));
    const failed = started.find((r) => r.status === 'rejected');
    if (failed) {
      await devices.stop();
      throw (failed as PromiseRejectedResult).reason;
    }
    await devices.until(() => ids.every((id) => online.has(id)), 60_000, 'the Node-RED runtimes to connect');
    return devices;
  }

  /** Per runtime, ms from `since` until it runs fleet version `version`; then the slowest. */
  async runningAt(version: number, since: number): Promise<string[]> {
    const running = (id: string) => (this.reports.get(id)?.version ?? 0) >= version;
    try {
      await this.until(() => this.ids.every(running), RUN_TIMEOUT_MS, `version ${version} on every runtime`);
    } catch {
      // reported below as "not in ... s"
    }
    const times = this.ids.map((id) => (running(id) ? (this.reports.get(id) as Report).at - since : NaN));
    const cell = (ms: number) => (Number.isNaN(ms) ? `not in ${RUN_TIMEOUT_MS / 1000} s` : ms.toFixed(0));
    const errors = this.runtimes.flatMap((r) => r.errors());
    if (errors.length) console.log(`Node-RED errors:\n${errors.join('\n')}`);
    return [...times.map(cell), cell(Math.max(...times))];
  }

  print(): void {
    const header = ['Node-RED runtimes: roll-out', ...this.ids.map((id) => `${id} ms`), 'all ms'];
    printTable(header, this.rows);
    console.log(
      'Node-RED runtimes: times from the start of the publication until the runtime reports it runs the version',
    );
  }

  async stop(): Promise<void> {
    await Promise.all(this.runtimes.map((r) => r.stop()));
  }

  private until(done: () => boolean, ms: number, what: string): Promise<void> {
    if (done()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.delete(wake);
        reject(new Error(`timed out after ${ms} ms waiting for ${what}`));
      }, ms);
      const wake = (): void => {
        if (!done()) return;
        clearTimeout(timer);
        this.waiters.delete(wake);
        resolve();
      };
      this.waiters.add(wake);
    });
  }
}
