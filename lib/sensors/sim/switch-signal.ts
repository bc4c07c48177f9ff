/**
 * Drives a simulated GPIO line like a mechanical switch: it closes and opens at random
 * intervals around a mean period, and each change comes with a few milliseconds of contact
 * bounce, which is what the debounce setting exists for.
 */
import { type Clock, type TimerHandle, systemClock } from '../clock';
import { SeededRandom } from '../../util/random';
import type { GpioValue, SimulatedGpioLine } from '../gpio';

export interface SwitchSignalOptions {
  clock?: Clock;
  seed?: number;
  /** Mean time between changes, ms (default 2000). */
  meanPeriodMs?: number;
  /** Bounce flips per change (default 4; 0 = clean edges). */
  bounces?: number;
  /** Longest bounce interval, ms (default 2). */
  bounceMs?: number;
}

export class SwitchSignal {
  private readonly clock: Clock;
  private readonly rng: SeededRandom;
  private readonly meanPeriodMs: number;
  private readonly bounces: number;
  private readonly bounceMs: number;
  private timers = new Set<TimerHandle>();
  private state: GpioValue = 0;
  private stopped = false;
  /** While stuck the switch stops changing (fault injection). */
  stuck = false;

  constructor(
    private readonly line: SimulatedGpioLine,
    options: SwitchSignalOptions = {},
  ) {
    this.clock = options.clock ?? systemClock;
    this.rng = new SeededRandom(options.seed ?? 5);
    this.meanPeriodMs = options.meanPeriodMs ?? 2000;
    this.bounces = options.bounces ?? 4;
    this.bounceMs = options.bounceMs ?? 2;
    line.setLevel(this.state);
  }

  start(): void {
    this.schedule(() => this.toggle(), this.meanPeriodMs * (0.5 + this.rng.next()));
  }

  private schedule(fn: () => void, ms: number): void {
    if (this.stopped) return;
    const handle = this.clock.setTimer(() => {
      this.timers.delete(handle);
      fn();
    }, ms);
    this.timers.add(handle);
  }

  private toggle(): void {
    if (!this.stuck) {
      const target = (1 - this.state) as GpioValue;
      this.state = target;
      // Bounce: the contact flips back and forth a few times before it settles on `target`.
      let at = 0;
      for (let i = 0; i < this.bounces; i++) {
        at += this.rng.next() * this.bounceMs;
        const level = (i % 2 === 0 ? target : 1 - target) as GpioValue;
        this.schedule(() => this.line.setLevel(level), at);
      }
      this.schedule(() => this.line.setLevel(target), at + this.rng.next() * this.bounceMs);
    }
    this.start();
  }

  stop(): void {
    this.stopped = true;
    for (const handle of this.timers) this.clock.clearTimer(handle);
    this.timers.clear();
  }
}
