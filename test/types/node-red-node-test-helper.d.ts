declare module 'node-red-node-test-helper' {
  import type { Node } from 'node-red';
  interface Helper {
    init(runtimePath?: string, userSettings?: Record<string, unknown>): void;
    settings(userSettings?: Record<string, unknown>): Record<string, unknown>;
    load(nodes: unknown, flow: object[], credentials?: object, cb?: (err?: unknown) => void): Promise<void>;
    unload(): Promise<void>;
    getNode(id: string): Node & Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
    clearFlows(): Promise<void>;
    setFlows(flow: object[], type?: string, credentials?: object): Promise<void>;
    startServer(cb?: () => void): Promise<void>;
    stopServer(cb?: () => void): Promise<void>;
    url(): string;
    request(): unknown;
    log(): { args: unknown[][] } & Record<string, unknown>;
  }
  const helper: Helper;
  export = helper;
}
