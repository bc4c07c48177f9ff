import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { helper, nodeModule, collect, withCatalog, type FlowNode } from '../helpers/red';
import { SimulatedGpioLine, SimulatedI2cBus } from '../../lib/sensors';

const sensorNode = nodeModule('edge-sensor');

type Status = { fill?: string; shape?: string; text?: string };
type Msg = Record<string, unknown>;

/** Records every status the node shows. */
function statuses(node: TestNode): Status[] {
  const seen: Status[] = [];
  node.on('call:status', (call: { args: unknown[] }) => seen.push(call.args[0] as Status));
  return seen;
}

async function until(check: () => boolean, ms = 3000, what = 'condition'): Promise<void> {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

/** The parts of a runtime node (or helper node) the tests use. */
type TestNode = {
  on(event: string, listener: (arg: never) => void): void;
  receive(msg: object): void;
};
const get = (id: string): TestNode => helper.getNode(id) as unknown as TestNode;

const quiet = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function errorMessage(msg: Msg): string {
  return String((msg.error as { message?: string } | undefined)?.message);
}

function sensor(id: string, fields: Record<string, unknown>, wires: string[][] = [['out']]): FlowNode {
  return { id, type: 'edge-sensor', simSeed: '1', wires, ...fields };
}

describe('edge-sensor node', function () {
  this.timeout(15000);
  afterEach(async () => {
    await helper.unload();
  });

  it('sends readings on the interval with the message contract', async () => {
    const before = Date.now();
    await helper.load(sensorNode, [
      sensor('s', { name: 'room', device: 'bme280', interval: '40' }),
      { id: 'out', type: 'helper' },
    ]);
    const msgs = await collect(get('out'), 3);
    for (const msg of msgs) {
      const payload = msg.payload as Record<string, number>;
      assert.deepEqual(Object.keys(payload).sort(), ['humidity', 'pressure', 'temperature']);
      assert.ok(payload.temperature > 5 && payload.temperature < 40, `temperature ${payload.temperature}`);
      assert.ok(payload.pressure > 990 && payload.pressure < 1040);
      assert.ok(payload.humidity > 0 && payload.humidity < 100);
      assert.equal(msg.topic, 'room');
      assert.ok(typeof msg.timestamp === 'number' && msg.timestamp >= before && msg.timestamp <= Date.now());
      assert.deepEqual(msg.units, { temperature: '°C', pressure: 'hPa', humidity: '%RH' });
    }
  });

  it('reads every device type on input, keeping the message and naming the topic by device', async () => {
    const devices: Array<[string, Record<string, unknown>]> = [
      ['bme280', {}],
      ['mpu6050', { mpuAccelRange: '4' }],
      ['ads1115', { adsInputs: 'ain0, ain0-ain1', adsGain: '4.096' }],
      ['raw-i2c', {}],
      ['gpio', { gpioPin: '17', gpioInitial: false }],
    ];
    await helper.load(sensorNode, [
      ...devices.map(([device, fields]) =>
        sensor(`sensor-${device}`, { device, interval: '0', ...fields }, [[`out-${device}`]]),
      ),
      ...devices.map(([device]) => ({ id: `out-${device}`, type: 'helper' })),
    ]);
    const expected: Record<string, { keys: string[]; units: Record<string, string> }> = {
      bme280: {
        keys: ['humidity', 'pressure', 'temperature'],
        units: { temperature: '°C', pressure: 'hPa', humidity: '%RH' },
      },
      mpu6050: {
        keys: ['accelX', 'accelY', 'accelZ', 'gyroX', 'gyroY', 'gyroZ', 'temperature'],
        units: {
          accelX: 'g',
          accelY: 'g',
          accelZ: 'g',
          temperature: '°C',
          gyroX: '°/s',
          gyroY: '°/s',
          gyroZ: '°/s',
        },
      },
      ads1115: { keys: ['ain0', 'ain0_ain1'], units: { ain0: 'V', ain0_ain1: 'V' } },
      'raw-i2c': { keys: ['temperature'], units: { temperature: '°C' } },
    };
    for (const [device] of devices) {
      const got = collect(get(`out-${device}`), 1);
      get(`sensor-${device}`).receive({ payload: 'now', kept: device });
      const [msg] = await got;
      assert.equal(msg.kept, device, 'the input message travels on');
      assert.equal(msg.topic, device);
      if (device === 'gpio') {
        assert.ok(msg.payload === 0 || msg.payload === 1, `GPIO level ${String(msg.payload)}`);
        assert.deepEqual(msg.units, {});
        continue;
      }
      const payload = msg.payload as Record<string, number>;
      assert.deepEqual(Object.keys(payload).sort(), expected[device].keys);
      Object.values(payload).forEach((v) => assert.ok(Number.isFinite(v)));
      assert.deepEqual(msg.units, expected[device].units);
      if (device === 'mpu6050') assert.ok(Math.abs(payload.accelZ - 1) < 0.3, 'gravity on Z');
    }
  });

  it('input only: sends nothing until asked', async () => {
    await helper.load(sensorNode, [
      sensor('s', { device: 'bme280', interval: '0' }),
      { id: 'out', type: 'helper' },
    ]);
    let count = 0;
    get('out').on('input', () => count++);
    await quiet(300);
    assert.equal(count, 0);
  });

  it('device gone on input: red status, error to Catch with the message; back: readings resume', async () => {
    await helper.load(sensorNode, [
      sensor('s', { device: 'mpu6050', interval: '0' }),
      { id: 'out', type: 'helper' },
      { id: 'catcher', type: 'catch', scope: ['s'], wires: [['caught']] },
      { id: 'caught', type: 'helper' },
    ]);
    const s = get('s');
    const seen = statuses(s);
    const out = get('out');
    s.receive({ fault: { type: 'gone' } });
    await until(() => seen.some((st) => st.fill === 'yellow'), 2000, 'fault status');
    const caught = collect(get('caught'), 1);
    s.receive({ payload: 'read', tag: 1 });
    const [error] = await caught;
    assert.equal(error.tag, 1, 'Catch gets the original message');
    assert.match(errorMessage(error), /MPU6050 at 0x68 .*does not answer/);
    await until(() => seen.at(-1)?.fill === 'red', 2000, 'red status');

    s.receive({ fault: 'back' });
    const got = collect(out, 1);
    s.receive({ payload: 'read' });
    const [msg] = await got;
    assert.ok(
      Math.abs((msg.payload as Record<string, number>).accelZ - 1) < 0.3,
      're-initialised after power loss',
    );
    assert.equal(seen.at(-1)?.fill, 'green');
  });

  it('interval reads: reports a lost device once to Catch, retries with backoff, recovers', async () => {
    await helper.load(sensorNode, [
      // The device is gone for the first 0.8 s; the first retry (1 s later) finds it back.
      sensor('s', { device: 'bme280', interval: '50', simFault: 'gone', simFaultAmount: '0.8' }),
      { id: 'out', type: 'helper' },
      { id: 'catcher', type: 'catch', scope: ['s'], wires: [['caught']] },
      { id: 'caught', type: 'helper' },
    ]);
    const s = get('s');
    const seen = statuses(s);
    const errors: Msg[] = [];
    get('caught').on('input', (m: unknown) => errors.push(m as Msg));
    const readings = collect(get('out'), 2, 5000);
    await until(() => errors.length > 0, 2000, 'the error');
    assert.equal(errors[0].topic, 'bme280');
    assert.match(errorMessage(errors[0]), /BME280 .*does not answer/);
    assert.ok(
      seen.some((st) => st.fill === 'red' && /retry/.test(st.text ?? '')),
      'red status with retry',
    );
    await readings;
    assert.equal(errors.length, 1, 'one report for the whole outage');
    assert.equal(seen.at(-1)?.fill, 'green');
  });

  it('drives the dialog faults: a spiking BME280 shows a yellow status', async () => {
    await helper.load(sensorNode, [
      sensor('s', {
        device: 'bme280',
        interval: '30',
        simFault: 'spike',
        simFaultAmount: '50',
        simFaultProbability: '1',
      }),
      { id: 'out', type: 'helper' },
    ]);
    const seen = statuses(get('s'));
    const msgs = await collect(get('out'), 2);
    for (const msg of msgs) assert.ok((msg.payload as Record<string, number>).temperature > 50);
    assert.equal(seen.at(-1)?.fill, 'yellow');
  });

  it('refuses fault injection without the simulator, and says when there is no I2C bus', async function () {
    if (fs.existsSync('/dev/i2c-1')) {
      console.log('      (skipped: this machine has /dev/i2c-1)');
      this.skip();
    }
    await helper.load(sensorNode, [
      sensor('s', { device: 'bme280', simulate: false, interval: '0' }),
      { id: 'catcher', type: 'catch', scope: ['s'], wires: [['caught']] },
      { id: 'caught', type: 'helper' },
    ]);
    const s = get('s');
    const seen = statuses(s);
    const errors: Msg[] = [];
    get('caught').on('input', (m: unknown) => errors.push(m as Msg));
    await until(() => seen.some((st) => st.fill === 'red'), 2000, 'red status');
    // The test runtime has no message catalog: the status shows the error's own message, which
    // Node-RED replaces with the catalog's errors.i2c-bus-missing ("no I2C bus 1: enable I2C ...").
    assert.match(seen.find((st) => st.fill === 'red')!.text!, /^no I2C bus 1 on this machine/);
    await until(() => errors.length === 1, 2000, 'the start-up report');
    s.receive({ fault: { type: 'spike' }, tag: 'fault' });
    s.receive({ payload: 'read', tag: 'read' });
    await until(() => errors.length === 3, 2000, 'two input errors');
    const byTag = Object.fromEntries(errors.slice(1).map((m) => [m.tag, errorMessage(m)]));
    assert.match(byTag.fault, /faultNeedsSim|Simulate/);
    assert.match(byTag.read, /no I2C bus 1 on this machine/);
  });

  it('bad configuration: red status, inputs end in Catch, Node-RED keeps running', async () => {
    await helper.load(sensorNode, [
      sensor('s', { device: 'ads1115', adsInputs: 'ain1-ain2', interval: '100' }),
      { id: 'catcher', type: 'catch', scope: ['s'], wires: [['caught']] },
      { id: 'caught', type: 'helper' },
    ]);
    const s = get('s');
    const caught = collect(get('caught'), 1);
    s.receive({ payload: 1 });
    const [error] = await caught;
    assert.match(errorMessage(error), /ain1-ain2/);
  });

  it('a bad setting is an error naming the field, for every kind of field', async () => {
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ device: 'bme280', interval: 'soon' }, /setting "interval": "soon" is not a number >= 0/],
      [{ device: 'bme280', bmeOsT: '3' }, /setting "bmeOsT": "3" is not one of 0, 1, 2, 4, 8, 16/],
      [{ device: 'mpu6050', mpuGyroRange: '300' }, /setting "mpuGyroRange": "300" is not one of 250, 500/],
      [
        { device: 'gpio', gpioPull: 'sideways' },
        /setting "gpioPull": "sideways" is not one of none, up, down/,
      ],
      [{ device: 'thermostat' }, /setting "device": "thermostat" is not one of bme280/],
      [{ device: 'bme280', simulate: 'maybe' }, /setting "simulate": "maybe" is not true or false/],
      [{ device: 'csv', csvPath: ' ' }, /setting "csvPath"/],
    ];
    for (const [fields, expected] of cases) {
      await helper.load(sensorNode, [
        sensor('s', { interval: '0', ...fields }),
        { id: 'catcher', type: 'catch', scope: ['s'], wires: [['caught']] },
        { id: 'caught', type: 'helper' },
      ]);
      const seen = statuses(get('s'));
      const caught = collect(get('caught'), 1);
      get('s').receive({ payload: 1 });
      const [error] = await caught;
      assert.match(errorMessage(error), expected);
      assert.equal(seen.at(-1)?.fill, 'red');
      await helper.unload();
    }
  });

  it('a lost device: the retry time stays in the shown status, and it is probed sooner than the backoff', async () => {
    await helper.load(withCatalog('edge-sensor'), [
      // Answers for 0.3 s, then gone for 3.2 s: backoff alone would next retry at 7.3 s.
      sensor('s', {
        device: 'bme280',
        interval: '50',
        simFault: 'gone',
        simFaultAfter: '0.3',
        simFaultAmount: '3.2',
      }),
      { id: 'out', type: 'helper' },
    ]);
    const seen = statuses(get('s'));
    const times: number[] = [];
    get('out').on('input', () => times.push(Date.now()));
    await until(() => seen.some((st) => st.fill === 'red'), 3000, 'red status');
    const red = seen.filter((st) => st.fill === 'red');
    for (const st of red) {
      assert.ok(st.text!.length <= 60, `status fits: ${st.text}`);
      assert.match(
        st.text!,
        /^BME280 at 0x76 .*… – retry in 1 s$/,
        'the cause leads, the retry time follows',
      );
    }
    const lostAt = Date.now();
    await until(() => seen.at(-1)?.fill === 'green' && times.at(-1)! > lostAt, 6000, 'recovery');
    const gap = Math.max(...times.slice(1).map((t, i) => t - times[i]));
    assert.ok(gap < 5000, `longest gap between readings ${gap} ms (backoff alone: about 7 s)`);
  });

  it('replays a CSV file and stops at its end', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-csv-node-'));
    const file = path.join(dir, 'run.csv');
    fs.writeFileSync(file, 'ts,flow,temp\n1700000000,1.5,20\n1700000001,1.6,21\n1700000002,1.7,22\n');
    try {
      await helper.load(sensorNode, [
        sensor('s', {
          device: 'csv',
          csvPath: file,
          csvRoot: dir,
          csvTimestamp: 'ts',
          csvUnits: 'temp=°C',
          csvLoop: false,
          interval: '20',
        }),
        { id: 'out', type: 'helper' },
      ]);
      const seen = statuses(get('s'));
      const msgs = await collect(get('out'), 3);
      assert.deepEqual(
        msgs.map((m) => m.payload),
        [
          { flow: 1.5, temp: 20 },
          { flow: 1.6, temp: 21 },
          { flow: 1.7, temp: 22 },
        ],
      );
      assert.deepEqual(msgs[0].units, { flow: '', temp: '°C' });
      assert.equal(msgs[2].recordedAt, 1700000002000);
      await until(() => seen.at(-1)?.fill === 'grey', 2000, 'finished status');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses CSV paths outside the allowed root, absolute or with ..', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-csv-root-'));
    const outside = fs.mkdtempSync(path.join(os.tmpdir(), 'edge-csv-outside-'));
    fs.writeFileSync(path.join(outside, 'secret.csv'), 'a,b\n1,2\n');
    fs.symlinkSync(path.join(outside, 'secret.csv'), path.join(dir, 'link.csv'));
    const attempts = [
      '/etc/passwd',
      path.join(outside, 'secret.csv'),
      `../${path.basename(outside)}/secret.csv`,
      'link.csv',
    ];
    try {
      for (const csvPath of attempts) {
        await helper.load(sensorNode, [
          sensor('s', { device: 'csv', csvPath, csvRoot: dir, csvLoop: false, interval: '0' }),
          { id: 'catcher', type: 'catch', scope: ['s'], wires: [['caught']] },
          { id: 'caught', type: 'helper' },
          { id: 'out', type: 'helper' },
        ]);
        const sent: unknown[] = [];
        get('out').on('input', (m: unknown) => sent.push(m));
        const caught = collect(get('caught'), 1);
        get('s').receive({ payload: 1 });
        const [error] = await caught;
        assert.match(errorMessage(error), /outside the allowed directory/, csvPath);
        assert.deepEqual(sent, [], `nothing read from ${csvPath}`);
        await helper.unload();
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
      fs.rmSync(outside, { recursive: true, force: true });
    }
  });

  it('GPIO: sends the level at start when asked', async () => {
    await helper.load(sensorNode, [
      sensor('s', { device: 'gpio', gpioPin: '4', gpioActiveLow: true, gpioInitial: true, interval: '0' }),
      { id: 'out', type: 'helper' },
    ]);
    const [msg] = await collect(get('out'), 1);
    assert.equal(msg.payload, 1, 'switch open, active-low: 1');
    assert.equal(msg.topic, 'gpio');
  });

  it('close releases the simulated buses, GPIO lines and timers', async () => {
    const closed = { bus: 0, line: 0 };
    const busClose = SimulatedI2cBus.prototype.close;
    const lineClose = SimulatedGpioLine.prototype.close;
    SimulatedI2cBus.prototype.close = function () {
      closed.bus++;
      return busClose.call(this);
    };
    SimulatedGpioLine.prototype.close = function () {
      closed.line++;
      return lineClose.call(this);
    };
    try {
      await helper.load(sensorNode, [
        sensor('a', { device: 'bme280', interval: '20' }, [['out']]),
        sensor('b', { device: 'ads1115', interval: '20' }, [['out']]),
        sensor('c', { device: 'gpio', interval: '20' }, [['out']]),
        { id: 'out', type: 'helper' },
      ]);
      await collect(get('out'), 6);
      await helper.unload();
      assert.deepEqual(closed, { bus: 2, line: 1 });
    } finally {
      SimulatedI2cBus.prototype.close = busClose;
      SimulatedGpioLine.prototype.close = lineClose;
    }
  });

  it('scans a bus from the editor: simulated devices, and a plain answer without hardware', async () => {
    await helper.load(sensorNode, [sensor('s', { device: 'bme280', interval: '0' })]);
    const request = helper.request() as {
      get: (url: string) => Promise<{ status: number; body: Record<string, unknown> }>;
    };
    const sim = await request.get('/edge-ai/i2c-scan/1?simulate=true&device=mpu6050&address=0x69');
    assert.equal(sim.status, 200);
    assert.deepEqual(sim.body.addresses, ['0x69']);
    const real = await request.get('/edge-ai/i2c-scan/9');
    assert.equal(real.status, 404);
    assert.match(String(real.body.error), /no I2C bus 9 on this machine/);
  });
});
