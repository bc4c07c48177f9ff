import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  SimClock,
  SimulatedGpioLine,
  type GpioValue,
  bcmToSysfs,
  createSimulatedSource,
  findMainGpioChip,
  isSensorError,
  listGpioChips,
  openGpioLine,
  setGpioPull,
} from '../../lib/sensors';

function collect(line: SimulatedGpioLine): GpioValue[] {
  const seen: GpioValue[] = [];
  line.watch((err, value) => {
    assert.equal(err, null);
    seen.push(value);
  });
  return seen;
}

/** A bouncing press: the contact chatters for a few ms before settling on `level`. */
function bounce(line: SimulatedGpioLine, clock: SimClock, level: GpioValue): void {
  const other = (1 - level) as GpioValue;
  for (const l of [level, other, level, other, level]) {
    line.setLevel(l);
    clock.advance(1);
  }
}

describe('GPIO line (simulated)', () => {
  it('reports every selected edge without debounce, bounces included', () => {
    const clock = new SimClock();
    const line = new SimulatedGpioLine(17, { edge: 'both' }, clock);
    const seen = collect(line);
    bounce(line, clock, 1);
    assert.deepEqual(seen, [1, 0, 1, 0, 1]);
  });

  it('debounces: one report per press once the line is quiet', () => {
    const clock = new SimClock();
    const line = new SimulatedGpioLine(17, { edge: 'both', debounceMs: 10 }, clock);
    const seen = collect(line);
    bounce(line, clock, 1);
    assert.deepEqual(seen, [], 'nothing before the line has been quiet for 10 ms');
    clock.advance(10);
    assert.deepEqual(seen, [1]);
    bounce(line, clock, 0);
    clock.advance(10);
    assert.deepEqual(seen, [1, 0]);
  });

  it('reports only rising or only falling edges when asked', () => {
    const clock = new SimClock();
    const rising = new SimulatedGpioLine(5, { edge: 'rising', debounceMs: 5 }, clock);
    const falling = new SimulatedGpioLine(6, { edge: 'falling', debounceMs: 5 }, clock);
    const none = new SimulatedGpioLine(7, { edge: 'none' }, clock);
    const [up, down, quiet] = [collect(rising), collect(falling), collect(none)];
    for (const level of [1, 0, 1, 0] as GpioValue[]) {
      for (const line of [rising, falling, none]) bounce(line, clock, level);
      clock.advance(5);
    }
    assert.deepEqual(up, [1, 1]);
    assert.deepEqual(down, [0, 0]);
    assert.deepEqual(quiet, []);
  });

  it('inverts with active-low and reads the pull level of an undriven pin', async () => {
    const clock = new SimClock();
    const button = new SimulatedGpioLine(4, { activeLow: true, pull: 'up' }, clock);
    assert.equal(await button.read(), 0, 'released: pulled high, reads 0 active-low');
    button.setLevel(0);
    assert.equal(await button.read(), 1, 'pressed to ground reads 1');
    const pulledDown = new SimulatedGpioLine(4, { pull: 'down' }, clock);
    assert.equal(await pulledDown.read(), 0);
  });

  it('close cancels a pending debounce and drops the watchers', async () => {
    const clock = new SimClock();
    const line = new SimulatedGpioLine(17, { debounceMs: 20 }, clock);
    const seen = collect(line);
    line.setLevel(1);
    assert.equal(clock.pendingTimers(), 1);
    await line.close();
    assert.equal(clock.pendingTimers(), 0);
    clock.advance(50);
    assert.deepEqual(seen, []);
    await assert.rejects(line.read(), /closed/);
  });

  it('a simulated GPIO source drives a bouncing switch and stops it on close', async () => {
    const clock = new SimClock();
    const source = createSimulatedSource('gpio', {
      clock,
      gpio: { pin: 22, edge: 'both', debounceMs: 10 },
      sim: { seed: 4, switchPeriodMs: 1000 },
    });
    const readings: number[] = [];
    source.start!((err, reading) => {
      assert.equal(err, null);
      readings.push(reading!.payload as number);
    });
    await source.read();
    clock.advance(10_000);
    assert.ok(readings.length >= 5, `${readings.length} debounced changes in 10 s`);
    readings.forEach((v, i) => i > 0 && assert.notEqual(v, readings[i - 1], 'debounced changes alternate'));
    await source.close();
    assert.equal(clock.pendingTimers(), 0, 'switch and debounce timers cancelled');
    assert.ok(source.line!.isClosed());
  });
});

/** Builds /sys/class/gpio with the given chips, as the kernel shows them. */
function fakeSysfs(chips: Array<{ base: number; ngpio: number; label: string }>): string {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-sysfs-'));
  const gpio = path.join(root, 'class', 'gpio');
  fs.mkdirSync(gpio, { recursive: true });
  fs.writeFileSync(path.join(gpio, 'export'), '');
  for (const chip of chips) {
    const dir = path.join(gpio, `gpiochip${chip.base}`);
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'base'), `${chip.base}\n`);
    fs.writeFileSync(path.join(dir, 'ngpio'), `${chip.ngpio}\n`);
    fs.writeFileSync(path.join(dir, 'label'), `${chip.label}\n`);
  }
  return root;
}

describe('BCM to sysfs GPIO numbers', () => {
  const roots: string[] = [];
  after(() => roots.forEach((r) => fs.rmSync(r, { recursive: true, force: true })));

  it('adds the SoC chip base read from sysfs (Pi 4 on Bookworm: 512)', () => {
    const root = fakeSysfs([
      { base: 512, ngpio: 58, label: 'pinctrl-bcm2711' },
      { base: 570, ngpio: 8, label: 'raspberrypi-exp-gpio' },
    ]);
    roots.push(root);
    assert.equal(bcmToSysfs(17, { sysfsRoot: root }), 529);
    assert.equal(bcmToSysfs(0, { sysfsRoot: root }), 512);
    assert.throws(() => bcmToSysfs(58, { sysfsRoot: root }), /not on pinctrl-bcm2711/);
  });

  it('finds the Pi 5 RP1 controller among other chips, whatever its base', () => {
    const root = fakeSysfs([
      { base: 512, ngpio: 32, label: 'gpio-brcmstb@107d508500' },
      { base: 544, ngpio: 4, label: 'gpio-brcmstb@107d508520' },
      { base: 571, ngpio: 54, label: 'pinctrl-rp1' },
    ]);
    roots.push(root);
    assert.equal(bcmToSysfs(17, { sysfsRoot: root }), 588);
    assert.equal(bcmToSysfs(2, { sysfsRoot: root, chipLabel: 'gpio-brcmstb@107d508520' }), 546);
  });

  it('keeps base 0 on older kernels and refuses to guess between unknown chips', () => {
    const old = fakeSysfs([{ base: 0, ngpio: 54, label: 'pinctrl-bcm2835' }]);
    const unknown = fakeSysfs([
      { base: 0, ngpio: 16, label: 'chip-a' },
      { base: 16, ngpio: 16, label: 'chip-b' },
    ]);
    roots.push(old, unknown);
    assert.equal(bcmToSysfs(17, { sysfsRoot: old }), 17);
    assert.equal(listGpioChips(unknown).length, 2);
    assert.throws(() => findMainGpioChip(listGpioChips(unknown)), /cannot tell which gpiochip/);
  });

  it('says plainly when the machine has no GPIO', async () => {
    const empty = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-sysfs-'));
    roots.push(empty);
    assert.throws(
      () => bcmToSysfs(17, { sysfsRoot: empty }),
      (err) => isSensorError(err, 'NO_HARDWARE') && /no GPIO on this machine/.test(err.message),
    );
    await assert.rejects(openGpioLine(17, {}, { sysfsRoot: empty }), /no GPIO on this machine/);
  });

  it('opens onoff with the mapped number, edge, debounce and active-low', async () => {
    const root = fakeSysfs([{ base: 512, ngpio: 58, label: 'pinctrl-bcm2711' }]);
    roots.push(root);
    const calls: unknown[][] = [];
    let unexported = false;
    // Stands in for the onoff module (no sysfs GPIO on this machine) to check what is asked of it.
    class FakeGpio {
      static accessible = true;
      constructor(...args: unknown[]) {
        calls.push(args);
      }
      read = async () => 1 as const;
      watch() {}
      unwatchAll() {}
      unexport() {
        unexported = true;
      }
    }
    const line = await openGpioLine(
      27,
      { edge: 'falling', debounceMs: 15, activeLow: true },
      { sysfsRoot: root, loadModule: () => ({ Gpio: FakeGpio }) },
    );
    assert.deepEqual(calls, [[539, 'in', 'falling', { debounceTimeout: 15, activeLow: true }]]);
    assert.equal(await line.read(), 1);
    await line.close();
    assert.ok(unexported, 'close unexports the pin');
  });

  it('sets pull resistors with pinctrl, falls back to raspi-gpio, and says when neither exists', async () => {
    const ran: string[] = [];
    const onlyRaspiGpio = async (command: string, args: string[]) => {
      ran.push(`${command} ${args.join(' ')}`);
      if (command === 'pinctrl') throw Object.assign(new Error('spawn pinctrl ENOENT'), { code: 'ENOENT' });
    };
    assert.deepEqual(await setGpioPull(17, 'up', onlyRaspiGpio), { tool: 'raspi-gpio' });
    assert.deepEqual(ran, ['pinctrl set 17 ip pu', 'raspi-gpio set 17 ip pu']);
    const neither = async () => {
      throw Object.assign(new Error('ENOENT'), { code: 'ENOENT' });
    };
    const result = await setGpioPull(17, 'down', neither);
    assert.match(result.reason!, /pull-down not set .*not installed/);
  });
});
