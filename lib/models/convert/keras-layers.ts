import * as tfl from '@tensorflow/tfjs-layers';
import { tf } from '../runtime/tfjs';

/**
 * Keras layers TF.js lacks, registered so that normalised Keras models deserialize.
 *
 * KerasGRU: Keras' GRU with `reset_after=True` (the default since TF 2 / Keras 2.3 and in
 * Keras 3), which TF.js 4.22 refuses. The reset gate is applied after the recurrent matrix
 * product: h~ = act(x Wh + bh_in + r * (h Uh + bh_rec)); two bias rows ([2, 3 * units]);
 * gate order z, r, h as Keras stores them.
 */

type Activation = (x: tf.Tensor) => tf.Tensor;

const ACTIVATIONS: Record<string, Activation> = {
  tanh: (x) => tf.tanh(x),
  sigmoid: (x) => tf.sigmoid(x),
  hardSigmoid: (x) => tf.clipByValue(tf.add(tf.mul(x, 0.2), 0.5), 0, 1),
  kerasHardSigmoid: (x) => tf.div(tf.relu6(tf.add(x, 3)), 6),
  relu: (x) => tf.relu(x),
  linear: (x) => x,
  softsign: (x) => tf.div(x, tf.add(tf.abs(x), 1)),
  elu: (x) => tf.elu(x),
};

function activation(name: unknown, fallback: string): Activation {
  const key = typeof name === 'string' ? name : fallback;
  const fn = ACTIVATIONS[key];
  if (!fn) throw new Error(`GRU activation "${key}" is not supported`);
  return fn;
}

interface KerasGRUArgs {
  units: number;
  activation?: string;
  recurrentActivation?: string;
  useBias?: boolean;
  returnSequences?: boolean;
  goBackwards?: boolean;
  name?: string;
  [key: string]: unknown;
}

type LayerArgs = ConstructorParameters<typeof tfl.layers.Layer>[0];

export class KerasGRU extends tfl.layers.Layer {
  static readonly className = 'KerasGRU';
  readonly units: number;
  private readonly activationName: string;
  private readonly recurrentActivationName: string;
  private readonly useBias: boolean;
  private readonly returnSequences: boolean;
  private readonly goBackwards: boolean;
  private kernel!: tfl.LayerVariable;
  private recurrentKernel!: tfl.LayerVariable;
  private bias?: tfl.LayerVariable;

  constructor(args: KerasGRUArgs) {
    super(args as unknown as LayerArgs);
    if (args.stateful || args.returnState) throw new Error('stateful GRU / return_state are not supported');
    this.units = args.units;
    this.activationName = args.activation ?? 'tanh';
    this.recurrentActivationName = args.recurrentActivation ?? 'sigmoid';
    activation(this.activationName, 'tanh');
    activation(this.recurrentActivationName, 'sigmoid');
    this.useBias = args.useBias ?? true;
    this.returnSequences = args.returnSequences ?? false;
    this.goBackwards = args.goBackwards ?? false;
  }

  override build(inputShape: tfl.Shape | tfl.Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    const features = shape[shape.length - 1] as number;
    const zeros = tfl.initializers.zeros();
    this.kernel = this.addWeight('kernel', [features, 3 * this.units], 'float32', zeros);
    this.recurrentKernel = this.addWeight('recurrent_kernel', [this.units, 3 * this.units], 'float32', zeros);
    if (this.useBias) this.bias = this.addWeight('bias', [2, 3 * this.units], 'float32', zeros);
    this.built = true;
  }

  override computeOutputShape(inputShape: tfl.Shape | tfl.Shape[]): tfl.Shape {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as tfl.Shape;
    return this.returnSequences ? [shape[0], shape[1], this.units] : [shape[0], this.units];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const [batch, steps, features] = x.shape as number[];
      const u = this.units;
      const act = activation(this.activationName, 'tanh');
      const recAct = activation(this.recurrentActivationName, 'sigmoid');
      let projected = tf.reshape(tf.matMul(tf.reshape(x, [-1, features]), this.kernel.read()), [
        batch,
        steps,
        3 * u,
      ]);
      let recurrentBias: tf.Tensor | undefined;
      if (this.bias) {
        const [inputBias, recBias] = tf.unstack(this.bias.read(), 0);
        projected = tf.add(projected, inputBias);
        recurrentBias = recBias;
      }
      const perStep = tf.unstack(projected, 1);
      if (this.goBackwards) perStep.reverse();
      let h: tf.Tensor = tf.zeros([batch, u]);
      const outputs: tf.Tensor[] = [];
      for (const xt of perStep) {
        let rec = tf.matMul(h, this.recurrentKernel.read());
        if (recurrentBias) rec = tf.add(rec, recurrentBias);
        const [xz, xr, xh] = tf.split(xt, 3, 1);
        const [rz, rr, rh] = tf.split(rec, 3, 1);
        const z = recAct(tf.add(xz, rz));
        const r = recAct(tf.add(xr, rr));
        const candidate = act(tf.add(xh, tf.mul(r, rh)));
        h = tf.add(tf.mul(z, h), tf.mul(tf.sub(1, z), candidate));
        if (this.returnSequences) outputs.push(h);
      }
      return this.returnSequences ? tf.stack(outputs, 1) : h;
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      units: this.units,
      activation: this.activationName,
      recurrentActivation: this.recurrentActivationName,
      useBias: this.useBias,
      returnSequences: this.returnSequences,
      goBackwards: this.goBackwards,
    };
  }
}

tf.serialization.registerClass(
  KerasGRU as unknown as tf.serialization.SerializableConstructor<tfl.layers.Layer>,
);
