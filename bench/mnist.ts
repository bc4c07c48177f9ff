/**
 * The seed example end to end: the classic MNIST CNN (Conv2D 32 3x3, MaxPool 2, Conv2D 64 3x3,
 * MaxPool 2, Flatten, Dense 64, Dense 10) trained on the device as edge-train does it (on-disk
 * dataset, worker thread, wasm backend, saved to the model store) with Adam on 8000 digits of the
 * `mnist` package, then quantized to uint8 as edge-model-loader does it, then both versions
 * classify the package's held-out digits (200 of each digit by default). Prints accuracy float/uint8, weight sizes and epoch
 * times on wasm and cpu.
 *
 * Usage: npm run bench:mnist [-- --epochs 15 --train 8000 --test 2000]
 */
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as tfl from '@tensorflow/tfjs-layers';
import { compressStoredModel } from '../lib/models/compress/compress';
import { ModelStore } from '../lib/models/store/store';
import { fileLoadHandler, tf, useBackend } from '../lib/models/runtime/tfjs';
import { DeviceTrainer } from '../lib/train/device-trainer';
import { trainModel } from '../lib/train/trainer';
import { numberArg } from './cli';
import { MNIST_TRAINING, balancedSets, type Digit } from './train-data';

const TRAINING = MNIST_TRAINING;

async function accuracy(modelJson: string, test: Digit[]): Promise<number> {
  const model = await tfl.loadLayersModel(fileLoadHandler(modelJson));
  let correct = 0;
  for (let start = 0; start < test.length; start += 500) {
    const batch = test.slice(start, start + 500);
    const predicted = tf.tidy(() => {
      const x = tf.tensor(
        batch.flatMap((d) => d.input),
        [batch.length, 28, 28],
      );
      return tf.argMax(model.predict(x) as tf.Tensor, -1);
    });
    const labels = await predicted.data();
    predicted.dispose();
    batch.forEach((d, i) => {
      if (d.output[labels[i]] === 1) correct++;
    });
  }
  model.dispose();
  return correct / test.length;
}

async function weightBytes(dir: string): Promise<number> {
  return (await fs.stat(path.join(dir, 'weights.bin'))).size;
}

/** Seconds for one epoch over `digits` on a backend, on this thread. */
async function epochSeconds(backend: 'wasm' | 'cpu', digits: Digit[]): Promise<number> {
  const x = Float32Array.from(digits.flatMap((d) => d.input));
  const y = Float32Array.from(digits.map((d) => d.output.indexOf(1)));
  const result = await trainModel(
    { ...TRAINING, task: 'classification', architecture: 'mnist-cnn', epochs: 1, backend },
    { x, y, count: digits.length, inputShape: [28, 28], outputSize: 10 },
  );
  return result.epochMs[0] / 1000;
}

async function main(): Promise<void> {
  const trainCount = numberArg('train', 8000);
  const testCount = numberArg('test', 2000);
  const epochs = numberArg('epochs', 15);
  const { training, test, how } = balancedSets(trainCount, testCount);
  console.log(
    `MNIST digits from the mnist package: ${training.length} for training, ${test.length} held out`,
  );
  console.log(how);

  const userDir = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-bench-mnist-'));
  try {
    const store = ModelStore.forUserDir(userDir);
    const trainer = await DeviceTrainer.open({
      modelName: 'mnist-cnn',
      store,
      datasetDir: path.join(userDir, 'edge-ai', 'datasets', 'bench'),
      capacity: training.length,
      policy: 'ring',
      architecture: 'mnist-cnn',
      inputShape: [28, 28],
      minSamples: 100,
      training: { ...TRAINING, epochs },
    });
    const adds: Promise<void>[] = [];
    for (const digit of training) {
      const image = Array.from({ length: 28 }, (_, r) => digit.input.slice(r * 28, r * 28 + 28));
      adds.push(trainer.addSample(image, digit.output.indexOf(1)));
    }
    await Promise.all(adds);

    console.log(
      `\nTraining in a worker thread (${TRAINING.optimizer}, lr ${TRAINING.learningRate} x${TRAINING.learningRateDecay}/epoch, ` +
        `batch ${TRAINING.batchSize}, shifts up to ${TRAINING.augmentShift} px):`,
    );
    console.log('epoch | loss    | train acc | seconds');
    const outcome = await trainer.train((p) => {
      console.log(
        `${String(p.epoch).padStart(5)} | ${p.loss.toFixed(4)}  | ${(p.metrics.accuracy * 100).toFixed(2).padStart(8)}% | ${(p.ms / 1000).toFixed(1)}`,
      );
    });
    await trainer.close();
    const floatModel = outcome.stored;
    const training_ = floatModel.meta.training as { epochMs: number[]; backend: string };

    console.log('\nQuantizing to uint8 (as edge-model-loader does)...');
    const calibration = test.slice(0, 200);
    const { stored: quantized } = await compressStoredModel(store, {
      name: 'mnist-cnn',
      quantize: 'uint8',
      calibration: {
        x: calibration.map((d) => Array.from({ length: 28 }, (_, r) => d.input.slice(r * 28, r * 28 + 28))),
        y: calibration.map((d) => d.output.indexOf(1)),
      },
    });

    await useBackend(['wasm', 'cpu']);
    const floatAccuracy = await accuracy(path.join(floatModel.dir, 'model.json'), test);
    const uint8Accuracy = await accuracy(path.join(quantized.dir, 'model.json'), test);
    const floatBytes = await weightBytes(floatModel.dir);
    const uint8Bytes = await weightBytes(quantized.dir);

    // The cpu backend needs minutes for even a small part of an epoch; both time the same 128 digits.
    const subset = training.slice(0, 128);
    const wasmSubset = await epochSeconds('wasm', subset);
    const cpuSubset = await epochSeconds('cpu', subset);
    const median =
      [...training_.epochMs].sort((a, b) => a - b)[Math.floor(training_.epochMs.length / 2)] / 1000;

    console.log(`\nHeld-out accuracy (${test.length} digits):`);
    console.log('model        | accuracy | weights (bytes)');
    console.log(
      `float32 v${floatModel.meta.version}   | ${(floatAccuracy * 100).toFixed(2)}%  | ${floatBytes}`,
    );
    console.log(
      `uint8   v${quantized.meta.version}   | ${(uint8Accuracy * 100).toFixed(2)}%  | ${uint8Bytes}`,
    );
    console.log(
      `drop ${((floatAccuracy - uint8Accuracy) * 100).toFixed(2)} points, weights ${(floatBytes / uint8Bytes).toFixed(2)}x smaller`,
    );
    console.log('\nEpoch time (batch 64):');
    console.log(`backend | ${subset.length} digits | ${training.length} digits`);
    console.log(
      `wasm    | ${wasmSubset.toFixed(1).padStart(9)} s | ${median.toFixed(1)} s (median of ${training_.epochMs.length} epochs in the worker)`,
    );
    console.log(
      `cpu     | ${cpuSubset.toFixed(1).padStart(9)} s | ~${(cpuSubset * (training.length / subset.length)).toFixed(0)} s (scaled from ${subset.length})`,
    );
    console.log(`wasm is ${(cpuSubset / wasmSubset).toFixed(1)}x faster than cpu per epoch`);
    console.log(
      `\ntotal training time ${(outcome.durationMs / 1000).toFixed(0)} s, ${outcome.metrics.epochs} epochs`,
    );
  } finally {
    await fs.rm(userDir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
