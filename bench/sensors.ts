/**
 * Sensor layer throughput: the cost of the BME280 compensation maths and of one read through
 * each driver against its register-level simulator (simulated clock, so no waiting), i.e. the
 * CPU a reading costs on top of the bus transfers. Prints a table.
 */
import {
  BME280_EXAMPLE_CALIBRATION,
  SimClock,
  compensateHumidity,
  compensatePressure,
  compensateTemperature,
  createSimulatedSource,
  invertPressure,
  type SimulatedDevice,
} from '../lib/sensors';

function timeIt(label: string, iterations: number, fn: (i: number) => void): [string, string, string] {
  for (let i = 0; i < Math.min(1000, iterations); i++) fn(i); // warm up
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn(i);
  const ns = Number(process.hrtime.bigint() - start) / iterations;
  return [label, (ns / 1000).toFixed(2), Math.round(1e9 / ns).toLocaleString('en')];
}

async function timeReads(device: SimulatedDevice, reads: number): Promise<[string, string, string]> {
  const clock = new SimClock();
  const options =
    device === 'ads1115'
      ? { ads1115: { inputs: ['ain0' as const, 'ain1' as const], dataRate: 860 as const } }
      : {};
  const source = createSimulatedSource(device, { clock, sim: { seed: 1, switchPeriodMs: 0 }, ...options });
  await source.read(); // initialise
  const start = process.hrtime.bigint();
  for (let i = 0; i < reads; i++) {
    clock.advance(10);
    await source.read();
  }
  const ns = Number(process.hrtime.bigint() - start) / reads;
  await source.close();
  return [
    `read: ${device} (driver + simulator)`,
    (ns / 1000).toFixed(1),
    Math.round(1e9 / ns).toLocaleString('en'),
  ];
}

async function main(): Promise<void> {
  const cal = BME280_EXAMPLE_CALIBRATION;
  const rows: Array<[string, string, string]> = [
    timeIt('BME280 temperature compensation (int32)', 200_000, (i) =>
      compensateTemperature(519888 + (i & 1023), cal),
    ),
    timeIt('BME280 pressure compensation (int64, BigInt)', 50_000, (i) =>
      compensatePressure(415148 + (i & 1023), 128422, cal),
    ),
    timeIt('BME280 humidity compensation (int32)', 200_000, (i) =>
      compensateHumidity(30000 + (i & 1023), 128422, cal),
    ),
    timeIt('BME280 simulator: invert pressure (binary search)', 2_000, (i) =>
      invertPressure(100000 + (i & 1023), 128422, cal),
    ),
  ];
  for (const device of ['bme280', 'mpu6050', 'ads1115', 'raw-i2c', 'gpio'] as SimulatedDevice[]) {
    rows.push(await timeReads(device, device === 'bme280' ? 500 : 2000));
  }
  const widths = [Math.max(...rows.map((r) => r[0].length), 9), 10, 12];
  const line = (cells: string[]) =>
    `| ${cells[0].padEnd(widths[0])} | ${cells[1].padStart(widths[1])} | ${cells[2].padStart(widths[2])} |`;
  console.log(`Node ${process.version}, ${process.arch}`);
  console.log(line(['operation', 'µs each', 'per second']));
  console.log(`|${'-'.repeat(widths[0] + 2)}|${'-'.repeat(widths[1] + 2)}|${'-'.repeat(widths[2] + 2)}|`);
  for (const row of rows) console.log(line(row));
}

main().catch((err) => {
  console.error(err);
  process.exit(1);
});
