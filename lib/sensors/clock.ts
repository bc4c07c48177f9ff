/**
 * Time as the sensor layer sees it. Drivers wait for conversions and simulators compute their
 * signals through a Clock, so tests can run minutes of simulated wear in milliseconds.
 */

export type TimerHandle = { readonly id: number };

export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Resolves after `ms` milliseconds of this clock's time. */
  sleep(ms: number): Promise<void>;
  /** Calls `fn` once after `ms` milliseconds of this clock's time. */
  setTimer(fn: () => void, ms: number): TimerHandle;
  clearTimer(handle: TimerHandle | undefined): void;
}

class SystemClock implements Clock {
  private readonly timers = new Map<number, NodeJS.Timeout>();
  private nextId = 1;

  now(): number {
    return Date.now();
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(
      id,
      setTimeout(
        () => {
          this.timers.delete(id);
          fn();
        },
        Math.max(0, ms),
      ),
    );
    return { id };
  }

  clearTimer(handle: TimerHandle | undefined): void {
    if (!handle) return;
    clearTimeout(this.timers.get(handle.id));
    this.timers.delete(handle.id);
  }
}

/** The wall clock with real timers. */
export const systemClock: Clock = new SystemClock();

/**
 * A manual clock. Time moves only through advance() or sleep(); sleeping advances the clock
 * at once (time passes because someone waits), and timers fire in due order as time passes.
 */
export class SimClock implements Clock {
  private time: number;
  private nextId = 1;
  private readonly timers = new Map<number, { due: number; fn: () => void }>();

  constructor(startMs = Date.UTC(2024, 5, 1, 0, 0, 0)) {
    this.time = startMs;
  }

  now(): number {
    return this.time;
  }

  async sleep(ms: number): Promise<void> {
    this.advance(ms);
  }

  setTimer(fn: () => void, ms: number): TimerHandle {
    const id = this.nextId++;
    this.timers.set(id, { due: this.time + Math.max(0, ms), fn });
    return { id };
  }

  clearTimer(handle: TimerHandle | undefined): void {
    if (handle) this.timers.delete(handle.id);
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way, in order. */
  advance(ms: number): void {
    const target = this.time + Math.max(0, ms);
    for (;;) {
      let nextId = -1;
      let nextDue = Infinity;
      for (const [id, timer] of this.timers) {
        if (timer.due <= target && timer.due < nextDue) {
          nextDue = timer.due;
          nextId = id;
        }
      }
      if (nextId < 0) break;
      const timer = this.timers.get(nextId)!;
      this.timers.delete(nextId);
      this.time = Math.max(this.time, timer.due);
      timer.fn();
    }
    this.time = target;
  }

  /** Number of timers not yet fired (tests check that close() cancels them). */
  pendingTimers(): number {
    return this.timers.size;
  }
}
