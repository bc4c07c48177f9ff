import assert from 'node:assert/strict';
import { tf, useBackend } from '../../lib/models/runtime/tfjs';
import { heapKernelsFor } from '../../lib/train/heap-kernels';
import { registerWasmGradients, useHeapKernels } from '../../lib/train/wasm-gradients';

type Grads = Float32Array[];

/** Deterministic pseudo-random values so both backends see identical inputs. */
function values(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = s / 2 ** 32 - 0.5;
  }
  return out;
}

async function gradsOn(
  backend: 'wasm' | 'cpu',
  build: () => tf.Tensor[],
  f: (...t: tf.Tensor[]) => tf.Tensor,
) {
  await useBackend([backend]);
  const inputs = build();
  const before = tf.memory().numTensors;
  const grads = tf.grads((...t: tf.Tensor[]) => tf.sum(tf.square(f(...t))))(inputs);
  const out: Grads = [];
  for (const g of grads) out.push((await g.data()) as Float32Array);
  tf.dispose(grads);
  assert.equal(tf.memory().numTensors, before, `${backend}: gradient leaked tensors`);
  tf.dispose(inputs);
  return out;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function maxAbs(a: Float32Array): number {
  let m = 0;
  for (const v of a) m = Math.max(m, Math.abs(v));
  return m;
}

async function compare(
  name: string,
  build: () => tf.Tensor[],
  f: (...t: tf.Tensor[]) => tf.Tensor,
): Promise<void> {
  const cpu = await gradsOn('cpu', build, f);
  const wasm = await gradsOn('wasm', build, f);
  cpu.forEach((expected, i) => {
    const diff = maxAbsDiff(wasm[i], expected);
    const scale = Math.max(1, maxAbs(expected));
    assert.ok(diff <= 1e-4 * scale, `${name} gradient ${i}: max abs diff ${diff} (scale ${scale})`);
  });
}

function gradientSuite(heap: boolean): void {
  describe(`wasm gradient kernels vs cpu, ${heap ? 'compiled heap kernels' : 'composed and JavaScript paths'}`, () => {
    let previous: string;
    before(async () => {
      previous = tf.getBackend();
      await useBackend(['wasm']);
      registerWasmGradients();
      useHeapKernels(heap);
    });
    after(async () => {
      useHeapKernels(true);
      if (previous) await tf.setBackend(previous);
    });

    it('registers only kernels the wasm backend lacks, and is idempotent', () => {
      assert.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'));
      assert.ok(tf.getKernel('DepthwiseConv2dNativeBackpropFilter', 'wasm'));
      assert.ok(tf.getKernel('DepthwiseConv2dNativeBackpropInput', 'wasm'));
      assert.deepEqual(registerWasmGradients(), []);
    });

    if (heap) {
      it('compiles the heap kernels onto the wasm backend memory and registers the one-pass ReLU gradient', () => {
        const memory = (tf.backend() as unknown as { wasm: { asm: { memory: WebAssembly.Memory } } }).wasm.asm
          .memory;
        const kernels = heapKernelsFor(memory);
        assert.ok(kernels, 'the heap kernels did not compile on this engine');
        assert.equal(heapKernelsFor(memory), kernels, 'compiled once per memory');
        for (const name of [
          'maxPoolGrad',
          'maxPoolGrad4',
          'leadingSum',
          'leadingSum4',
          'reluGrad',
          'convFilterGrad2x16',
          'convInputGrad32',
        ]) {
          assert.equal(typeof (kernels as unknown as Record<string, unknown>)[name], 'function', name);
        }
        assert.ok(tf.getKernel('EdgeAiReluGrad', 'wasm'));
        assert.equal(heapKernelsFor(undefined), undefined);
      });
    }

    /** A tensor of `shape` filled with the deterministic values of `seed`. */
    const filled = (shape: number[], seed: number): tf.Tensor =>
      tf.tensor(
        values(
          shape.reduce((a, b) => a * b),
          seed,
        ),
        shape,
      );

    const convCases: Array<{ x: number[]; f: number[]; strides: number; pad: 'same' | 'valid' }> = [
      { x: [2, 9, 9, 3], f: [3, 3, 3, 4], strides: 1, pad: 'valid' },
      { x: [2, 9, 8, 3], f: [3, 3, 3, 4], strides: 1, pad: 'same' },
      { x: [2, 10, 9, 2], f: [3, 2, 2, 5], strides: 2, pad: 'same' },
      { x: [1, 11, 11, 4], f: [5, 5, 4, 3], strides: 3, pad: 'valid' },
      { x: [3, 7, 7, 1], f: [1, 1, 1, 6], strides: 1, pad: 'valid' },
      // Output channels in eights: the heap filter-gradient kernel, one and four input channels a pass.
      { x: [2, 12, 12, 1], f: [3, 3, 1, 8], strides: 1, pad: 'valid' },
      { x: [2, 9, 9, 3], f: [3, 3, 3, 16], strides: 1, pad: 'same' },
      { x: [2, 11, 10, 8], f: [3, 3, 8, 16], strides: 2, pad: 'same' },
      { x: [2, 8, 8, 32], f: [3, 3, 32, 16], strides: 1, pad: 'valid' },
    ];
    for (const c of convCases) {
      it(`conv2d x${c.x} filter ${c.f} stride ${c.strides} ${c.pad}: dx and dfilter match cpu`, async () => {
        await compare(
          'conv2d',
          () => [filled(c.x, 1), filled(c.f, 2)],
          (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.strides, c.pad),
        );
      });
    }

    it('conv1d (as layers builds it) matches cpu', async () => {
      await compare(
        'conv1d',
        () => [tf.tensor(values(2 * 20 * 3, 3), [2, 20, 3]), tf.tensor(values(5 * 3 * 4, 4), [5, 3, 4])],
        (x, w) => tf.conv1d(x as tf.Tensor3D, w as tf.Tensor3D, 2, 'same'),
      );
    });

    const depthwiseCases: Array<{ x: number[]; f: number[]; strides: number; pad: 'same' | 'valid' }> = [
      { x: [2, 8, 8, 3], f: [3, 3, 3, 1], strides: 1, pad: 'same' },
      { x: [2, 9, 7, 2], f: [3, 3, 2, 2], strides: 1, pad: 'valid' },
      { x: [2, 9, 10, 3], f: [3, 3, 3, 2], strides: 2, pad: 'same' },
      { x: [1, 12, 12, 2], f: [4, 4, 2, 1], strides: 3, pad: 'valid' },
    ];
    for (const c of depthwiseCases) {
      it(`depthwise x${c.x} filter ${c.f} stride ${c.strides} ${c.pad}: dx and dfilter match cpu`, async () => {
        await compare(
          'depthwise',
          () => [filled(c.x, 5), filled(c.f, 6)],
          (x, w) => tf.depthwiseConv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.strides, c.pad),
        );
      });
    }

    const poolCases: Array<{ x: number[]; size: number; strides: number; pad: 'same' | 'valid' }> = [
      { x: [2, 8, 8, 3], size: 2, strides: 2, pad: 'valid' },
      { x: [2, 7, 9, 2], size: 2, strides: 2, pad: 'same' },
      { x: [1, 9, 9, 2], size: 3, strides: 1, pad: 'same' },
      { x: [2, 10, 10, 1], size: 3, strides: 2, pad: 'valid' },
      // Channels in fours: the heap kernel's four-channel path.
      { x: [2, 11, 11, 8], size: 2, strides: 2, pad: 'valid' },
      { x: [2, 9, 7, 4], size: 3, strides: 2, pad: 'same' },
    ];
    for (const c of poolCases) {
      it(`max and average pooling ${c.size}x${c.size} stride ${c.strides} ${c.pad} on signed inputs match cpu`, async () => {
        const n = c.x.reduce((a, b) => a * b);
        await compare(
          'maxPool',
          () => [tf.tensor(values(n, 7), c.x)],
          (x) => tf.maxPool(x as tf.Tensor4D, c.size, c.strides, c.pad),
        );
        await compare(
          'avgPool',
          () => [tf.tensor(values(n, 9), c.x)],
          (x) => tf.avgPool(x as tf.Tensor4D, c.size, c.strides, c.pad),
        );
      });
    }

    it('max pooling after ReLU (windows of equal zeros) gives each window one gradient, as on cpu', async () => {
      for (const shape of [
        [2, 10, 10, 8],
        [2, 9, 9, 3],
      ]) {
        const n = shape.reduce((a, b) => a * b);
        await compare(
          `maxPool(relu) ${shape}`,
          () => [tf.tensor(values(n, 13), shape)],
          (x) => tf.maxPool(tf.relu(x) as tf.Tensor4D, 2, 2, 'valid'),
        );
      }
    });

    for (const [ta, tb] of [
      [true, false],
      [false, true],
      [true, true],
    ] as const) {
      it(`matMul with transposeA ${ta} transposeB ${tb} (plain, batched and fused) matches cpu`, async () => {
        const a = ta ? [7, 5] : [5, 7];
        const b = tb ? [4, 7] : [7, 4];
        await compare(
          'matMul',
          () => [tf.tensor(values(35, 3), a), tf.tensor(values(28, 4), b)],
          (x, y) => tf.matMul(x, y, ta, tb),
        );
        await compare(
          'batched matMul',
          () => [tf.tensor(values(70, 5), [2, ...a]), tf.tensor(values(56, 6), [2, ...b])],
          (x, y) => tf.matMul(x, y, ta, tb),
        );
        await compare(
          'fused matMul',
          () => [tf.tensor(values(35, 3), a), tf.tensor(values(28, 4), b), tf.tensor(values(4, 8), [4])],
          (x, y, bias) =>
            tf.fused.matMul({ a: x, b: y, transposeA: ta, transposeB: tb, bias, activation: 'relu' }),
        );
      });
    }

    it('sums over leading axes (bias gradients) and other axes match cpu', async () => {
      for (const [axis, keepDims] of [
        [0, false],
        [[0, 1, 2], false],
        [[0, 1], true],
        [2, false],
        [[1, 3], false],
      ] as Array<[number | number[], boolean]>) {
        await compare(
          `sum over ${String(axis)}`,
          () => [tf.tensor(values(2 * 3 * 4 * 5, 11), [2, 3, 4, 5])],
          (x) => tf.mul(tf.sum(x, axis, keepDims), tf.sum(x, axis, keepDims)),
        );
      }
    });

    it('an LSTM cell unrolled over 5 steps has the same gradients as on cpu', async () => {
      const lstm = (x: tf.Tensor, kernel: tf.Tensor, recurrent: tf.Tensor, bias: tf.Tensor): tf.Tensor => {
        let h = tf.zeros([3, 4]);
        let c = tf.zeros([3, 4]);
        for (const step of tf.unstack(x, 1)) {
          const [nc, nh] = tf.basicLSTMCell(
            tf.scalar(1),
            tf.concat([kernel, recurrent], 0) as tf.Tensor2D,
            bias as tf.Tensor1D,
            step as tf.Tensor2D,
            c as tf.Tensor2D,
            h as tf.Tensor2D,
          );
          c = nc;
          h = nh;
        }
        return h;
      };
      await compare(
        'lstm',
        () => [
          tf.tensor(values(3 * 5 * 2, 21), [3, 5, 2]),
          tf.tensor(values(2 * 16, 22), [2, 16]),
          tf.tensor(values(4 * 16, 23), [4, 16]),
          tf.tensor(values(16, 24), [16]),
        ],
        lstm,
      );
    });
  });
}

gradientSuite(true);
gradientSuite(false);
