/**
 * Reads a SensorSource on a schedule: on an interval, as a start-up probe, and as retries after
 * a failure. A failing device is retried with backoff; a device that answered before and was
 * lost is probed at least every `lostProbeMs`, so a device that comes back is seen within about
 * that long instead of after the full backoff. Each distinct error is reported once per outage.
 */
import { type Clock, type TimerHandle, systemClock } from './clock';
import { isSensorError } from './errors';
import { Backoff, type SensorReading, type SensorSource } from './source';

export interface SensorPollerOptions {
  /** Read every this many ms; 0 = only on request (and the source's own readings). */
  intervalMs: number;
  /** Send the start-up probe's reading (GPIO's initial level). */
  emitInitial?: boolean;
  /** Delay before the first read, so the rest of a flow is started. Default 100 ms. */
  startDelayMs?: number;
  /** Retry delays for a failing device. Default: 1 s doubling to 30 s. */
  backoff?: Backoff;
  /** A device that answered before is probed at least this often while lost. Default 1000 ms. */
  lostProbeMs?: number;
  clock?: Clock;
}

export interface SensorPollerEvents {
  /** A reading; `emit` says whether it should be sent on (a probe's reading may not be). */
  reading(reading: SensorReading, emit: boolean): void;
  /** The device answers again after a failure. */
  recovered(): void;
  /**
   * A read outside a request failed. `retryMs` is when the next attempt runs (undefined when
   * none is scheduled); `report` is true the first time this error text is seen in an outage.
   */
  failed(err: unknown, retryMs: number | undefined, report: boolean): void;
  /** A replay reached its end; nothing more is read. */
  ended(err: Error): void;
}

export class SensorPoller {
  private readonly backoff: Backoff;
  private readonly clock: Clock;
  private readonly lostProbeMs: number;
  private timer: TimerHandle | undefined;
  private closed = false;
  private failing = false;
  private answered = false;
  private finished = false;
  private reportedError: string | undefined;

  constructor(
    private readonly source: SensorSource,
    private readonly options: SensorPollerOptions,
    private readonly events: SensorPollerEvents,
  ) {
    this.backoff = options.backoff ?? new Backoff(1000, 30_000);
    this.clock = options.clock ?? systemClock;
    this.lostProbeMs = options.lostProbeMs ?? 1000;
  }

  /** True while the device fails (since the last failure, until a read succeeds). */
  get isFailing(): boolean {
    return this.failing;
  }

  get isFinished(): boolean {
    return this.finished;
  }

  /**
   * Starts reading. Returns true when nothing is read until asked (the caller shows "waiting"):
   * an input-only source that is probed once at start, or a replay without its own timing.
   */
  start(): boolean {
    const { intervalMs, emitInitial = false } = this.options;
    const startDelay = this.options.startDelayMs ?? 100;
    if (this.source.start) {
      this.source.start((err, reading) => {
        if (this.closed) return;
        if (err) {
          if (isSensorError(err, 'END_OF_DATA')) return this.end(err);
          const retryMs = this.retryDelay(err);
          this.fail(err, retryMs);
          if (!this.timer) this.schedule(retryMs, emitInitial);
          return;
        }
        if (reading) {
          this.succeed();
          this.events.reading(reading, true);
        }
      });
    }
    if (intervalMs > 0) {
      this.schedule(startDelay, true);
      return false;
    }
    if (this.source.device !== 'csv') {
      // Input-only: probe once so the status tells at once whether the device is there.
      this.schedule(startDelay, emitInitial);
      return true;
    }
    return !this.source.start;
  }

  /** One read on request (an input message): errors are the caller's to report. */
  async readNow(): Promise<SensorReading> {
    try {
      const reading = await this.source.read();
      this.succeed();
      return reading;
    } catch (err) {
      this.failing = true;
      if (isSensorError(err, 'END_OF_DATA')) this.finished = true;
      throw err;
    }
  }

  /** Stops every timer and closes the source. */
  async close(): Promise<void> {
    this.closed = true;
    this.clock.clearTimer(this.timer);
    this.timer = undefined;
    await this.source.close();
  }

  /** The delay before the next attempt after `err`. */
  private retryDelay(err: unknown): number {
    const delay = this.backoff.next();
    // A device that was there and is lost is probed often; one never seen waits the backoff.
    return this.answered && !isSensorError(err, 'NO_HARDWARE') ? Math.min(delay, this.lostProbeMs) : delay;
  }

  private succeed(): void {
    this.answered = true;
    if (this.failing) {
      this.failing = false;
      this.reportedError = undefined;
      this.events.recovered();
    }
    this.backoff.reset();
  }

  private fail(err: unknown, retryMs: number | undefined): void {
    this.failing = true;
    const text = err instanceof Error ? err.message : String(err);
    const report = text !== this.reportedError;
    this.reportedError = text;
    this.events.failed(err, retryMs, report);
  }

  private end(err: Error): void {
    this.finished = true;
    this.events.ended(err);
  }

  private schedule(delayMs: number, emit: boolean): void {
    this.clock.clearTimer(this.timer);
    this.timer = undefined;
    if (this.closed) return;
    this.timer = this.clock.setTimer(() => void this.tick(emit), delayMs);
  }

  /** One read outside a request: on the interval, at start, or as a retry. */
  private async tick(emit: boolean): Promise<void> {
    this.timer = undefined;
    if (this.closed || this.finished) return;
    const started = this.clock.now();
    const interval = this.options.intervalMs;
    try {
      const reading = await this.source.read();
      if (this.closed) return;
      this.succeed();
      this.events.reading(reading, emit);
      if (interval > 0) this.schedule(Math.max(0, interval - (this.clock.now() - started)), true);
    } catch (err) {
      if (this.closed) return;
      if (isSensorError(err, 'END_OF_DATA')) return this.end(err);
      const retryMs = this.retryDelay(err);
      this.fail(err, retryMs);
      // Periodic reads send what they read; a start-up probe re-sends only for GPIO's initial level.
      this.schedule(retryMs, interval > 0 || emit);
    }
  }
}

function formatValue(value: number): string {
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 0.01 || abs >= 1e5) ? value.toExponential(2) : String(Number(value.toFixed(2)));
}

/** A short status line for a reading: "21.4°C 40.1%RH 1012.8hPa". */
export function readingSummary(reading: SensorReading): string {
  if (typeof reading.payload === 'number') return String(reading.payload);
  return Object.entries(reading.payload)
    .map(([key, value]) => `${formatValue(value)}${reading.units[key] || ` ${key}`}`)
    .join(' ');
}
