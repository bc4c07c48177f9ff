/**
 * Data-parallel training across worker threads: each batch is split across `threads` shards
 * (this thread computes the first, helper threads the others), the shards' gradients are summed
 * through shared memory, and one optimizer step updates the model here. Every shard's loss is
 * its share of the whole batch's mean, so the summed gradient is the batch gradient a single
 * thread computes, up to float rounding.
 *
 * It plugs into `model.fit` by replacing the model's train function, so validation, metrics,
 * class weights, callbacks and cancellation all work as with one thread. The helpers are
 * synchronised with Atomics (the train function is synchronous): this thread blocks while they
 * finish, which is fine in the training worker, never on Node-RED's thread.
 */
import path from 'node:path';
import { Worker } from 'node:worker_threads';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import type { BackendChoice } from './trainer';

/** Control words in the shared Int32Array. */
export const enum Ctrl {
  /** Incremented by the coordinator to start a step. */
  Generation = 0,
  /** Helpers that finished the current step. */
  Done = 1,
  /** Rows in the current batch. */
  Rows = 2,
  /** Non-zero: helpers exit. */
  Stop = 3,
  /** Non-zero: a helper failed (its message is posted). */
  Failed = 4,
  /** 1 when the batch carries sample weights. */
  Weighted = 5,
  /** Control words before the shard bounds: shard i is rows [Shards + i, Shards + i + 1). */
  Shards = 6,
}

/** What a helper thread is started with (workerData). */
export interface HelperInit {
  index: number;
  threads: number;
  backend: BackendChoice;
  topology: object;
  /** Every weight of the model, in model.getWeights() order. */
  weights: Float32Array[];
  loss: string;
  metrics: string[];
  inputShape: number[];
  targetShape: number[];
  maxRows: number;
  ctrl: SharedArrayBuffer;
  params: SharedArrayBuffer;
  x: SharedArrayBuffer;
  y: SharedArrayBuffer;
  sampleWeights: SharedArrayBuffer;
  grads: SharedArrayBuffer;
  /** Float64 per shard: loss sum, loss count, then sum and count per metric. */
  stats: SharedArrayBuffer;
  /** Float64: when the current step started, then per helper its HELPER_PHASES totals (ms). */
  timing: SharedArrayBuffer;
}

/** Where a helper's time goes, per step: summed over steps in the shared timing buffer. */
export const HELPER_PHASES = ['wake', 'load', 'compute', 'write'] as const;

/** Where the coordinating thread's time goes, per step. */
export const COORDINATOR_PHASES = ['share', 'compute', 'wait', 'sum', 'apply'] as const;

/** A time stamp that threads of one process agree on (ms). */
export function sharedNow(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Milliseconds spent per phase, summed over the steps so far: this thread's COORDINATOR_PHASES
 * and, per helper, its HELPER_PHASES (wake: from the step's start until the helper runs).
 */
export interface StepProfile {
  steps: number;
  coordinator: Record<(typeof COORDINATOR_PHASES)[number], number>;
  helpers: Array<Record<(typeof HELPER_PHASES)[number], number>>;
}

// Kept in its own module so callers in the main thread need not load TF.js for it.
export { defaultTrainingThreads } from './threads';

/** Rows [start, end) of shard `index` of `threads` over a batch of `rows` (shard 0 is never empty). */
export function shardRows(rows: number, index: number, threads: number): [number, number] {
  return [Math.ceil((index * rows) / threads), Math.ceil(((index + 1) * rows) / threads)];
}

/**
 * Shard bounds (threads + 1 of them) that split `rows` in proportion to each thread's speed in
 * rows per millisecond, so that the shards finish together; shard 0 gets at least one row, and
 * equal speeds give shardRows' split.
 */
export function balancedShards(rows: number, speeds: number[]): number[] {
  const total = speeds.reduce((a, b) => a + b, 0);
  const bounds = [0];
  let share = 0;
  for (let i = 0; i < speeds.length; i++) {
    share += speeds[i];
    const end = i === speeds.length - 1 ? rows : Math.ceil((share / total) * rows - 1e-9);
    bounds.push(Math.min(rows, Math.max(i === 0 ? 1 : bounds[i], end)));
  }
  return bounds;
}

/** Weight of the latest step in each thread's running speed. */
const SPEED_SMOOTHING = 0.3;

type LossFn = (yTrue: tf.Tensor, yPred: tf.Tensor) => tf.Tensor;

/** The model that fit() runs: a Sequential delegates to an inner functional model. */
function trainingCore(model: tfl.LayersModel): tfl.LayersModel {
  return model instanceof tfl.Sequential ? (model as unknown as { model: tfl.LayersModel }).model : model;
}

/** The loss and metric functions of a compiled model (tfjs-layers keeps them as fields). */
export function compiledFunctions(model: tfl.LayersModel): { loss: LossFn; metrics: LossFn[] } {
  const m = trainingCore(model) as unknown as {
    lossFunctions: LossFn[];
    metricsTensors: Array<[LossFn, number]>;
  };
  if (!m.lossFunctions || m.lossFunctions.length !== 1) throw new Error('parallel training needs one loss');
  return { loss: m.lossFunctions[0], metrics: (m.metricsTensors ?? []).map(([fn]) => fn) };
}

export interface ShardResult {
  /** In the order of the variables given. */
  grads: tf.Tensor[];
  /** Loss sum, loss count, then sum and count per metric. */
  stats: number[];
}

/**
 * Gradients of one shard's part of the batch mean loss: the sum of its (weighted) per-sample
 * losses over the whole batch's count, so that the shards' gradients add up to the batch's.
 */
export function shardGradients(
  model: tfl.LayersModel,
  fns: { loss: LossFn; metrics: LossFn[] },
  variables: tf.Variable[],
  x: tf.Tensor,
  y: tf.Tensor,
  sampleWeights: tf.Tensor | undefined,
  batchRows: number,
): ShardResult {
  const rows = x.shape[0];
  const stats: number[] = [];
  const { value, grads } = tf.variableGrads(() => {
    const out = model.apply(x, { training: true }) as tf.Tensor;
    let loss = fns.loss(y, out);
    if (sampleWeights) loss = tf.mul(loss, sampleWeights);
    const perRow = loss.size / rows;
    const sum = tf.sum(loss);
    stats.push(0, loss.size);
    for (const metric of fns.metrics) {
      const values = metric(y, out);
      stats.push(tf.sum(values).dataSync()[0], values.size);
    }
    return tf.div(sum, perRow * batchRows) as tf.Scalar;
  }, variables);
  stats[0] = value.dataSync()[0] * (stats[1] / rows) * batchRows;
  value.dispose();
  return { grads: variables.map((v) => grads[v.name]), stats };
}

/** The variables the optimizer updates, in the order fit() passes them. */
export function trainableVariables(model: tfl.LayersModel): tf.Variable[] {
  return model.trainableWeights.map((w) => (w as unknown as { read(): tf.Variable }).read());
}

/** Float count of each shape. */
const sizes = (shapes: number[][]): number[] => shapes.map((s) => s.reduce((a, b) => a * b, 1));

export interface ParallelOptions {
  threads: number;
  backend: BackendChoice;
  loss: string;
  metrics: string[];
  /** Per-sample input and target shapes as the model's fit receives them. */
  inputShape: number[];
  targetShape: number[];
  maxRows: number;
  /** Longest a step may wait for the helpers. */
  stepTimeoutMs?: number;
  /**
   * Split each batch by the threads' measured speeds instead of evenly. Off by default: on the
   * shared 2-core development machine a shard's time followed the CPU time it got, not its rows,
   * and the balanced split measured 0.87-0.89x the even one's speed in 2 of 3 runs
   * (`npm run bench:train-profile`).
   */
  balance?: boolean;
}

/** Path of the compiled helper thread script (beside this file). */
export const PARALLEL_WORKER_SCRIPT = path.join(__dirname, 'parallel-worker.js');

export class ParallelTrainer {
  private readonly ctrl: Int32Array;
  private readonly params: Float32Array;
  private readonly x: Float32Array;
  private readonly y: Float32Array;
  private readonly sampleWeights: Float32Array;
  private readonly grads: Float32Array;
  private readonly stats: Float64Array;
  private readonly timing: Float64Array;
  private readonly sizes: number[];
  private steps = 0;
  /** Rows per millisecond of each thread's shard (running average), for the next split. */
  private readonly speeds: number[];
  private helperBusy: number[];
  private readonly phases = Object.fromEntries(
    COORDINATOR_PHASES.map((p) => [p, 0]),
  ) as StepProfile['coordinator'];
  private failure: Error | undefined;
  private closed = false;

  private constructor(
    private readonly model: tfl.LayersModel,
    private readonly options: ParallelOptions,
    private readonly helpers: Worker[],
    buffers: Omit<
      HelperInit,
      | 'index'
      | 'threads'
      | 'backend'
      | 'topology'
      | 'weights'
      | 'loss'
      | 'metrics'
      | 'inputShape'
      | 'targetShape'
      | 'maxRows'
    >,
  ) {
    this.ctrl = new Int32Array(buffers.ctrl);
    this.params = new Float32Array(buffers.params);
    this.x = new Float32Array(buffers.x);
    this.y = new Float32Array(buffers.y);
    this.sampleWeights = new Float32Array(buffers.sampleWeights);
    this.grads = new Float32Array(buffers.grads);
    this.stats = new Float64Array(buffers.stats);
    this.timing = new Float64Array(buffers.timing);
    this.speeds = new Array<number>(options.threads).fill(1);
    this.helperBusy = new Array<number>(options.threads).fill(0);
    this.sizes = sizes(this.variables.map((v) => v.shape));
    for (const helper of helpers) {
      helper.on('message', (m: { error?: string }) => {
        if (m.error) this.failure ??= new Error(`a training thread failed: ${m.error}`);
      });
      helper.on('error', (err) => (this.failure ??= err));
    }
  }

  private get variables(): tf.Variable[] {
    return trainableVariables(this.model);
  }

  /**
   * Starts `threads - 1` helper threads holding copies of the compiled `model` and resolves once
   * they are ready; `install()` then makes `model.fit` train in parallel.
   */
  static async start(model: tfl.LayersModel, options: ParallelOptions): Promise<ParallelTrainer> {
    const threads = options.threads;
    if (!(Number.isInteger(threads) && threads >= 2))
      throw new Error(`parallel training needs 2 or more threads, got ${threads}`);
    if (model.inputs.length !== 1 || model.outputs.length !== 1)
      throw new Error('parallel training needs a model with one input and one output');
    if (model.losses.length > 0) throw new Error('parallel training does not support regularisation losses');
    const paramCount = sizes(trainableVariables(model).map((v) => v.shape)).reduce((a, b) => a + b, 0);
    const inSize = sizes([options.inputShape])[0];
    const outSize = sizes([options.targetShape])[0];
    const shards = threads - 1;
    const buffers = {
      ctrl: new SharedArrayBuffer((Ctrl.Shards + threads + 1) * 4),
      params: new SharedArrayBuffer(paramCount * 4),
      x: new SharedArrayBuffer(options.maxRows * inSize * 4),
      y: new SharedArrayBuffer(options.maxRows * outSize * 4),
      sampleWeights: new SharedArrayBuffer(options.maxRows * 4),
      grads: new SharedArrayBuffer(shards * paramCount * 4),
      stats: new SharedArrayBuffer(threads * (2 + 2 * options.metrics.length) * 8),
      timing: new SharedArrayBuffer((1 + threads * HELPER_PHASES.length) * 8),
    };
    const topology = model.toJSON(null, false) as object;
    const weights = model.getWeights().map((w) => w.dataSync() as Float32Array);
    const helpers: Worker[] = [];
    const ready: Promise<void>[] = [];
    for (let index = 1; index < threads; index++) {
      const init: HelperInit = {
        index,
        threads,
        backend: options.backend,
        topology,
        weights,
        loss: options.loss,
        metrics: options.metrics,
        inputShape: options.inputShape,
        targetShape: options.targetShape,
        maxRows: options.maxRows,
        ...buffers,
      };
      const worker = new Worker(PARALLEL_WORKER_SCRIPT, { workerData: init });
      helpers.push(worker);
      ready.push(
        new Promise<void>((resolve, reject) => {
          worker.once('message', (msg: { ready?: boolean; error?: string }) =>
            msg.ready ? resolve() : reject(new Error(`a training thread failed to start: ${msg.error}`)),
          );
          worker.once('error', reject);
          worker.once('exit', (code) =>
            reject(new Error(`a training thread exited (${code}) while starting`)),
          );
        }),
      );
    }
    try {
      await Promise.all(ready);
    } catch (err) {
      await Promise.all(helpers.map((h) => h.terminate()));
      throw err;
    }
    return new ParallelTrainer(model, options, helpers, buffers);
  }

  /** Makes `model.fit` train through this trainer until close(). */
  install(): void {
    const model = trainingCore(this.model) as unknown as {
      makeTrainFunction: () => (data: tf.Tensor[]) => tf.Scalar[];
    };
    model.makeTrainFunction = () => (data) => this.step(data);
  }

  /** One batch: shards computed here and in the helpers, gradients summed, one optimizer step. */
  step(data: tf.Tensor[]): tf.Scalar[] {
    if (this.closed) throw new Error('the parallel trainer is closed');
    if (this.failure) throw this.failure;
    const [x, y, sw] = data;
    const rows = x.shape[0];
    if (rows > this.options.maxRows)
      throw new Error(`a batch of ${rows} rows exceeds ${this.options.maxRows}`);
    let mark = sharedNow();
    const phase = (name: keyof StepProfile['coordinator']): void => {
      const now = sharedNow();
      this.phases[name] += now - mark;
      mark = now;
    };
    const variables = this.variables;
    let offset = 0;
    for (const v of variables) {
      const values = v.dataSync() as Float32Array;
      this.params.set(values, offset);
      offset += values.length;
    }
    this.x.set(x.dataSync() as Float32Array);
    this.y.set(y.dataSync() as Float32Array);
    if (sw) this.sampleWeights.set(sw.dataSync() as Float32Array);
    const threads = this.options.threads;
    const bounds = balancedShards(rows, this.speeds);
    bounds.forEach((b, i) => Atomics.store(this.ctrl, Ctrl.Shards + i, b));
    Atomics.store(this.ctrl, Ctrl.Rows, rows);
    Atomics.store(this.ctrl, Ctrl.Weighted, sw ? 1 : 0);
    Atomics.store(this.ctrl, Ctrl.Done, 0);
    this.timing[0] = sharedNow();
    Atomics.add(this.ctrl, Ctrl.Generation, 1);
    Atomics.notify(this.ctrl, Ctrl.Generation);
    phase('share');

    const fns = compiledFunctions(this.model);
    const [start, end] = [bounds[0], bounds[1]];
    const part = (t: tf.Tensor) => tf.slice(t, start, end - start);
    const inputs = sw ? [part(x), part(y), part(sw)] : [part(x), part(y)];
    let own: ShardResult;
    try {
      own = shardGradients(this.model, fns, variables, inputs[0], inputs[1], inputs[2], rows);
    } finally {
      tf.dispose(inputs);
    }
    const ownMs = sharedNow() - mark;
    phase('compute');
    this.waitForHelpers();
    phase('wait');
    this.updateSpeeds(bounds, ownMs);
    const statWidth = 2 + 2 * fns.metrics.length;
    const totals = own.stats.slice();
    for (let h = 1; h < threads; h++) {
      for (let k = 0; k < statWidth; k++) totals[k] += this.stats[h * statWidth + k];
    }
    const paramCount = this.params.length;
    const named: tf.NamedTensorMap = {};
    tf.tidy(() => {
      let at = 0;
      variables.forEach((v, i) => {
        let g = own.grads[i];
        for (let h = 0; h < threads - 1; h++) {
          const from = h * paramCount + at;
          g = tf.add(g, tf.tensor(this.grads.subarray(from, from + this.sizes[i]), v.shape));
        }
        named[v.name] = tf.keep(g);
        at += this.sizes[i];
      });
    });
    tf.dispose(own.grads);
    phase('sum');
    const optimizer = trainingCore(this.model).optimizer;
    optimizer.applyGradients(named);
    tf.dispose(Object.values(named));
    phase('apply');
    this.steps++;
    const out = [tf.scalar(totals[0] / totals[1])];
    for (let k = 0; k < fns.metrics.length; k++) out.push(tf.scalar(totals[2 + 2 * k] / totals[3 + 2 * k]));
    return out;
  }

  /**
   * Each thread's speed from this step: its rows over its busy time (here: its shard; a helper:
   * from the step's start until its gradients are written), as a running average.
   */
  private updateSpeeds(bounds: number[], ownMs: number): void {
    const width = HELPER_PHASES.length;
    for (let t = 0; t < this.options.threads; t++) {
      let busy = ownMs;
      if (t > 0) {
        let total = 0;
        for (let k = 0; k < width; k++) total += this.timing[1 + t * width + k];
        busy = total - this.helperBusy[t];
        this.helperBusy[t] = total;
      }
      const rows = bounds[t + 1] - bounds[t];
      if (rows > 0 && busy > 0 && this.options.balance === true) {
        this.speeds[t] += SPEED_SMOOTHING * (rows / busy - this.speeds[t]);
      }
    }
  }

  /** Rows of the next batch of `rows` each thread computes (from the measured speeds). */
  nextSplit(rows: number): number[] {
    const bounds = balancedShards(rows, this.speeds);
    return bounds.slice(1).map((b, i) => b - bounds[i]);
  }

  /** Where the steps' time went so far (see StepProfile). */
  profile(): StepProfile {
    const width = HELPER_PHASES.length;
    const helpers = [];
    for (let h = 1; h < this.options.threads; h++) {
      helpers.push(
        Object.fromEntries(
          HELPER_PHASES.map((p, k) => [p, this.timing[1 + h * width + k]]),
        ) as StepProfile['helpers'][number],
      );
    }
    return { steps: this.steps, coordinator: { ...this.phases }, helpers };
  }

  private waitForHelpers(): void {
    const helpers = this.options.threads - 1;
    const deadline = Date.now() + (this.options.stepTimeoutMs ?? 600_000);
    for (;;) {
      const done = Atomics.load(this.ctrl, Ctrl.Done);
      if (Atomics.load(this.ctrl, Ctrl.Failed) !== 0) {
        throw this.failure ?? new Error('a training thread failed');
      }
      if (done >= helpers) return;
      if (Date.now() > deadline) throw new Error('the training threads did not answer in time');
      Atomics.wait(this.ctrl, Ctrl.Done, done, 1000);
    }
  }

  /** Ends the helper threads. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    Atomics.store(this.ctrl, Ctrl.Stop, 1);
    Atomics.add(this.ctrl, Ctrl.Generation, 1);
    Atomics.notify(this.ctrl, Ctrl.Generation);
    await Promise.all(this.helpers.map((h) => h.terminate()));
  }
}
