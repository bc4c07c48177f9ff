// Runs one small model on each runtime the package ships, from an installed copy of the package:
// a dense classifier built with TF.js layers, run by TF.js on WebAssembly and on the CPU backend,
// and its ONNX export run by onnxruntime-web (WebAssembly), all three agreeing. Then checks that
// every TF.js and onnxruntime-web module Node loaded came from the package's own dist/vendor.
// Then trains one epoch in worker threads (the training worker and its batch threads).
//
//   node scripts/runtime-smoke.cjs <package dir>
//
// Prints one line per runtime and exits non-zero on any failure.
/* global require, __dirname */
'use strict';
const path = require('node:path');

const pkgDir = path.resolve(process.argv[2] ?? path.join(__dirname, '..'));
const { models, train } = require(pkgDir);

function maxDiff(a, b) {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

async function main() {
  await models.useBackend(['cpu']);
  const model = train.buildModel('dense-classifier', {
    inputShape: [6],
    outputSize: 3,
    units: [16],
    seed: 7,
  });
  const artifacts = await models.modelArtifacts(model);
  const layersFiles = {
    format: 'tfjs-layers',
    entryPath: 'model.json',
    bytes: 0,
    notes: [],
    artifacts,
    quantized: {},
  };
  const input = Float32Array.from({ length: 12 }, (_, i) => Math.sin(i + 1));
  const outputs = {};
  for (const runtime of ['tfjs-wasm', 'tfjs-cpu']) {
    const { runner } = await models.createRunner(layersFiles, { runtime });
    if (runner.runtime !== runtime) throw new Error(`asked for ${runtime}, got ${runner.runtime}`);
    outputs[runtime] = await runner.predict(input, 2);
    await runner.dispose();
  }
  const onnx = models.exportLayersModelToOnnx(model);
  const onnxFiles = { format: 'onnx', entryPath: 'model.onnx', bytes: onnx.length, notes: [], onnx };
  const { runner } = await models.createRunner(onnxFiles, { runtime: 'onnxruntime-web' });
  if (runner.runtime !== 'onnxruntime-web') throw new Error(`onnxruntime-web not used: ${runner.runtime}`);
  outputs['onnxruntime-web'] = await runner.predict(input, 2);
  await runner.dispose();
  model.dispose();

  const reference = outputs['tfjs-cpu'];
  for (const [runtime, out] of Object.entries(outputs)) {
    const sums = [0, 1].map((s) => out.slice(s * 3, s * 3 + 3).reduce((a, b) => a + b, 0));
    if (out.length !== 6 || sums.some((s) => Math.abs(s - 1) > 1e-4)) {
      throw new Error(`${runtime}: not two softmax rows of 3: ${Array.from(out).join(', ')}`);
    }
    const diff = maxDiff(out, reference);
    if (diff > 1e-4) throw new Error(`${runtime} differs from tfjs-cpu by ${diff}`);
    console.log(`runtime smoke: ${runtime} runs (max |diff| to tfjs-cpu ${diff.toExponential(1)})`);
  }

  // One epoch in the training worker thread, its batches split over two more threads: worker
  // scripts load TF.js by themselves, and must find it in the package too.
  const { TrainingWorker } = require(path.join(pkgDir, 'dist', 'lib', 'train', 'training-worker.js'));
  const count = 64;
  const data = {
    x: Float32Array.from({ length: count * 6 }, (_, i) => Math.sin(i * 0.37)),
    y: Float32Array.from({ length: count }, (_, i) => i % 3),
    count,
    inputShape: [6],
    outputSize: 3,
  };
  const trained = await new TrainingWorker().run(
    {
      task: 'classification',
      architecture: 'dense-classifier',
      sizes: { units: [8] },
      optimizer: 'adam',
      learningRate: 0.01,
      batchSize: 16,
      epochs: 1,
      validationSplit: 0,
      threads: 2,
      seed: 1,
    },
    data,
  );
  if (!Number.isFinite(trained.history.loss?.[0])) throw new Error('training in worker threads gave no loss');
  console.log(
    `runtime smoke: one epoch in worker threads on ${trained.backend} (loss ${trained.history.loss[0].toFixed(3)})`,
  );

  const vendor = path.join(pkgDir, 'dist', 'vendor') + path.sep;
  const loaded = Object.keys(require.cache).filter((f) => /[\\/](@tensorflow|onnxruntime-web)[\\/]/.test(f));
  const outside = loaded.filter((f) => !f.startsWith(vendor));
  if (outside.length > 0) throw new Error(`loaded from outside dist/vendor: ${outside.join(', ')}`);
  if (loaded.length < 6)
    throw new Error(`expected the 6 vendored entries in the module cache, found ${loaded.length}`);
  console.log(`runtime smoke: all ${loaded.length} TF.js / onnxruntime-web modules came from dist/vendor`);
}

main().then(
  () => process.exit(0),
  (err) => {
    console.error(`runtime smoke: FAIL ${err.stack ?? err}`);
    process.exit(1);
  },
);
