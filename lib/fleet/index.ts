export * from './keys';
export * from './topics';
export * from './connection';
export * from './embedded-broker';
export * from './manifest';
export * from './rollout';
export * from './telemetry';
