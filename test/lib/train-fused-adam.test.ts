import assert from 'node:assert/strict';
import * as tfl from '@tensorflow/tfjs-layers';
import { tf, useBackend } from '../../lib/models/runtime/tfjs';
import { adamStep, fusedAdam } from '../../lib/train/fused-adam';
import { heapKernelsFor } from '../../lib/train/heap-kernels';
import { registerWasmGradients } from '../../lib/train/wasm-gradients';
import { values } from '../helpers/signals';

const SHAPES = { w1: [6, 5], b1: [5], w2: [5, 3], b2: [3] } as const;
const LR = 0.02;

/** A small two-layer model's variables, its data and its loss. */
function problem() {
  const vars = Object.entries(SHAPES).map(([name, shape], i) => {
    const size = shape.reduce((a: number, b: number) => a * b, 1);
    return tf.tidy(() =>
      tf.variable(
        tf.tensor(values(size, 11 + i), [...shape]),
        true,
        `fused-adam-test/${name}-${Math.random()}`,
      ),
    );
  });
  const x = tf.tensor(values(8 * 6, 3), [8, 6]);
  const y = tf.tensor(values(8 * 3, 5), [8, 3]);
  const loss = () =>
    tf.tidy(() => {
      const [w1, b1, w2, b2] = vars;
      const h = tf.relu(tf.add(tf.matMul(x, w1), b1));
      return tf.mean(tf.square(tf.sub(tf.add(tf.matMul(h, w2), b2), y))) as tf.Scalar;
    });
  return { vars, loss, dispose: () => tf.dispose([...vars, x, y]) };
}

/** The variables after `steps` steps of the optimizer on `backend`, and its getWeights(). */
async function train(
  backend: 'cpu' | 'wasm',
  make: () => tf.Optimizer,
  steps: number,
  between?: (step: number, opt: tf.Optimizer) => Promise<tf.Optimizer>,
): Promise<Float32Array[]> {
  await useBackend([backend]);
  const p = problem();
  let opt = make();
  try {
    for (let i = 0; i < steps; i++) {
      if (between) opt = await between(i, opt);
      opt.minimize(p.loss, false)?.dispose();
    }
    return p.vars.map((v) => v.dataSync() as Float32Array);
  } finally {
    opt.dispose();
    p.dispose();
  }
}

function maxRelDiff(a: Float32Array[], b: Float32Array[]): number {
  let m = 0;
  a.forEach((x, k) => {
    assert.equal(x.length, b[k].length);
    for (let i = 0; i < x.length; i++)
      m = Math.max(m, Math.abs(x[i] - b[k][i]) / Math.max(1e-3, Math.abs(b[k][i])));
  });
  return m;
}

/** Largest total move of any value from its start: the steps did something. */
function moved(after: Float32Array[]): number {
  let m = 0;
  after.forEach((x, k) => {
    const start = values(x.length, 11 + k);
    for (let i = 0; i < x.length; i++) m = Math.max(m, Math.abs(x[i] - start[i]));
  });
  return m;
}

const TOLERANCE = 1e-4;
const STEPS = 25;

describe('fused Adam vs tf.train.adam (cpu backend)', () => {
  let previous: string;
  let reference: Float32Array[];
  before(async () => {
    previous = tf.getBackend();
    await useBackend(['wasm']);
    registerWasmGradients();
    reference = await train('cpu', () => tf.train.adam(LR), STEPS);
    assert.ok(moved(reference) > 0.1, 'the reference run barely moved the variables');
  });
  after(async () => {
    if (previous) await tf.setBackend(previous);
  });

  for (const backend of ['cpu', 'wasm'] as const) {
    it(`${STEPS} steps on ${backend} match tf.train.adam, without leaking tensors`, async () => {
      await useBackend([backend]);
      if (backend === 'wasm') {
        const memory = (tf.backend() as unknown as { wasm: { asm: { memory: WebAssembly.Memory } } }).wasm.asm
          .memory;
        assert.ok(
          heapKernelsFor(memory)?.adam,
          'the SIMD Adam kernel did not compile: the JavaScript loop runs',
        );
      }
      const before = tf.memory().numTensors;
      const fused = await train(backend, () => fusedAdam(LR), STEPS);
      assert.equal(tf.memory().numTensors, before, 'leaked tensors');
      const diff = maxRelDiff(fused, reference);
      assert.ok(diff < TOLERANCE, `max relative difference ${diff}`);
    });
  }

  it('the comparison catches a missing bias correction and a wrong epsilon placement', () => {
    // The same loop, run with the correction dropped or epsilon inside the root, on the reference's
    // own first-step inputs, must differ from the real step by far more than the tolerance.
    const g = values(64, 7).map((v) => v * 1e-3);
    const x = values(64, 8);
    const step = (c1: number, c2: number, epsilon: number) => {
      const out = [new Float32Array(64), new Float32Array(64), new Float32Array(64)];
      adamStep(g, x, new Float32Array(64), new Float32Array(64), out[0], out[1], out[2], {
        lr: LR,
        beta1: 0.9,
        beta2: 0.999,
        epsilon,
        c1,
        c2,
      });
      return [out[0].map((v, i) => v - x[i])];
    };
    const right = step(0.1, 0.001, 1e-7);
    assert.ok(maxRelDiff(step(1, 1, 1e-7), right) > 100 * TOLERANCE, 'dropped bias correction not detected');
    assert.ok(
      maxRelDiff(step(0.1, 1, 1e-7), right) > 100 * TOLERANCE,
      'dropped second-moment correction not detected',
    );
    assert.ok(maxRelDiff(step(0.1, 0.001, 1e-3), right) > 100 * TOLERANCE, 'epsilon change not detected');
  });

  it('updates a variable whose data is shared (a clone) without changing the clone', async () => {
    await useBackend(['wasm']);
    const clones: Array<{ tensor: tf.Tensor; data: Float32Array }> = [];
    const fused = await train(
      'wasm',
      () => fusedAdam(LR),
      STEPS,
      async (i, opt) => {
        if (i === 5) {
          for (const v of Object.values(tf.engine().registeredVariables)) {
            if (v.name.startsWith('fused-adam-test/'))
              clones.push({ tensor: v.clone(), data: v.dataSync() as Float32Array });
          }
        }
        return opt;
      },
    );
    assert.ok(clones.length > 0);
    for (const c of clones)
      assert.deepEqual(c.tensor.dataSync(), c.data, 'the step wrote through a shared clone');
    tf.dispose(clones.map((c) => c.tensor));
    assert.ok(maxRelDiff(fused, reference) < TOLERANCE);
  });

  it('carries its state through getWeights / setWeights into a new optimizer (a restart)', async () => {
    const fused = await train(
      'wasm',
      () => fusedAdam(LR),
      STEPS,
      async (i, opt) => {
        if (i !== 10) return opt;
        const saved = await opt.getWeights();
        const copies = saved.map((w) => ({ name: w.name, tensor: w.tensor.clone() }));
        opt.dispose();
        const next = fusedAdam(LR);
        await next.setWeights(copies);
        return next;
      },
    );
    assert.ok(maxRelDiff(fused, reference) < TOLERANCE, 'the restarted run drifted from tf.train.adam');
  });

  it('trains a layers model through fit() like tf.train.adam', async () => {
    await useBackend(['wasm']);
    const fitWith = async (optimizer: tf.Optimizer) => {
      const model = tfl.sequential({
        layers: [
          tfl.layers.dense({ inputShape: [6], units: 8, activation: 'relu', kernelInitializer: 'ones' }),
          tfl.layers.dense({ units: 2, kernelInitializer: 'ones' }),
        ],
      });
      const start = model.getWeights().map((w, i) => tf.tensor(values(w.size, 21 + i), w.shape));
      model.setWeights(start);
      tf.dispose(start);
      model.compile({ optimizer, loss: 'meanSquaredError' });
      const x = tf.tensor(values(32 * 6, 1), [32, 6]);
      const y = tf.tensor(values(32 * 2, 2), [32, 2]);
      await model.fit(x, y, { epochs: 3, batchSize: 8, shuffle: false, verbose: 0 });
      const out = model.getWeights().map((w) => w.dataSync() as Float32Array);
      tf.dispose([x, y]);
      model.dispose();
      optimizer.dispose();
      return out;
    };
    const expected = await fitWith(tf.train.adam(0.01));
    const fused = await fitWith(fusedAdam(0.01));
    assert.ok(maxRelDiff(fused, expected) < TOLERANCE);
  });
});
