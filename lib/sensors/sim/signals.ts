/**
 * Physical signals behind the simulated devices: the room a BME280 sits in (a daily temperature
 * cycle, humidity that falls as the air warms, slow pressure tides, sensor noise) and the
 * vibration of a running machine an MPU6050 is bolted to (running-speed harmonics, broadband
 * noise, and bearing-defect impacts that grow with wear).
 */
import type { SeededRandom } from '../../util/random';
import type { Mpu6050Reading } from '../drivers/mpu6050';

export interface EnvironmentOptions {
  /** Mean air temperature, °C. */
  meanTemperature?: number;
  /** Half the day-night swing, °C; the peak falls at 15:00 local time. */
  dailyAmplitude?: number;
  /** Sensor noise (standard deviation), °C. */
  temperatureNoise?: number;
  meanHumidity?: number;
  /** Relative humidity change per °C (negative: warmer air holds the same water at lower %RH). */
  humidityPerDegree?: number;
  humidityNoise?: number;
  /** Mean pressure, hPa. */
  meanPressure?: number;
  /** Amplitude of the twice-daily atmospheric pressure tide, hPa. */
  pressureTide?: number;
  pressureNoise?: number;
}

export interface EnvironmentReading {
  temperature: number;
  humidity: number;
  pressure: number;
}

const HOUR = 3600_000;
const DAY = 24 * HOUR;

export class Environment {
  private readonly o: Required<EnvironmentOptions>;
  /** Slow weather wander (AR(1) with a two-hour time constant), °C. */
  private weather = 0;
  private lastTime: number | undefined;

  constructor(
    private readonly rng: SeededRandom,
    options: EnvironmentOptions = {},
  ) {
    this.o = {
      meanTemperature: 21,
      dailyAmplitude: 3,
      temperatureNoise: 0.02,
      meanHumidity: 45,
      humidityPerDegree: -2.5,
      humidityNoise: 0.15,
      meanPressure: 1013.25,
      pressureTide: 1.2,
      pressureNoise: 0.012,
      ...options,
    };
  }

  /** The air at time `timeMs` (ms since epoch). */
  at(timeMs: number): EnvironmentReading {
    const o = this.o;
    const dt = this.lastTime === undefined ? 0 : Math.max(0, timeMs - this.lastTime);
    this.lastTime = timeMs;
    const tau = 2 * HOUR;
    if (dt > 0) {
      const decay = Math.exp(-dt / tau);
      this.weather = this.weather * decay + this.rng.gaussian(0.3 * Math.sqrt(1 - decay * decay));
    }
    const local = timeMs - new Date(timeMs).getTimezoneOffset() * 60_000;
    const dayPhase = (2 * Math.PI * ((local % DAY) - 9 * HOUR)) / DAY; // sin peaks at 15:00
    const airTemperature = o.meanTemperature + o.dailyAmplitude * Math.sin(dayPhase) + this.weather;
    const temperature = airTemperature + this.rng.gaussian(o.temperatureNoise);
    const humidity = clamp(
      o.meanHumidity +
        o.humidityPerDegree * (airTemperature - o.meanTemperature) +
        this.rng.gaussian(o.humidityNoise),
      0,
      100,
    );
    const tidePhase = (2 * Math.PI * ((local % DAY) - 10 * HOUR)) / (DAY / 2); // peaks 10:00 and 22:00
    const pressure =
      o.meanPressure + o.pressureTide * Math.cos(tidePhase) + this.rng.gaussian(o.pressureNoise);
    return { temperature, humidity, pressure };
  }
}

export interface VibrationOptions {
  /** Shaft speed of the machine, revolutions per minute. */
  rpm?: number;
  /** Amplitudes (g) of the 1x, 2x, 3x ... running-speed harmonics. */
  harmonics?: readonly number[];
  /** Broadband noise (standard deviation), g. */
  noise?: number;
  /** Bearing outer-race defect frequency as a multiple of shaft speed (BPFO order). */
  defectOrder?: number;
  /** Structural resonance the defect impacts ring at, Hz. */
  resonanceHz?: number;
  /** Housing temperature above ambient, °C. */
  housingWarmth?: number;
}

/** Vibration of a machine on an MPU6050, gravity along +Z. */
export class Vibration {
  private readonly o: Required<VibrationOptions>;
  private readonly phases: number[][];

  constructor(
    private readonly rng: SeededRandom,
    options: VibrationOptions = {},
  ) {
    this.o = {
      rpm: 1780,
      harmonics: [0.08, 0.03, 0.012],
      noise: 0.01,
      defectOrder: 3.58,
      resonanceHz: 2400,
      housingWarmth: 12,
      ...options,
    };
    // Fixed per-axis harmonic phases so the waveform is stable for a given seed.
    this.phases = [0, 1, 2].map(() => this.o.harmonics.map(() => rng.next() * 2 * Math.PI));
  }

  /**
   * One sample at `seconds` (time since the simulation started), with bearing-defect vibration
   * of amplitude `wear` g and air temperature `ambient` °C.
   */
  at(seconds: number, wear: number, ambient: number): Mpu6050Reading {
    const o = this.o;
    const shaftHz = o.rpm / 60;
    const axis = (index: number, scale: number): number => {
      let value = 0;
      o.harmonics.forEach((amplitude, k) => {
        value +=
          amplitude * scale * Math.sin(2 * Math.PI * (k + 1) * shaftHz * seconds + this.phases[index][k]);
      });
      return value + this.rng.gaussian(o.noise);
    };
    // Defect impacts: the resonance, amplitude-modulated at the defect frequency, plus the
    // broadband energy a worn bearing adds. Both grow with `wear`.
    const impacts = (index: number): number => {
      if (wear <= 0) return 0;
      const envelope = 0.5 + 0.5 * Math.sin(2 * Math.PI * o.defectOrder * shaftHz * seconds);
      const ring = Math.sin(2 * Math.PI * o.resonanceHz * seconds + index);
      return wear * (envelope * ring + 0.5 * this.rng.gaussian(1));
    };
    const gyro = (index: number): number =>
      0.6 * Math.sin(2 * Math.PI * shaftHz * seconds + this.phases[index][0]) +
      this.rng.gaussian(0.05) +
      (wear > 0 ? this.rng.gaussian(8 * wear) : 0);
    return {
      accelX: axis(0, 1) + impacts(0),
      accelY: axis(1, 0.8) + impacts(1),
      accelZ: 1 + axis(2, 0.3) + 0.5 * impacts(2),
      gyroX: gyro(0),
      gyroY: gyro(1),
      gyroZ: gyro(2),
      // A worn bearing runs warmer.
      temperature: ambient + o.housingWarmth + 10 * Math.min(wear, 1) + this.rng.gaussian(0.05),
    };
  }
}

export function clamp(value: number, low: number, high: number): number {
  return Math.min(high, Math.max(low, value));
}
