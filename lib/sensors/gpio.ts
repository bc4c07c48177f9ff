/**
 * GPIO digital inputs: the line interface, the Linux implementation on `onoff` (sysfs), a
 * simulated line with the same edge and debounce behaviour, and the mapping of BCM pin numbers
 * to sysfs GPIO numbers by the gpiochip base (512 and up on recent Raspberry Pi OS kernels).
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { type Clock, type TimerHandle, systemClock } from './clock';
import { SensorError, osErrorCode } from './errors';

export type GpioEdge = 'none' | 'rising' | 'falling' | 'both';
export type GpioPull = 'none' | 'up' | 'down';
export type GpioValue = 0 | 1;
export type GpioListener = (err: Error | null, value: GpioValue) => void;

export interface GpioLineOptions {
  /** Which changes call the watchers (default both). */
  edge?: GpioEdge;
  /** Report a change only after the line has been quiet this long (ms); 0 = off. */
  debounceMs?: number;
  /** Invert: a low pin reads 1 (a button to ground with a pull-up). */
  activeLow?: boolean;
  /** Internal pull resistor, where the platform lets it be set. */
  pull?: GpioPull;
}

export interface GpioLine {
  /** BCM pin number. */
  readonly pin: number;
  readonly simulated: boolean;
  read(): Promise<GpioValue>;
  /** Calls `listener` on every debounced change the edge setting selects. */
  watch(listener: GpioListener): void;
  close(): Promise<void>;
}

export const GPIO_EDGES: readonly GpioEdge[] = ['none', 'rising', 'falling', 'both'];

function checkOptions(pin: number, options: GpioLineOptions): Required<GpioLineOptions> {
  if (!Number.isInteger(pin) || pin < 0 || pin > 63) {
    throw new SensorError('BAD_CONFIG', `GPIO pin ${pin} is not a BCM pin number 0..63`);
  }
  const o: Required<GpioLineOptions> = {
    edge: 'both',
    debounceMs: 0,
    activeLow: false,
    pull: 'none',
    ...options,
  };
  if (!GPIO_EDGES.includes(o.edge))
    throw new SensorError('BAD_CONFIG', `GPIO edge ${String(o.edge)} is not ${GPIO_EDGES.join(', ')}`);
  if (!Number.isFinite(o.debounceMs) || o.debounceMs < 0) {
    throw new SensorError('BAD_CONFIG', `GPIO debounce ${o.debounceMs} ms is not a number >= 0`);
  }
  if (!['none', 'up', 'down'].includes(o.pull))
    throw new SensorError('BAD_CONFIG', `GPIO pull ${String(o.pull)} is not none, up or down`);
  return o;
}

// ---------------------------------------------------------------------------------------------
// BCM -> sysfs numbering

export interface GpioChipInfo {
  /** Directory name, e.g. gpiochip512. */
  name: string;
  base: number;
  ngpio: number;
  label: string;
}

export interface GpioSysfsOptions {
  /** Root of the sysfs tree (tests build a fake one). Default /sys. */
  sysfsRoot?: string;
  /** Label of the chip that holds the BCM pins, when the default choice is wrong. */
  chipLabel?: string;
}

function readTrimmed(file: string): string {
  return fs.readFileSync(file, 'utf8').trim();
}

/** The gpiochips sysfs lists, with base, size and label. */
export function listGpioChips(sysfsRoot = '/sys'): GpioChipInfo[] {
  const dir = path.join(sysfsRoot, 'class', 'gpio');
  if (!fs.existsSync(dir)) {
    throw new SensorError(
      'NO_HARDWARE',
      `no GPIO on this machine (${dir} not found); tick "Simulate (no hardware)"`,
      'ENOENT',
      'gpio-missing',
    );
  }
  return fs
    .readdirSync(dir)
    .filter((name) => /^gpiochip\d+$/.test(name))
    .map((name) => {
      const chip = path.join(dir, name);
      return {
        name,
        base: Number(readTrimmed(path.join(chip, 'base'))),
        ngpio: Number(readTrimmed(path.join(chip, 'ngpio'))),
        label: fs.existsSync(path.join(chip, 'label')) ? readTrimmed(path.join(chip, 'label')) : '',
      };
    })
    .filter((chip) => Number.isInteger(chip.base) && Number.isInteger(chip.ngpio))
    .sort((a, b) => a.base - b.base);
}

/** Pin controllers of the Raspberry Pi SoCs (BCM2835/6/7, BCM2711, BCM2712 and the Pi 5's RP1). */
const SOC_LABEL = /^pinctrl-(bcm2835|bcm2711|bcm2712|rp1)$/;

/**
 * The chip whose lines are the BCM pins: the one labelled `chipLabel` if given, else the
 * Raspberry Pi SoC pin controller, else any "pinctrl-" chip, else the only chip there is.
 */
export function findMainGpioChip(chips: GpioChipInfo[], chipLabel?: string): GpioChipInfo {
  if (chipLabel) {
    const chip = chips.find((c) => c.label === chipLabel || c.name === chipLabel);
    if (!chip) {
      throw new SensorError(
        'NO_HARDWARE',
        `no gpiochip labelled "${chipLabel}"; found ${chips.map((c) => `${c.name} (${c.label})`).join(', ') || 'none'}`,
        undefined,
        'gpio-missing',
      );
    }
    return chip;
  }
  const chip =
    chips.find((c) => SOC_LABEL.test(c.label)) ??
    chips.find((c) => c.label.startsWith('pinctrl-')) ??
    (chips.length === 1 ? chips[0] : undefined);
  if (!chip) {
    throw new SensorError(
      'NO_HARDWARE',
      chips.length === 0
        ? 'no GPIO chip on this machine; tick "Simulate (no hardware)"'
        : `cannot tell which gpiochip holds the BCM pins among ${chips.map((c) => `${c.name} (${c.label})`).join(', ')}; set the chip label`,
      undefined,
      'gpio-missing',
    );
  }
  return chip;
}

/** The sysfs GPIO number of BCM pin `bcm`: the main chip's base plus the pin. */
export function bcmToSysfs(bcm: number, options: GpioSysfsOptions = {}): number {
  const chip = findMainGpioChip(listGpioChips(options.sysfsRoot), options.chipLabel);
  if (!Number.isInteger(bcm) || bcm < 0 || bcm >= chip.ngpio) {
    throw new SensorError(
      'BAD_CONFIG',
      `GPIO pin ${bcm} is not on ${chip.label || chip.name} (0..${chip.ngpio - 1})`,
    );
  }
  return chip.base + bcm;
}

// ---------------------------------------------------------------------------------------------
// Pull resistors: sysfs cannot set them; the Pi's own tools can.

export type CommandRunner = (command: string, args: string[]) => Promise<void>;

const defaultRunner: CommandRunner = (command, args) =>
  new Promise((resolve, reject) => {
    execFile(command, args, { timeout: 3000 }, (err) => (err ? reject(err) : resolve()));
  });

/**
 * Sets the pull resistor of BCM pin `bcm` with `pinctrl` (Raspberry Pi OS Bookworm) or
 * `raspi-gpio` (older releases). Resolves to the tool used, or undefined with the reason when
 * the platform has neither (use an external resistor or a dtoverlay then).
 */
export async function setGpioPull(
  bcm: number,
  pull: GpioPull,
  run: CommandRunner = defaultRunner,
): Promise<{ tool?: string; reason?: string }> {
  if (pull === 'none') return {};
  const flag = pull === 'up' ? 'pu' : 'pd';
  const reasons: string[] = [];
  for (const [tool, args] of [
    ['pinctrl', ['set', String(bcm), 'ip', flag]],
    ['raspi-gpio', ['set', String(bcm), 'ip', flag]],
  ] as Array<[string, string[]]>) {
    try {
      await run(tool, args);
      return { tool };
    } catch (err) {
      reasons.push(
        `${tool}: ${osErrorCode(err) === 'ENOENT' ? 'not installed' : err instanceof Error ? err.message : String(err)}`,
      );
    }
  }
  return {
    reason: `pull-${pull} not set (${reasons.join('; ')}); use an external resistor or a gpio dtoverlay`,
  };
}

// ---------------------------------------------------------------------------------------------
// The Linux line on onoff

interface OnoffGpio {
  read(): Promise<GpioValue>;
  watch(callback: (err: Error | null | undefined, value: GpioValue) => void): void;
  unwatchAll(): void;
  unexport(): void;
}
interface OnoffModule {
  Gpio: {
    new (
      gpio: number,
      direction: 'in',
      edge: GpioEdge,
      options: { debounceTimeout?: number; activeLow?: boolean },
    ): OnoffGpio;
    accessible: boolean;
  };
}

export interface OpenGpioOptions extends GpioSysfsOptions {
  loadModule?: () => OnoffModule;
  runCommand?: CommandRunner;
  /** Told when a requested pull resistor could not be set. */
  onWarning?: (message: string) => void;
}

/** Opens BCM pin `pin` as an input through sysfs; a plain "no GPIO on this machine" where there is none. */
export async function openGpioLine(
  pin: number,
  options: GpioLineOptions = {},
  open: OpenGpioOptions = {},
): Promise<GpioLine> {
  const o = checkOptions(pin, options);
  const sysfsNumber = bcmToSysfs(pin, open);
  let onoff: OnoffModule;
  try {
    onoff = (open.loadModule ?? (() => require('onoff') as OnoffModule))();
  } catch (err) {
    throw new SensorError(
      'NO_HARDWARE',
      `GPIO is not available: the optional module onoff could not be loaded (${err instanceof Error ? err.message : String(err)}); run "npm install onoff" on the board`,
      undefined,
      'gpio-module-missing',
    );
  }
  if (!onoff.Gpio.accessible) {
    throw new SensorError(
      'NO_ACCESS',
      'GPIO sysfs is not writable here; add the Node-RED user to the "gpio" group',
    );
  }
  const pullResult = await setGpioPull(pin, o.pull, open.runCommand);
  if (pullResult.reason) open.onWarning?.(pullResult.reason);
  let gpio: OnoffGpio;
  try {
    gpio = new onoff.Gpio(sysfsNumber, 'in', o.edge, {
      debounceTimeout: o.debounceMs,
      activeLow: o.activeLow,
    });
  } catch (err) {
    const code = osErrorCode(err);
    throw new SensorError(
      code === 'EACCES' ? 'NO_ACCESS' : 'DEVICE_UNAVAILABLE',
      `cannot open GPIO ${pin} (sysfs ${sysfsNumber}): ${err instanceof Error ? err.message : String(err)}`,
      code,
    );
  }
  return new LinuxGpioLine(pin, gpio);
}

class LinuxGpioLine implements GpioLine {
  readonly simulated = false;
  private closed = false;

  constructor(
    readonly pin: number,
    private readonly gpio: OnoffGpio,
  ) {}

  read(): Promise<GpioValue> {
    if (this.closed)
      return Promise.reject(new SensorError('DEVICE_UNAVAILABLE', `GPIO ${this.pin} is closed`));
    return this.gpio.read();
  }

  watch(listener: GpioListener): void {
    this.gpio.watch((err, value) => listener(err ?? null, value));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.gpio.unwatchAll();
    this.gpio.unexport();
  }
}

// ---------------------------------------------------------------------------------------------
// Simulated line

/**
 * A GPIO input whose pin level the test (or a signal generator) drives. Edge selection,
 * active-low and debounce behave as onoff's do: with debounce, the value is read once the line
 * has been quiet for the debounce time and reported if its edge is selected.
 */
export class SimulatedGpioLine implements GpioLine {
  readonly simulated = true;
  private readonly o: Required<GpioLineOptions>;
  private readonly listeners: GpioListener[] = [];
  private level: GpioValue | undefined;
  private debounceTimer: TimerHandle | undefined;
  private closed = false;
  /** While true, reads fail as if the line had gone (fault injection). */
  gone = false;

  constructor(
    readonly pin: number,
    options: GpioLineOptions = {},
    private readonly clock: Clock = systemClock,
  ) {
    this.o = checkOptions(pin, options);
  }

  /** Electrical level at the pin: 0, 1, or undefined when nothing drives it (the pull decides). */
  get pinLevel(): GpioValue {
    if (this.level !== undefined) return this.level;
    return this.o.pull === 'up' ? 1 : 0;
  }

  /** Logical value as read (after active-low). */
  get value(): GpioValue {
    return (this.o.activeLow ? 1 - this.pinLevel : this.pinLevel) as GpioValue;
  }

  /** Drives the pin (or releases it with undefined). */
  setLevel(level: GpioValue | undefined): void {
    const before = this.value;
    this.level = level;
    if (this.closed || this.value === before || this.o.edge === 'none') return;
    if (this.o.debounceMs > 0) {
      this.clock.clearTimer(this.debounceTimer);
      this.debounceTimer = this.clock.setTimer(() => {
        this.debounceTimer = undefined;
        this.interrupt();
      }, this.o.debounceMs);
    } else {
      this.interrupt();
    }
  }

  private interrupt(): void {
    if (this.closed || this.gone) return;
    const value = this.value;
    const rising = this.o.edge === 'rising' || this.o.edge === 'both';
    const falling = this.o.edge === 'falling' || this.o.edge === 'both';
    if ((value === 1 && rising) || (value === 0 && falling)) {
      for (const listener of this.listeners.slice()) listener(null, value);
    }
  }

  async read(): Promise<GpioValue> {
    if (this.closed) throw new SensorError('DEVICE_UNAVAILABLE', `GPIO ${this.pin} is closed`);
    if (this.gone)
      throw Object.assign(new Error(`ENODEV: GPIO ${this.pin} is not available`), { code: 'ENODEV' });
    return this.value;
  }

  watch(listener: GpioListener): void {
    this.listeners.push(listener);
  }

  listenerCount(): number {
    return this.listeners.length;
  }

  isClosed(): boolean {
    return this.closed;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.clock.clearTimer(this.debounceTimer);
    this.debounceTimer = undefined;
    this.listeners.length = 0;
  }
}
