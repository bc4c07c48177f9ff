import path from 'node:path';

/**
 * The development data beside the checkout (../shared). EDGE_SHARED_DIR names it when the tests
 * run from a copy elsewhere (scripts/test-node22.sh runs them from .node22/run).
 */
export function sharedDir(...parts: string[]): string {
  const root = process.env.EDGE_SHARED_DIR ?? path.resolve(__dirname, '..', '..', '..', '..', 'shared');
  return path.join(root, ...parts);
}
