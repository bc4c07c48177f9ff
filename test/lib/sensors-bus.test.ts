import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  Backoff,
  Bme280Sim,
  SimClock,
  SimulatedI2cBus,
  createSensorSource,
  createSimulatedSource,
  isSensorError,
  openI2cBus,
  scanI2cBus,
  type OpenI2cOptions,
} from '../../lib/sensors';
import { isEdgeAiError, SensorError } from '../../lib/errors';

type FakeModule = NonNullable<OpenI2cOptions['loadModule']>;

/** A stand-in for the i2c-bus module's promises API, backed by a simulated bus. */
function fakeI2cModule(
  sim: SimulatedI2cBus,
  state: { opens: number; closes: number; fail?: string },
): FakeModule {
  return () => ({
    openPromisified: async () => {
      if (state.fail) throw Object.assign(new Error(state.fail), { code: state.fail });
      state.opens++;
      return {
        close: async () => void state.closes++,
        scan: async () => sim.scan(),
        readByte: (a: number, r: number) => sim.readByte(a, r),
        writeByte: (a: number, r: number, v: number) => sim.writeByte(a, r, v),
        readI2cBlock: async (a: number, r: number, l: number, b: Buffer) => {
          const data = await sim.readI2cBlock(a, r, l);
          data.copy(b);
          return { bytesRead: l, buffer: b };
        },
        writeI2cBlock: async (a: number, r: number, l: number, b: Buffer) => {
          await sim.writeI2cBlock(a, r, b.subarray(0, l));
          return { bytesWritten: l, buffer: b };
        },
      };
    },
  });
}

describe('I2C bus', () => {
  let devDir: string;
  before(() => {
    devDir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-dev-'));
    fs.writeFileSync(path.join(devDir, 'i2c-3'), '');
  });
  after(() => fs.rmSync(devDir, { recursive: true, force: true }));

  it('says "no I2C bus N on this machine" when the device file is missing', async () => {
    await assert.rejects(
      openI2cBus(7, { devDir }),
      (err) => isSensorError(err, 'NO_HARDWARE') && /no I2C bus 7 on this machine/.test(err.message),
    );
  });

  it('gives a missing bus the code i2c-bus-missing with the bus number', async () => {
    await assert.rejects(
      openI2cBus(7, { devDir }),
      (err) => isEdgeAiError(err, 'i2c-bus-missing') && err instanceof SensorError && err.params?.bus === 7,
    );
    await assert.rejects(
      openI2cBus(3, {
        devDir,
        loadModule: () => {
          throw new Error('Cannot find module');
        },
      }),
      (err) => isEdgeAiError(err, 'i2c-module-missing') && isSensorError(err, 'NO_HARDWARE'),
    );
  });

  it('on this machine: a real BME280 source reports the missing bus plainly', async function () {
    if (fs.existsSync('/dev/i2c-1')) {
      console.log('      (skipped: this machine has /dev/i2c-1)');
      this.skip();
    }
    const source = createSensorSource({ device: 'bme280', bus: 1 });
    await assert.rejects(source.read(), /no I2C bus 1 on this machine/);
    await source.close();
  });

  it('names the missing optional module and a permission problem', async () => {
    await assert.rejects(
      openI2cBus(3, {
        devDir,
        loadModule: () => {
          throw new Error("Cannot find module 'i2c-bus'");
        },
      }),
      (err) => isSensorError(err, 'NO_HARDWARE') && /npm install i2c-bus/.test(err.message),
    );
    const state = { opens: 0, closes: 0, fail: 'EACCES' };
    await assert.rejects(
      openI2cBus(3, { devDir, loadModule: fakeI2cModule(new SimulatedI2cBus(3), state) }),
      (err) => isSensorError(err, 'NO_ACCESS') && /"i2c" group/.test(err.message),
    );
  });

  it('runs the driver through the i2c-bus API and scans', async () => {
    const clock = new SimClock();
    const sim = new SimulatedI2cBus(3).attach(0x77, new Bme280Sim({ clock }));
    const state = { opens: 0, closes: 0 };
    const i2c = { devDir, loadModule: fakeI2cModule(sim, state) };
    assert.deepEqual(await scanI2cBus(3, i2c), [0x77]);
    assert.deepEqual(state, { opens: 1, closes: 1 });
    const source = createSensorSource({ device: 'bme280', bus: 3, address: 0x77, clock, i2c });
    const reading = await source.read();
    assert.equal(typeof (reading.payload as Record<string, number>).temperature, 'number');
    await source.close();
    assert.equal(state.closes, 2, 'close releases the bus handle');
  });

  it('reopens the bus after it disappeared and recovers', async () => {
    const clock = new SimClock();
    const sim = new SimulatedI2cBus(3).attach(0x76, new Bme280Sim({ clock }));
    const state = { opens: 0, closes: 0 };
    const source = createSensorSource({
      device: 'bme280',
      bus: 3,
      clock,
      i2c: { devDir, loadModule: fakeI2cModule(sim, state) },
    });
    await source.read();
    sim.setUnplugged(true);
    await assert.rejects(
      source.read(),
      (err) => isSensorError(err, 'DEVICE_UNAVAILABLE') && err.osCode === 'ENODEV',
    );
    assert.equal(state.closes, 1, 'the dead handle is closed');
    sim.setUnplugged(false);
    await source.read();
    assert.equal(state.opens, 2, 'and a new one opened');
    await source.close();
  });

  it('simulated bus: absent addresses fail with ENXIO; closed buses refuse work', async () => {
    const bus = new SimulatedI2cBus(1);
    const device = new Bme280Sim({ clock: new SimClock() });
    bus.attach(0x76, device);
    assert.deepEqual(await bus.scan(), [0x76]);
    await assert.rejects(bus.readByte(0x77, 0xd0), { code: 'ENXIO' });
    bus.detach(0x76);
    await assert.rejects(bus.readByte(0x76, 0xd0), { code: 'ENXIO' });
    bus.attach(0x76, device);
    assert.equal(await bus.readByte(0x76, 0xd0), 0x60);
    await assert.rejects(bus.readI2cBlock(0x76, 0, 33), /outside 1..32/);
    await bus.close();
    await assert.rejects(bus.readByte(0x76, 0xd0), /closed/);
  });

  it('closing a simulated source closes its bus', async () => {
    const source = createSimulatedSource('bme280', { clock: new SimClock() });
    await source.read();
    await source.close();
    assert.ok(source.bus!.isClosed());
    await assert.rejects(source.read(), /closed/);
  });

  it('backs off by doubling up to a limit', () => {
    const backoff = new Backoff(1000, 8000);
    assert.deepEqual(
      [1, 2, 3, 4, 5].map(() => backoff.next()),
      [1000, 2000, 4000, 8000, 8000],
    );
    backoff.reset();
    assert.equal(backoff.next(), 1000);
  });
});
