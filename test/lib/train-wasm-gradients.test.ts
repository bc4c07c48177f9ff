import assert from 'node:assert/strict';
import { tf, useBackend } from '../../lib/models/runtime/tfjs';
import { convArgs, heapKernelsFor } from '../../lib/train/heap-kernels';
import {
  conv2DPath,
  matMulPath,
  registerWasmGradients,
  setWinogradTiles,
  useHeapKernels,
  useWinograd,
} from '../../lib/train/wasm-gradients';
import { values } from '../helpers/signals';

type Grads = Float32Array[];

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

/** The outputs of f on one backend (inputs built there), checking that nothing leaked. */
async function outputsOn(
  backend: 'wasm' | 'cpu',
  build: () => tf.Tensor[],
  f: (...t: tf.Tensor[]) => tf.Tensor,
) {
  await useBackend([backend]);
  const inputs = build();
  const before = tf.memory().numTensors;
  const y = f(...inputs);
  const out = (await y.data()) as Float32Array;
  y.dispose();
  assert.equal(tf.memory().numTensors, before, `${backend}: leaked tensors`);
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
          'convFilterGrad3x8',
          'convInputGrad32',
          'convForward4x8',
          'addRows',
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

    const forwardCases: Array<{
      x: number[];
      f: number[];
      strides: number;
      pad: 'same' | 'valid';
      dilations?: number;
    }> = [
      // One input channel (each filter row one run of three values), 4-wide blocks and a last block
      // that overlaps the one before it (10 outputs a row).
      { x: [2, 12, 12, 1], f: [3, 3, 1, 8], strides: 1, pad: 'valid' },
      { x: [2, 9, 9, 3], f: [3, 3, 3, 16], strides: 1, pad: 'same' },
      { x: [2, 11, 10, 8], f: [3, 3, 8, 16], strides: 2, pad: 'same' },
      // Three outputs a row: one output a block.
      { x: [1, 11, 11, 4], f: [5, 5, 4, 8], strides: 3, pad: 'valid' },
      // Output rows of two: one output a block, with 'same' padding.
      { x: [2, 3, 2, 2], f: [3, 3, 2, 8], strides: 1, pad: 'same' },
      // Dilated: the taps of a filter row are not one run.
      { x: [2, 12, 12, 4], f: [3, 3, 4, 8], strides: 1, pad: 'valid', dilations: 2 },
      { x: [2, 8, 8, 32], f: [3, 3, 32, 64], strides: 1, pad: 'valid' },
      // Output channels not in eights: the backend's own kernel.
      { x: [2, 7, 7, 3], f: [3, 3, 3, 6], strides: 1, pad: 'same' },
    ];
    for (const c of forwardCases) {
      it(`forward conv2d x${c.x} filter ${c.f} stride ${c.strides} ${c.pad}${c.dilations ? ` dilation ${c.dilations}` : ''}, plain and with fused bias and ReLU, matches cpu`, async () => {
        const build = (): tf.Tensor[] => [filled(c.x, 31), filled(c.f, 32), filled([c.f[3]], 33)];
        const variants: Array<[string, (x: tf.Tensor, w: tf.Tensor, b: tf.Tensor) => tf.Tensor]> = [
          [
            'conv2d',
            (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, c.strides, c.pad, 'NHWC', c.dilations),
          ],
          [
            'fused conv2d, bias and relu',
            (x, w, bias) =>
              tf.fused.conv2d({
                x: x as tf.Tensor4D,
                filter: w as tf.Tensor4D,
                strides: c.strides,
                pad: c.pad,
                dilations: c.dilations,
                bias,
                activation: 'relu',
              }),
          ],
          [
            'fused conv2d, bias',
            (x, w, bias) =>
              tf.fused.conv2d({
                x: x as tf.Tensor4D,
                filter: w as tf.Tensor4D,
                strides: c.strides,
                pad: c.pad,
                dilations: c.dilations,
                bias,
              }),
          ],
        ];
        for (const [name, f] of variants) {
          const expected = await outputsOn('cpu', build, f as (...t: tf.Tensor[]) => tf.Tensor);
          const actual = await outputsOn('wasm', build, f as (...t: tf.Tensor[]) => tf.Tensor);
          assert.ok(
            expected.some((v) => v === 0) === name.includes('relu'),
            `${name}: ReLU zeros where expected`,
          );
          const diff = maxAbsDiff(actual, expected);
          assert.ok(diff <= 1e-4 * Math.max(1, maxAbs(expected)), `${name}: max abs diff ${diff}`);
        }
      });
    }

    if (heap) {
      it('the forward convolution kernel itself, called on the heap, gives the cpu result with bias and ReLU', async () => {
        const shapes = { x: [2, 10, 9, 5], f: [3, 2, 5, 16] };
        const build = (): tf.Tensor[] => [filled(shapes.x, 41), filled(shapes.f, 42), filled([16], 43)];
        const expected = await outputsOn('cpu', build, (x, w, b) =>
          tf.tidy(() => tf.relu(tf.add(tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'valid'), b))),
        );
        await useBackend(['wasm']);
        const backend = tf.backend() as unknown as {
          wasm: { asm: { memory: WebAssembly.Memory } };
          typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
        };
        const kernels = heapKernelsFor(backend.wasm.asm.memory);
        assert.ok(kernels);
        const [x, w, b] = build();
        const y = tf.zeros([2, 8, 8, 16]);
        const at = (t: tf.Tensor): number => backend.typedArrayFromHeap(t).byteOffset;
        const shape = { batch: 2, inH: 10, inW: 9, cin: 5, outH: 8, outW: 8, cout: 16, fh: 3, fw: 2 };
        kernels.convForward4x8(
          ...convArgs(at(x), at(w), at(y), { ...shape, sh: 1, sw: 1, dh: 1, dw: 1, top: 0, left: 0 }),
          at(b),
          1,
        );
        const diff = maxAbsDiff((await y.data()) as Float32Array, expected);
        tf.dispose([x, w, b, y]);
        assert.ok(diff <= 1e-4 * Math.max(1, maxAbs(expected)), `max abs diff ${diff}`);
      });
    }

    if (heap) {
      // 3x3 stride-1 convolutions with channels in fours in and eights out run by Winograd
      // F(2x2, 3x3): its transforms round differently from the direct sum, well inside the
      // tolerance, while a wrong transform coefficient is off by the size of the values.
      const winogradCases: Array<{ x: number[]; f: number[]; pad: 'same' | 'valid'; grads?: boolean }> = [
        // Odd output (7x7): the last tile of each row and column is half outside.
        { x: [2, 9, 9, 16], f: [3, 3, 16, 32], pad: 'valid', grads: true },
        // dx: a Winograd convolution of dy (64 channels in, 8 out).
        { x: [3, 8, 7, 8], f: [3, 3, 8, 64], pad: 'same', grads: true },
        // The filter gradient by Winograd too (1024 channel pairs), 7x5 outputs.
        { x: [2, 7, 5, 32], f: [3, 3, 32, 32], pad: 'same', grads: true },
        // The MNIST CNN's second convolution: several groups of images (outputs only: the cpu
        // backend takes tens of seconds for its gradients).
        { x: [9, 13, 13, 32], f: [3, 3, 32, 64], pad: 'valid' },
      ];
      for (const c of winogradCases) {
        it(`Winograd conv2d x${c.x} filter ${c.f} ${c.pad}: output (plain, bias, bias and ReLU)${c.grads ? ' and gradients' : ''} match cpu`, async () => {
          await useBackend(['wasm']);
          assert.equal(
            conv2DPath(
              c.x as [number, number, number, number],
              c.f as [number, number, number, number],
              1,
              c.pad,
            ),
            'winograd',
          );
          const build = (): tf.Tensor[] => [filled(c.x, 71), filled(c.f, 72), filled([c.f[3]], 73)];
          for (const activation of [undefined, 'linear', 'relu'] as const) {
            const f = (x: tf.Tensor, w: tf.Tensor, bias: tf.Tensor): tf.Tensor =>
              activation
                ? tf.fused.conv2d({
                    x: x as tf.Tensor4D,
                    filter: w as tf.Tensor4D,
                    strides: 1,
                    pad: c.pad,
                    bias,
                    activation,
                  })
                : tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, c.pad);
            const expected = await outputsOn('cpu', build, f as (...t: tf.Tensor[]) => tf.Tensor);
            const actual = await outputsOn('wasm', build, f as (...t: tf.Tensor[]) => tf.Tensor);
            const diff = maxAbsDiff(actual, expected);
            assert.ok(
              diff <= 1e-4 * Math.max(1, maxAbs(expected)),
              `${activation ?? 'plain'}: max abs diff ${diff}`,
            );
          }
          // dx is a 3x3 stride-1 convolution of dy too (Winograd again); dfilter by Winograd
          // from 1024 channel pairs on.
          if (!c.grads) return;
          const [cin, cout] = [c.f[2], c.f[3]];
          assert.equal(
            conv2DPath(
              c.x as [number, number, number, number],
              c.f as [number, number, number, number],
              1,
              c.pad,
              1,
              true,
            ),
            cin * cout >= 1024 ? 'winograd' : 'direct',
          );
          await compare(
            'Winograd conv2d',
            () => [filled(c.x, 74), filled(c.f, 75)],
            (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, c.pad),
          );
        });
      }

      it('Winograd over several passes and chunks of images (forward, dx and dfilter) matches cpu', async () => {
        // 9 tiles an image: one image a pass, the filter gradient in chunks of 2 + 2 + 1 images.
        const previous = setWinogradTiles({ pass: 9, chunk: 18 });
        try {
          await compare(
            'Winograd conv2d in chunks',
            () => [filled([5, 6, 6, 32], 81), filled([3, 3, 32, 32], 82)],
            (x, w) => tf.conv2d(x as tf.Tensor4D, w as tf.Tensor4D, 1, 'same'),
          );
        } finally {
          setWinogradTiles(previous);
        }
      });

      it('takes the direct kernel where Winograd does not apply, and when Winograd is turned off', async () => {
        await useBackend(['wasm']);
        assert.equal(
          conv2DPath([2, 9, 9, 63], [3, 3, 63, 32], 1, 'valid'),
          'direct',
          'input channels not in fours',
        );
        assert.equal(conv2DPath([2, 9, 9, 16], [3, 3, 16, 16], 1, 'valid'), 'direct', 'few channels');
        assert.equal(conv2DPath([2, 9, 9, 32], [3, 3, 32, 32], 2, 'valid'), 'direct', 'strided');
        assert.equal(conv2DPath([2, 9, 9, 32], [3, 3, 32, 32], 1, 'valid', 2), 'direct', 'dilated');
        assert.equal(conv2DPath([2, 9, 9, 32], [5, 5, 32, 32], 1, 'valid'), 'direct', '5x5');
        assert.equal(conv2DPath([2, 4, 4, 32], [3, 3, 32, 32], 1, 'valid'), 'direct', 'one tile an image');
        assert.equal(conv2DPath([2, 9, 9, 32], [3, 3, 32, 32], 1, 'valid'), 'winograd');
        assert.equal(
          conv2DPath([2, 9, 9, 16], [3, 3, 16, 32], 1, 'valid', 1, true),
          'direct',
          'filter gradient',
        );
        assert.equal(conv2DPath([2, 9, 9, 32], [3, 3, 32, 32], 1, 'valid', 1, true), 'winograd');
        const previous = useWinograd(false);
        try {
          assert.equal(conv2DPath([2, 9, 9, 32], [3, 3, 32, 32], 1, 'valid'), 'direct');
        } finally {
          useWinograd(previous);
        }
      });
    }

    it('adds a bias over the last axis, and every other add, as cpu does', async () => {
      for (const [a, b] of [
        [[2, 3, 4, 8], [8]],
        [[5, 12], [12]],
        [[5, 6], [6]],
        [
          [2, 3, 8],
          [2, 3, 8],
        ],
        [[2, 3, 8], []],
        [
          [2, 3, 8],
          [3, 1],
        ],
      ]) {
        const build = (): tf.Tensor[] => [filled(a, 51), b.length ? filled(b, 52) : tf.scalar(0.25)];
        const expected = await outputsOn('cpu', build, (x, y) => tf.add(x, y));
        const actual = await outputsOn('wasm', build, (x, y) => tf.add(x, y));
        assert.ok(maxAbsDiff(actual, expected) <= 1e-6, `add ${a} + ${b}`);
      }
      await compare(
        'bias add',
        () => [filled([3, 4, 8], 53), filled([8], 54)],
        (x, y) => tf.add(x, y),
      );
    });

    it('clones (as TF.js saves tensors for the backward pass) without copying, and the clone outlives its source', async () => {
      await useBackend(['wasm']);
      const backend = tf.backend() as unknown as { numDataIds(): number };
      const x = filled([64, 26, 26, 8], 61);
      const expected = (await x.data()) as Float32Array;
      const buffers = backend.numDataIds();
      const copy = tf.clone(x);
      assert.equal(backend.numDataIds(), buffers, 'a clone shares its data');
      x.dispose();
      assert.deepEqual((await copy.data()) as Float32Array, expected);
      copy.dispose();
      assert.equal(backend.numDataIds(), buffers - 1, 'the data is freed with its last tensor');
    });

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
      // Windows that tile the input: the tiling kernels (2x2 unrolled, and any size).
      { x: [2, 10, 12, 8], size: 2, strides: 2, pad: 'valid' },
      { x: [2, 10, 11, 4], size: 3, strides: 3, pad: 'valid' },
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
        // Shifted, so that windows of zeros get a gradient the ReLU must stop (fused or not).
        await compare(
          `maxPool(relu) + 1 ${shape}`,
          () => [tf.tensor(values(n, 13), shape)],
          (x) => tf.add(tf.maxPool(tf.relu(x) as tf.Tensor4D, 2, 2, 'valid'), 1),
        );
        // As layers build it: a bias, the ReLU, the pooling (the bias gradient summed as the
        // pooling gradient is written, where the 2x2 kernel runs).
        await compare(
          `maxPool(relu(x + bias)) + 1 ${shape}`,
          () => [tf.tensor(values(n, 13), shape), tf.tensor(values(shape[3], 14), [shape[3]])],
          (x, bias) => tf.add(tf.maxPool(tf.relu(tf.add(x, bias)) as tf.Tensor4D, 2, 2, 'valid'), 1),
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

    for (const [m, k, n] of [
      [64, 40, 16],
      [5, 24, 8],
      [2, 16, 24],
    ] as const) {
      it(`matMul ${m}x${k} by ${k}x${n} on the heap kernels (both gradients, batched, fused bias and ReLU) matches cpu`, async () => {
        for (const [ta, tb] of [
          [false, false],
          [true, false],
          [false, true],
        ] as const) {
          const a = ta ? [k, m] : [m, k];
          const b = tb ? [n, k] : [k, n];
          // The forward product and both products of its gradient take the heap kernels.
          const heapPaths = heap ? 'heap' : 'native';
          assert.equal(matMulPath(a, b, ta, tb), heapPaths, `path of ${a} x ${b} (${ta}, ${tb})`);
          if (!ta && !tb) {
            assert.equal(matMulPath([m, n], [k, n], false, true), heapPaths, 'dx path');
            assert.equal(matMulPath([m, k], [m, n], true, false), heapPaths, 'dW path');
            assert.equal(matMulPath(a, b, false, false, true), heapPaths, 'fused path');
          }
          const size = (shape: number[]): number => shape.reduce((p, q) => p * q, 1);
          await compare(
            `matMul ${a} x ${b}`,
            () => [tf.tensor(values(size(a), 21), a), tf.tensor(values(size(b), 22), b)],
            (x, y) => tf.matMul(x, y, ta, tb),
          );
          await compare(
            `batched matMul ${a} x ${b}`,
            () => [
              tf.tensor(values(3 * size(a), 23), [3, ...a]),
              tf.tensor(values(3 * size(b), 24), [3, ...b]),
            ],
            (x, y) => tf.matMul(x, y, ta, tb),
          );
          // Outside a gradient TF.js runs the fused kernel (inside it, a product, an add and a ReLU).
          const build = () => [
            tf.tensor(values(size(a), 25), a),
            tf.tensor(values(size(b), 26), b),
            tf.tensor(values(n, 27), [n]),
          ];
          const fusedProduct = (x: tf.Tensor, y: tf.Tensor, bias: tf.Tensor) =>
            tf.fused.matMul({ a: x, b: y, transposeA: ta, transposeB: tb, bias, activation: 'relu' });
          const expected = await outputsOn('cpu', build, fusedProduct);
          const actual = await outputsOn('wasm', build, fusedProduct);
          assert.ok(expected.some((v) => v === 0) && expected.some((v) => v > 0), 'ReLU cuts some outputs');
          assert.ok(
            maxAbsDiff(actual, expected) <= 1e-4 * Math.max(1, maxAbs(expected)),
            `fused ${a} x ${b}`,
          );
        }
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
