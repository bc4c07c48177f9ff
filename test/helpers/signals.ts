/**
 * Seeded synthetic sensor signals with injected faults (spike, drift, stuck value, vibration
 * growth) for detector tests: a small stand-in with the same fault shapes the device
 * simulators produce, so the detector tests do not depend on them.
 */

import { gaussian, seededRandom } from '../../lib/util/random';

/** The package's seeded generator, under the short name the detector tests use. */
export { seededRandom as prng, gaussian };

export type Fault = 'none' | 'spike' | 'drift' | 'stuck' | 'vibration';

export const CHANNELS = ['temperature', 'humidity', 'vibration'];

/**
 * A machine room sensor at 1 sample/s: temperature wandering slowly around 21 °C, humidity
 * around 45 %, and a raw vibration signal (a 7-sample tone plus noise). The fault starts at
 * sample `onset` (`wander` false keeps the temperature level fixed): spike (one temperature sample +3 °C), drift (humidity rising 0.02 %/sample),
 * stuck (humidity frozen), vibration (amplitude growing 1 %/sample).
 */
export function sensorSignal(
  n: number,
  fault: Fault,
  onset: number,
  seed: number,
  wander = true,
): Record<string, number>[] {
  const g = gaussian(seededRandom(seed));
  const out: Record<string, number>[] = [];
  let level = 0;
  let frozen = NaN;
  for (let t = 0; t < n; t++) {
    level = 0.995 * level + 0.02 * g();
    let temperature = 21 + (wander ? level : 0) + 0.1 * g();
    let humidity = 45 + 0.3 * g();
    let amplitude = 1;
    const after = t >= onset;
    if (after && fault === 'spike' && t === onset) temperature += 3;
    if (after && fault === 'drift') humidity += 0.02 * (t - onset);
    if (after && fault === 'stuck') {
      if (Number.isNaN(frozen)) frozen = humidity;
      humidity = frozen;
    }
    if (after && fault === 'vibration') amplitude += 0.01 * (t - onset);
    const vibration = amplitude * (Math.sin((2 * Math.PI * t) / 7) + 0.3 * g());
    out.push({ temperature, humidity, vibration });
  }
  return out;
}

/** Deterministic pseudo-random values in [-0.5, 0.5) so every run and backend sees identical inputs. */
export function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}
