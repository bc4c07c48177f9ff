/** Maps a message payload (any numeric shape) onto a detector call; shared by the node and the benchmark. */

import { InputError, toMatrix } from '../preprocess/numeric-input';
import type { AnomalyDetector, DetectorResult } from './detector';

export interface PayloadResult extends DetectorResult {
  /** Per-row results when the payload held several timesteps. */
  rows?: { score: number; isAnomaly: boolean }[];
}

/**
 * Scores one payload: a single sample (number, array, typed array, object of named numbers)
 * or a 2-D array of consecutive samples. Object channels follow `channels` when configured,
 * else the detector's learned channel order, else the payload's own key order.
 */
export function detectPayload(
  detector: AnomalyDetector,
  payload: unknown,
  timestamp: number,
  channels?: readonly string[],
): Promise<PayloadResult> {
  let matrix;
  try {
    const names = channels && channels.length ? channels : (detector.channelNames ?? undefined);
    matrix = toMatrix(payload, names);
  } catch (err) {
    return Promise.reject(err instanceof Error ? err : new InputError(String(err)));
  }
  if (matrix.rows.length === 1) return detector.process(matrix.rows[0], matrix.channels, timestamp);
  return detector.processRows(matrix.rows, matrix.channels, timestamp);
}
