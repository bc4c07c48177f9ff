/**
 * Per-class changes to a classifier's logits inside the training loss, and the two label-skew
 * corrections of federated learning built on them. A device of a fleet often sees only a few of
 * the classes (label skew); plain local training then pushes the output layer towards those few,
 * and the average of such updates learns slowly. Both corrections change only the local loss:
 * the model, its update and the aggregation stay as they are.
 *
 * - Restricted softmax (FedRS; Li and Zhan, "FedRS: Federated learning with restricted softmax
 *   for label distribution non-IID data", KDD 2021): the logits of the classes a device has no
 *   sample of are scaled by alpha (0..1) in the loss, so the device pushes them down less.
 * - Logit calibration (FedLC; Zhang et al., "Federated learning with label distribution skew via
 *   logits calibration", ICML 2022): tau x n_c^(-1/4) is subtracted from the logit of class c,
 *   n_c the device's sample count of the class; a class without samples (n_c = 0) leaves the
 *   softmax, as in the paper's formula.
 *
 * The loss needs the logits, and the project's classifiers end in a softmax Dense layer: during
 * training that layer's activation is linear and the loss applies the softmax itself; the saved
 * model has its softmax back.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';

/** `logit_c x scale[c] + offset[c]` before the softmax; an offset of -Infinity leaves class c out. */
export interface LogitAdjust {
  scale?: number[];
  offset?: number[];
}

export type LabelSkewMethod = 'none' | 'restricted-softmax' | 'logit-calibration';
export const LABEL_SKEW_METHODS: readonly LabelSkewMethod[] = [
  'none',
  'restricted-softmax',
  'logit-calibration',
];

/** A label-skew correction of local training: the method and its strength (alpha or tau). */
export interface LabelSkewCorrection {
  method: LabelSkewMethod;
  /** restricted-softmax: alpha, the factor on absent classes' logits (0..1); logit-calibration: tau (>= 0). */
  strength: number;
}

/**
 * The correction a federated edge-train uses unless set: none, as neither beat plain FedAvg in the
 * validation runs of bench:fleet (federated MNIST, two digit classes per device; README).
 */
export const DEFAULT_LABEL_SKEW: LabelSkewMethod = 'none';

/** The default strengths: FedRS's alpha and FedLC's tau. */
export const LABEL_SKEW_STRENGTH: Record<Exclude<LabelSkewMethod, 'none'>, number> = {
  'restricted-softmax': 0.5,
  'logit-calibration': 1,
};

/** A logit far below any real one: the class's softmax share is 0 (exp underflows), not NaN. */
const LEFT_OUT = -1e9;

/** Samples per class of class indices `y`. */
export function classCounts(y: ArrayLike<number>, classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (let i = 0; i < y.length; i++) {
    const c = y[i];
    if (Number.isInteger(c) && c >= 0 && c < classes) counts[c]++;
  }
  return counts;
}

/** FedRS: scale 1 for the classes with samples, alpha for the others. */
export function restrictedSoftmax(counts: number[], alpha: number): LogitAdjust {
  if (!(alpha >= 0 && alpha <= 1))
    throw new Error(`the restricted softmax's alpha must be 0 to 1, got ${alpha}`);
  return { scale: counts.map((n) => (n > 0 ? 1 : alpha)) };
}

/** FedLC: offset -tau x n_c^(-1/4); -Infinity (class left out) where n_c = 0. */
export function calibratedLogits(counts: number[], tau: number): LogitAdjust {
  if (!(tau >= 0)) throw new Error(`the logit calibration's tau must be 0 or more, got ${tau}`);
  return { offset: counts.map((n) => (n > 0 ? -tau * Math.pow(n, -0.25) : -Infinity)) };
}

/** The logit changes of a label-skew correction for a device holding class indices `y`. */
export function labelSkewAdjust(
  correction: LabelSkewCorrection | undefined,
  y: ArrayLike<number>,
  classes: number,
): LogitAdjust | undefined {
  if (!correction || correction.method === 'none') return undefined;
  const counts = classCounts(y, classes);
  if (correction.method === 'restricted-softmax') return restrictedSoftmax(counts, correction.strength);
  if (correction.method === 'logit-calibration') return calibratedLogits(counts, correction.strength);
  throw new Error(
    `unknown label-skew correction "${String(correction.method)}": use ${LABEL_SKEW_METHODS.join(', ')}`,
  );
}

function checkAdjust(adjust: LogitAdjust, classes: number): void {
  for (const [name, list] of [
    ['scale', adjust.scale],
    ['offset', adjust.offset],
  ] as const) {
    if (list === undefined) continue;
    if (!Array.isArray(list) || list.length !== classes) {
      throw new Error(`the logit ${name} needs one value per class (${classes})`);
    }
    for (const v of list) {
      const ok = name === 'scale' ? Number.isFinite(v) : Number.isFinite(v) || v === -Infinity;
      if (typeof v !== 'number' || !ok) throw new Error(`the logit ${name} holds ${String(v)}`);
    }
  }
}

/**
 * The loss of a softmax classifier trained on changed logits: per sample,
 * -sum_c y_c log softmax(logit x scale + offset)_c. `logits` are the head's pre-softmax outputs.
 */
export function adjustedLoss(
  adjust: LogitAdjust,
  classes: number,
): (yTrue: tf.Tensor, logits: tf.Tensor) => tf.Tensor {
  checkAdjust(adjust, classes);
  const scale = adjust.scale ? Float32Array.from(adjust.scale) : undefined;
  const offset = adjust.offset
    ? Float32Array.from(adjust.offset, (v) => (v === -Infinity ? LEFT_OUT : v))
    : undefined;
  return (yTrue, logits) =>
    tf.tidy(() => {
      let z = logits;
      if (scale) z = tf.mul(z, tf.tensor1d(scale));
      if (offset) z = tf.add(z, tf.tensor1d(offset));
      return tf.neg(tf.sum(tf.mul(yTrue, tf.logSoftmax(z)), -1));
    });
}

interface WithActivation {
  activation: { getClassName(): string } | null;
}

/**
 * Makes the model output its head's logits: the last layer, a Dense layer with a softmax, runs
 * with a linear activation until `restore()` puts the softmax back (call it before saving).
 */
export function logitsHead(model: tfl.LayersModel): { restore(): void } {
  const layer = model.layers[model.layers.length - 1] as unknown as tfl.layers.Layer & WithActivation;
  const config = layer.getConfig() as { activation?: unknown };
  if (layer.getClassName() !== 'Dense' || config.activation !== 'softmax' || !layer.activation) {
    throw new Error(
      `a logit adjustment needs a classifier ending in a softmax Dense layer; the last layer is ${layer.getClassName()} (${String(config.activation)})`,
    );
  }
  const softmax = layer.activation;
  layer.activation = (
    tfl.layers.activation({ activation: 'linear' }) as unknown as WithActivation
  ).activation;
  let restored = false;
  return {
    restore(): void {
      if (restored) return;
      layer.activation = softmax;
      restored = true;
    },
  };
}

/**
 * FedProx's proximal term: adds mu / 2 x sum (w - w0)^2 over the model's trainable weights to
 * its training loss, w0 their values now. Returns the copies of w0 (the caller disposes them).
 */
export function addProximalTerm(model: tfl.LayersModel, mu: number): tf.Tensor[] {
  if (!(mu > 0 && Number.isFinite(mu))) throw new Error(`the proximal term's mu must be above 0, got ${mu}`);
  const anchors: tf.Tensor[] = [];
  for (const layer of model.layers) {
    const weights = layer.trainableWeights;
    if (weights.length === 0) continue;
    const start = weights.map((w) => tf.keep(w.read().clone()));
    anchors.push(...start);
    layer.addLoss(() =>
      tf.tidy(() =>
        tf.mul(mu / 2, tf.addN(weights.map((w, i) => tf.sum(tf.square(tf.sub(w.read(), start[i])))))),
      ),
    );
  }
  return anchors;
}
