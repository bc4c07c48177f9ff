import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type * as OrtWeb from 'onnxruntime-web';
import { InputError } from '../../lib/errors';
import {
  availableOrtRuntimes,
  liveOrtSessionCount as liveOrtSessions,
} from '../../lib/models/runtime/ort-session';
import { OrtRunner } from '../../lib/models/runtime/ort-runner';
import { loadOrt } from '../../lib/models/runtime/ort-session';
import { createRunner } from '../../lib/models/runtime/select';
import { useBackend } from '../../lib/models/runtime/tfjs';
import {
  representativeFeeds,
  VerifyingRunner,
  type VerificationDecision,
} from '../../lib/models/runtime/verify';
import { prepareFeeds, interpretOutputs } from '../../lib/models/serve/inference';
import { ModelHandle } from '../../lib/models/serve/model-handle';
import {
  checkStreamSettings,
  messageInputs,
  parseConstants,
  parseStatePairs,
  StreamStates,
} from '../../lib/models/serve/streams';
import { readModelFiles } from '../../lib/models/store/model-files';
import { runStreamJobs, streamsBatchable, type StreamJob } from '../../lib/models/serve/stream-batch';
import { denseOnlyExporter, onnxStatefulRnn } from '../fixtures/onnx-fixtures';
import { maxAbsDiff, randomValues } from '../fixtures/reference';
import { keras2Dense, keras3TwoInputs } from '../fixtures/tfjs-fixtures';
import { sharedDir } from '../helpers/shared-data';

describe('several inputs and outputs, stateful streams, export verification', function () {
  this.timeout(60000);
  let root: string;
  before(async () => {
    root = await fs.mkdtemp(path.join(os.tmpdir(), 'edge-multi-io-'));
    await useBackend(['wasm', 'cpu']);
  });
  after(() => fs.rm(root, { recursive: true, force: true }));

  it('runs a two-input, two-output Keras 3 functional model by input and output name', async () => {
    const fixture = await keras3TwoInputs(path.join(root, 'two'));
    const handle = new ModelHandle({ userDir: root });
    try {
      const info = await handle.load(fixture.entry);
      // Exported to ONNX (two inputs, two outputs) and checked against TF.js at load.
      assert.match(info.runtime, /^onnxruntime-/);
      assert.match(info.notes.join(' '), /exported to ONNX/);
      assert.deepEqual(
        info.inputs.map((s) => [s.name, s.shape]),
        [
          ['sensor', [4]],
          ['context', [3]],
        ],
      );
      assert.deepEqual(
        info.outputs.map((s) => [s.name, s.shape]),
        [
          ['class', [3]],
          ['level', [1]],
        ],
      );
      const sensor = randomValues(12, 5, 1.5);
      const context = randomValues(9, 6, 1.5);
      const lease = handle.lease();
      const out = await (lease.runner.run as NonNullable<typeof lease.runner.run>)({ sensor, context }, 3);
      lease.release();
      for (let i = 0; i < 3; i++) {
        const want = fixture.reference2(
          sensor.subarray(i * 4, i * 4 + 4),
          context.subarray(i * 3, i * 3 + 3),
        );
        assert.ok(maxAbsDiff(out.class.subarray(i * 3, i * 3 + 3), want.class) < 1e-5);
        assert.ok(maxAbsDiff(out.level.subarray(i, i + 1), want.level) < 1e-5);
      }
      // A message feeds it as an object by name or an array in input order, never half of it.
      const byName = prepareFeeds({ sensor: [1, 2, 3, 4], context: [5, 6, 7] }, info.inputs);
      const byOrder = prepareFeeds(
        [
          [1, 2, 3, 4],
          [5, 6, 7],
        ],
        info.inputs,
      );
      assert.deepEqual(byName, byOrder);
      assert.throws(() => prepareFeeds({ sensor: [1, 2, 3, 4] }, info.inputs), /lacks context/);
      assert.throws(() => prepareFeeds([1, 2, 3, 4, 5, 6, 7], info.inputs), InputError);
      assert.throws(
        () => prepareFeeds({ sensor: [1, 2, 3], context: [5, 6, 7] }, info.inputs),
        /input sensor:/,
      );
      const result = interpretOutputs(
        { class: out.class.subarray(0, 3), level: out.level.subarray(0, 1) },
        info.outputs,
        'regress',
        {
          outputName: 'level',
        },
      );
      assert.equal(result.value, out.level[0]);
      assert.deepEqual(Object.keys(result.outputs ?? {}), ['class', 'level']);
    } finally {
      await handle.close();
    }
  });

  for (const directions of [1, 2] as const) {
    it(`runs queued messages of many streams as batches, equal to one by one (state [${directions}, batch, 8])`, async function () {
      const runtime = availableOrtRuntimes()[0];
      if (!runtime) {
        console.log('      no ONNX Runtime loads here; skipping');
        this.skip();
      }
      const { bytes, features } = onnxStatefulRnn(91, directions);
      const runner = await OrtRunner.create(bytes, runtime);
      try {
        assert.deepEqual(
          runner.inputs.map((x) => [x.name, x.shape, x.batchAxis ?? 0]),
          [
            ['input', [4], 0],
            ['sr', [1], 0],
            ['h', [directions, 8], 1],
            ['c', [directions, 8], 1],
          ],
        );
        const settings = (maxStreams: number) => ({
          state: parseStatePairs('hn:h, cn:c'),
          constants: parseConstants('sr=16000'),
          maxStreams,
        });
        const fromMessage = messageInputs(settings(1), runner.inputs);
        assert.ok(streamsBatchable(new StreamStates(settings(1)), runner.inputs, runner.outputs));
        // 16 streams, 3 messages each, queued interleaved; a bad message fails alone.
        const jobs: StreamJob[] = [];
        for (let m = 0; m < 3; m++) {
          for (let s = 0; s < 16; s++) {
            const bad = m === 1 && s === 5;
            jobs.push({
              stream: `t${s}`,
              feeds: bad
                ? new InputError('bad payload')
                : { input: randomValues(features, 1000 + m * 16 + s, 1.5) },
            });
          }
        }
        assert.deepEqual(
          fromMessage.map((x) => x.name),
          ['input'],
        );
        for (const maxStreams of [100, 10]) {
          const batched = new StreamStates(settings(maxStreams));
          const single = new StreamStates(settings(maxStreams));
          const got = await runStreamJobs(runner, batched, runner.inputs, jobs, true);
          const want = await runStreamJobs(runner, single, runner.inputs, jobs, false);
          got.forEach((r, i) => {
            const w = want[i];
            if (w instanceof Error) {
              assert.ok(r instanceof Error, `job ${i} fails both ways`);
              return;
            }
            assert.ok(!(r instanceof Error), `job ${i}: ${String(r)}`);
            for (const name of ['output', 'hn', 'cn']) {
              assert.deepEqual(Array.from(r.outputs[name]), Array.from(w.outputs[name]), `job ${i} ${name}`);
            }
            assert.equal(w.batchSize, 1);
            // Within the bound, the n-th message of every stream runs in one call (t5's third
            // message is its second that runs, so it joins the second call); above it, one by one.
            const calls = i < 32 || i === 32 + 5 ? 16 : 15;
            assert.equal(r.batchSize, maxStreams === 100 ? calls : 1, `job ${i}`);
          });
          assert.equal(batched.size, single.size);
          assert.equal(batched.evicted, single.evicted);
        }
      } finally {
        await runner.dispose();
      }
    });
  }

  it('carries an ONNX RNN state per stream, matching direct ONNX Runtime calls exactly', async function () {
    const runtime = availableOrtRuntimes()[0];
    if (!runtime) {
      console.log('      no ONNX Runtime loads here; skipping');
      this.skip();
    }
    const { bytes, hidden, features } = onnxStatefulRnn();
    const runner = await OrtRunner.create(bytes, runtime);
    const ort = loadOrt(runtime) as typeof OrtWeb;
    const direct = await ort.InferenceSession.create(bytes);
    try {
      assert.deepEqual(
        runner.inputs.map((s) => [s.name, s.dtype, s.batched, s.batchAxis ?? 0]),
        [
          ['input', 'float32', true, 0],
          // One fixed value beside the batch: the same for every sample of a batch.
          ['sr', 'int64', false, 0],
          // LSTM state [1, batch, hidden]: batched along axis 1.
          ['h', 'float32', true, 1],
          ['c', 'float32', true, 1],
        ],
      );
      const settings = {
        state: parseStatePairs('hn:h, cn -> c'),
        constants: parseConstants('sr=16000'),
        maxStreams: 2,
      };
      checkStreamSettings(settings, runner.inputs, runner.outputs);
      assert.deepEqual(
        messageInputs(settings, runner.inputs).map((s) => s.name),
        ['input'],
      );
      const streams = new StreamStates(settings);
      // Direct calls with the state handled by hand, one stream per topic.
      const directState: Record<string, { h: Float32Array; c: Float32Array }> = {};
      const directStep = async (topic: string, x: Float32Array): Promise<Float32Array> => {
        const s = (directState[topic] ??= { h: new Float32Array(hidden), c: new Float32Array(hidden) });
        const r = await direct.run({
          input: new ort.Tensor('float32', x, [1, features]),
          sr: new ort.Tensor('int64', BigInt64Array.of(16000n), [1]),
          h: new ort.Tensor('float32', s.h, [1, 1, hidden]),
          c: new ort.Tensor('float32', s.c, [1, 1, hidden]),
        });
        directState[topic] = { h: r.hn.data as Float32Array, c: r.cn.data as Float32Array };
        return r.output.data as Float32Array;
      };
      const step = async (topic: string, x: Float32Array): Promise<Float32Array> => {
        const feeds = { ...streams.feedsFor(topic, runner.inputs), input: x };
        const out = await runner.run(feeds, 1);
        streams.update(topic, out);
        return out.output;
      };
      const outputs: number[] = [];
      for (let i = 0; i < 4; i++) {
        for (const topic of ['a', 'b']) {
          const x = randomValues(features, 100 + i * 2 + (topic === 'a' ? 0 : 1), 1.5);
          const got = await step(topic, x);
          assert.deepEqual(Array.from(got), Array.from(await directStep(topic, x)), `${topic} message ${i}`);
          outputs.push(got[0]);
        }
      }
      // The state matters: the same input gives another output once the stream has history.
      const x0 = randomValues(features, 100, 1.5);
      streams.reset('a');
      assert.deepEqual(Array.from(await step('a', x0)), [outputs[0]], 'a reset stream starts from zeros');
      assert.notEqual(outputs[0], (await step('a', x0))[0]);
      // At most two streams: a third forgets the one unused longest ('b').
      await step('c', x0);
      assert.equal(streams.size, 2);
      assert.equal(streams.evicted, 1);
      assert.deepEqual(Array.from(await step('b', x0)), [outputs[0]], 'an evicted stream starts afresh');
    } finally {
      await runner.dispose();
      await direct.release();
    }
    assert.throws(
      () =>
        checkStreamSettings(
          { state: [{ output: 'hx', input: 'h' }], constants: {}, maxStreams: 1 },
          runner.inputs,
          runner.outputs,
        ),
      /state output "hx" is not an output of the model \(output, hn, cn\)/,
    );
    assert.throws(() => parseStatePairs('hn'), /not output:input/);
    assert.throws(() => parseConstants('sr=fast'), /not name=number/);
  });

  it('reports what a .tflite file converted to (kind, operators, input quantization) with the loaded model', async function () {
    const file = sharedDir('models', 'tflite', 'hello_world_int8.tflite');
    const exists = await fs.stat(file).then(
      () => true,
      () => false,
    );
    if (!exists || availableOrtRuntimes().length === 0) {
      console.log(`      ${exists ? 'no ONNX Runtime loads here' : `${file} is not here`}; skipping`);
      this.skip();
    }
    await fs.copyFile(file, path.join(root, 'hello.tflite'));
    const handle = new ModelHandle({ userDir: root });
    try {
      const info = await handle.load('hello.tflite');
      assert.equal(info.tflite?.quantization, 'int8');
      assert.ok((info.tflite?.opCounts.FULLY_CONNECTED ?? 0) >= 1);
      assert.ok((info.tflite?.inputs[0].quantization?.scale ?? 0) > 0);
      assert.deepEqual(
        info.inputs.map((s) => s.shape),
        [[1]],
      );
    } finally {
      await handle.close();
    }
  });

  describe('verifying a layers model export on representative inputs', () => {
    let files: Awaited<ReturnType<typeof readModelFiles>>;
    let reference: (x: Float32Array) => Float32Array;
    before(async () => {
      const fixture = await keras2Dense(path.join(root, 'dense'));
      reference = fixture.reference;
      files = await readModelFiles(fixture.entry, { root });
    });

    it('uses an export that is wrong only off its real inputs once the first messages agree', async () => {
      const decisions: VerificationDecision[] = [];
      const chosen = await createRunner(files, {
        exporter: denseOnlyExporter(0, true),
        verifyMessages: 4,
        onVerified: (d) => decisions.push(d),
      });
      assert.ok(chosen.runner instanceof VerifyingRunner);
      assert.match(chosen.runner.runtime, /^tfjs-/);
      assert.match(chosen.fallbackReason ?? '', /random probe.*checked on the first 4 messages/);
      const counts = Float32Array.from({ length: 8 }, (_, i) => (i * 7) % 3);
      for (let i = 0; i < 2; i++) {
        const out = await chosen.runner.predict(counts, 2);
        assert.ok(maxAbsDiff(out.subarray(0, 3), reference(counts.subarray(0, 4))) < 1e-5);
      }
      assert.equal(decisions.length, 1);
      assert.equal(decisions[0].accepted, true);
      assert.match(chosen.runner.runtime, /^onnxruntime-/);
      assert.ok(
        maxAbsDiff(await chosen.runner.predict(counts.subarray(0, 4), 1), reference(counts.subarray(0, 4))) <
          1e-5,
      );
      await chosen.runner.dispose();
    });

    it('drops an export at the first message it gets wrong and releases its session', async () => {
      const sessions = liveOrtSessions();
      const decisions: VerificationDecision[] = [];
      const chosen = await createRunner(files, {
        exporter: denseOnlyExporter(0.05),
        onVerified: (d) => decisions.push(d),
      });
      assert.equal(liveOrtSessions(), sessions + 1, 'the export is kept while it is checked');
      const x = Float32Array.of(0.5, 1, 0, 2);
      assert.ok(maxAbsDiff(await chosen.runner.predict(x, 1), reference(x)) < 1e-5, 'TF.js answers');
      assert.equal(decisions[0]?.accepted, false);
      assert.match(decisions[0].reason, /differs on the first messages: output \S+ differs by/);
      assert.match(chosen.runner.runtime, /^tfjs-/);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(liveOrtSessions(), sessions);
      await chosen.runner.dispose();
    });

    it('decides at load on a sample saved with the model, or on its normalisation statistics', async () => {
      const sample = [
        [0, 1, 0, 0],
        [1, 0, 2, 0],
      ];
      const withSample = await createRunner(files, { exporter: denseOnlyExporter(0, true), sample });
      assert.equal(withSample.exported, true);
      assert.match(withSample.notes.join('\n'), /on the sample probe/);
      await withSample.runner.dispose();
      const stats = {
        method: 'minmax',
        channels: ['a', 'b', 'c', 'd'],
        mean: [0, 0, 0, 0],
        std: [1, 1, 1, 1],
        min: [0, 0, 0, 0],
        max: [10, 10, 10, 10],
        count: 100,
        range: [0, 1],
        clip: null,
      };
      const probe = representativeFeeds([{ name: 'x', shape: [4], dtype: 'float32', batched: true }], {
        normalisation: stats,
      });
      assert.equal(probe.source, 'normalisation');
      assert.ok(probe.feeds.x.every((v) => v >= 0 && v <= 1));
      const withStats = await createRunner(files, {
        exporter: denseOnlyExporter(0, true),
        normalisation: stats,
      });
      assert.equal(withStats.exported, true);
      await withStats.runner.dispose();
      // The statistics of a z-scored model put its inputs on both sides of 0: the clipping export fails.
      const zscore = { ...stats, method: 'zscore', min: [-5, -5, -5, -5], max: [5, 5, 5, 5], range: [0, 1] };
      const withZ = await createRunner(files, {
        exporter: denseOnlyExporter(0, true),
        normalisation: zscore,
      });
      assert.equal(withZ.exported, false);
      assert.match(withZ.fallbackReason ?? '', /normalisation probe/);
      await withZ.runner.dispose();
    });
  });
});
