/** The edit dialog's bus scan: a real I2C bus, or the simulated bus of a device. */
import { SensorError } from './errors';
import { DEFAULT_ADDRESSES, createSimulatedSource, scanI2cBus } from './source';

export interface ScanRequest {
  bus: string;
  simulate: boolean;
  device?: string;
  address?: string;
}

/** The addresses that answer on the bus (NO_HARDWARE without one, BAD_CONFIG for a bad request). */
export async function scanForDevices(request: ScanRequest): Promise<number[]> {
  const busNumber = Number(request.bus);
  if (!Number.isInteger(busNumber) || busNumber < 0 || request.bus.trim() === '') {
    throw new SensorError('BAD_CONFIG', `I2C bus ${request.bus} is not a whole number >= 0`);
  }
  if (!request.simulate) return scanI2cBus(busNumber);
  const device = (request.device ?? 'bme280') as keyof typeof DEFAULT_ADDRESSES;
  if (!Object.hasOwn(DEFAULT_ADDRESSES, device)) {
    throw new SensorError('BAD_CONFIG', `${device} is not an I2C device`);
  }
  const address = Number(request.address) || DEFAULT_ADDRESSES[device];
  const sim = createSimulatedSource(device, { bus: busNumber, address });
  try {
    return await sim.bus!.scan();
  } finally {
    await sim.close();
  }
}
