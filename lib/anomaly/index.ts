/**
 * Streaming anomaly detection: the AnomalyDetector (statistical and neural methods, or a
 * supplied model), calibrated scores in [0, 1] and the episode decision.
 */
export * from './detector';
export { detectPayload, type PayloadResult } from './message';
