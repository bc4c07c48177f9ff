/**
 * Sensor layer: I2C and GPIO behind small interfaces, drivers (BME280, MPU6050, ADS1115, raw
 * registers), register-level simulators with injectable faults, CSV replay, and the
 * SensorSource the edge-sensor node reads from. Usable from a plain script.
 */
export * from './errors';
export * from './clock';
export { SeededRandom } from '../util/random';
export { type I2cBus, type OpenI2cOptions, openI2cBus, MAX_BLOCK_LENGTH } from './i2c-bus';
export * from './drivers/bme280';
export * from './drivers/mpu6050';
export * from './drivers/ads1115';
export * from './drivers/raw-register';
export * from './gpio';
export * from './csv-replay';
export { SimulatedI2cBus, ByteRegisterDevice, type SimDevice } from './sim/sim-bus';
export {
  Bme280Sim,
  type Bme280SimOptions,
  invertTemperature,
  invertPressure,
  invertHumidity,
} from './sim/bme280-sim';
export { Mpu6050Sim, type Mpu6050SimOptions } from './sim/mpu6050-sim';
export { Ads1115Sim, type Ads1115SimOptions, type Ads1115PinVoltages } from './sim/ads1115-sim';
export { Lm75Sim, type Lm75SimOptions } from './sim/lm75-sim';
export { SwitchSignal, type SwitchSignalOptions } from './sim/switch-signal';
export { FaultModel, type FaultSpec, type FaultType, FAULT_TYPES, parseFault } from './sim/faults';
export {
  Environment,
  type EnvironmentOptions,
  type EnvironmentReading,
  Vibration,
  type VibrationOptions,
} from './sim/signals';
export * from './source';
export * from './csv-path';
export * from './poller';
export * from './scan';
