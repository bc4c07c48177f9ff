import * as tf from '@tensorflow/tfjs-core';
import { ModelLoadError } from '../../errors';
import './keras-layers';

/**
 * Rewrites layers-model JSON written by Keras 3, Keras 2.x, Keras 2.1.x or TF.js into the form
 * tfjs-layers 4.22 deserializes, and registers the few activations Keras has and TF.js lacks.
 *
 * Keras 3 differences handled: `module` / `registered_name` / `build_config` wrappers,
 * `dtype` as a DTypePolicy object, InputLayer `batch_shape`, functional inbound nodes as
 * `{args, kwargs}` holding `__keras_tensor__` entries, flat `input_layers` / `output_layers`,
 * initializer class names such as `OrthogonalInitializer`, LeakyReLU `negative_slope`,
 * the `leaky_relu` / `silu` / `hard_silu` activations and Keras 3's `hard_sigmoid`
 * (relu6(x + 3) / 6, unlike Keras 2's 0.2x + 0.5), and weight names prefixed with the model name.
 * Keras 2.3+ / 3: GRU with reset_after=True (their default) runs as KerasGRU (keras-layers.ts).
 * Keras 2.1.x: the Sequential config as a bare list of layers (TF.js reads it as is).
 */

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };

export type LayersLayout = 'keras3' | 'keras2' | 'keras2.1' | 'tfjs';

export interface NormalisedTopology {
  /** The model topology to hand to tfjs-layers (Python-style keys, as in model.json). */
  modelTopology: JsonObject;
  layout: LayersLayout;
  kerasVersion?: string;
  /** Every layer name in the model, nested models included. */
  layerNames: Set<string>;
  /** Human-readable list of what was rewritten. */
  notes: string[];
}

// ---------------------------------------------------------------------------------------------
// Activations TF.js lacks. tfjs-layers camel-cases activation strings ('leaky_relu' ->
// 'leakyRelu') and looks them up in the serialization registry, so registering a class under
// that name is enough.

abstract class ExtraActivation extends tf.serialization.Serializable {
  abstract apply(x: tf.Tensor): tf.Tensor;
  getConfig(): tf.serialization.ConfigDict {
    return {};
  }
}

/** Keras 3 / tf.nn leaky_relu activation: slope 0.2 below zero. */
class LeakyReluActivation extends ExtraActivation {
  static readonly className = 'leakyRelu';
  apply(x: tf.Tensor): tf.Tensor {
    return tf.leakyRelu(x, 0.2);
  }
}

/** Keras 3 hard_sigmoid: relu6(x + 3) / 6. */
class KerasHardSigmoidActivation extends ExtraActivation {
  static readonly className = 'kerasHardSigmoid';
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.div(tf.relu6(tf.add(x, 3)), 6));
  }
}

/** hard_silu / hard_swish: x * relu6(x + 3) / 6. */
class HardSwishActivation extends ExtraActivation {
  static readonly className = 'hardSwish';
  apply(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.mul(x, tf.div(tf.relu6(tf.add(x, 3)), 6)));
  }
}

class ExponentialActivation extends ExtraActivation {
  static readonly className = 'exponential';
  apply(x: tf.Tensor): tf.Tensor {
    return tf.exp(x);
  }
}

for (const cls of [
  LeakyReluActivation,
  KerasHardSigmoidActivation,
  HardSwishActivation,
  ExponentialActivation,
]) {
  tf.serialization.registerClass(cls as unknown as tf.serialization.SerializableConstructor<ExtraActivation>);
}

const ACTIVATION_ALIASES: Record<string, string> = {
  silu: 'swish',
  hard_silu: 'hard_swish',
  leaky_relu: 'leaky_relu',
  gelu_approximate: 'gelu_new',
};

const INITIALIZER_ALIASES: Record<string, string> = {
  OrthogonalInitializer: 'Orthogonal',
  IdentityInitializer: 'Identity',
  ConstantInitializer: 'Constant',
  LecunNormal: 'LeCunNormal',
  LecunUniform: 'LeCunUniform',
  Zero: 'Zeros',
  One: 'Ones',
  RandomNormalInitializer: 'RandomNormal',
  RandomUniformInitializer: 'RandomUniform',
  TruncatedNormalInitializer: 'TruncatedNormal',
};

const LAYER_ALIASES: Record<string, string> = {
  BatchNormalizationV1: 'BatchNormalization',
  BatchNormalizationV2: 'BatchNormalization',
  LSTMV2: 'LSTM',
  GRUV2: 'GRU',
  Functional: 'Functional',
};

const MODEL_CLASSES = new Set(['Sequential', 'Functional', 'Model']);
const WRAPPER_KEYS = ['module', 'registered_name', 'build_config', 'compile_config', 'shared_object_id'];

function isObject(value: unknown): value is JsonObject {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

function camel(identifier: string): string {
  return identifier.replace(/_+(\w|$)/g, (_m, c: string) => c.toUpperCase());
}

function registered(className: string): boolean {
  return className in tf.serialization.SerializationMap.getMap().classNameMap;
}

/** Removes Keras 3's serialization wrappers everywhere except inside weights of constants. */
function stripWrappers(value: Json): Json {
  if (Array.isArray(value)) return value.map(stripWrappers);
  if (!isObject(value)) return value;
  const out: JsonObject = {};
  for (const [key, child] of Object.entries(value)) {
    if (WRAPPER_KEYS.includes(key)) continue;
    out[key] = stripWrappers(child);
  }
  return out;
}

function isKerasTensor(value: Json): value is JsonObject {
  return isObject(value) && value.class_name === '__keras_tensor__' && isObject(value.config);
}

class KerasConfigNormaliser {
  readonly notes = new Set<string>();
  readonly layerNames = new Set<string>();
  /** Layers whose class is replaced after their config is normalised. */
  readonly renamed = new Map<string, string>();

  constructor(readonly layout: LayersLayout) {}

  model(model: JsonObject): JsonObject {
    const className = String(model.class_name);
    const out: JsonObject = { ...model };
    if (Array.isArray(model.config)) {
      // Keras 2.1.x: the Sequential config is the bare list of layers.
      this.notes.add('Keras 2.1 layer list');
      out.config = model.config.map((layer) => this.layer(layer));
      return out;
    }
    if (!isObject(model.config)) throw new ModelLoadError(`model ${className} has no config`);
    const config: JsonObject = { ...model.config };
    if (isObject(config.dtype) || typeof config.dtype === 'string') config.dtype = this.dtype(config.dtype);
    if (!Array.isArray(config.layers)) throw new ModelLoadError(`model ${className} config has no layers`);
    config.layers = config.layers.map((layer) => this.layer(layer));
    for (const key of ['input_layers', 'output_layers']) {
      const refs = config[key];
      // Keras 3 writes a single input/output as a flat [name, node, tensor] triple.
      if (Array.isArray(refs) && typeof refs[0] === 'string') {
        config[key] = [refs];
        this.notes.add(`flat ${key}`);
      }
    }
    out.config = config;
    return out;
  }

  layer(value: Json): JsonObject {
    if (!isObject(value) || typeof value.class_name !== 'string') {
      throw new ModelLoadError(`a layer entry has no class_name: ${JSON.stringify(value).slice(0, 120)}`);
    }
    const original = value.class_name;
    const className = LAYER_ALIASES[original] ?? original;
    const config = isObject(value.config) ? value.config : {};
    const name = typeof config.name === 'string' ? config.name : String(value.name ?? original);
    this.layerNames.add(name);
    let out: JsonObject;
    if (MODEL_CLASSES.has(className)) {
      out = this.model({ ...value, class_name: className });
    } else {
      if (!registered(className)) {
        throw new ModelLoadError(
          `unknown layer class "${original}" (layer "${name}"): TF.js has no such layer` +
            (typeof value.registered_name === 'string' && value.registered_name.includes('>')
              ? ' (a custom layer of the original code)'
              : ''),
        );
      }
      out = { ...value, class_name: className, config: this.layerConfig(className, name, config) };
      const replacement = this.renamed.get(name);
      if (replacement) out.class_name = replacement;
    }
    if ('inbound_nodes' in value) out.inbound_nodes = this.inboundNodes(name, value.inbound_nodes);
    return out;
  }

  layerConfig(className: string, layerName: string, config: JsonObject): JsonObject {
    const out: JsonObject = {};
    for (const [key, value] of Object.entries(config)) {
      if (key === 'dtype') out.dtype = this.dtype(value);
      else if (key === 'batch_shape') {
        out.batch_input_shape = value;
        this.notes.add('InputLayer batch_shape');
      } else if (key.endsWith('_initializer')) out[key] = this.initializer(value);
      else if (key.endsWith('_regularizer') || key.endsWith('_constraint')) {
        // Training-time terms: irrelevant to inference and named differently across versions.
        out[key] = null;
      } else if (key === 'activation' || key === 'recurrent_activation') {
        out[key] = this.activation(layerName, value);
      } else if (key === 'layer' || key === 'backward_layer' || key === 'cell') {
        out[key] = isObject(value) ? this.layer(value) : value;
      } else out[key] = value;
    }
    if (className === 'LeakyReLU' && 'negative_slope' in out) {
      out.alpha = out.negative_slope;
      delete out.negative_slope;
      this.notes.add('LeakyReLU negative_slope');
    }
    if (className === 'ReLU') {
      for (const key of ['negative_slope', 'threshold']) {
        if (typeof out[key] === 'number' && out[key] !== 0) {
          throw new ModelLoadError(
            `layer "${layerName}": ReLU with ${key} ${out[key]} is not supported by TF.js`,
          );
        }
        delete out[key];
      }
    }
    if (className === 'GRU' && out.reset_after === true) {
      // TF.js only has reset_after=False; KerasGRU (keras-layers.ts) implements the Keras default.
      if (out.stateful === true || out.return_state === true) {
        throw new ModelLoadError(`layer "${layerName}": stateful GRU / return_state are not supported`);
      }
      this.notes.add('GRU reset_after=True as KerasGRU');
      this.renamed.set(layerName, 'KerasGRU');
    }
    return out;
  }

  dtype(value: Json): Json {
    let name = value;
    if (isObject(value)) {
      // DTypePolicy / FloatDTypePolicy: {class_name, config: {name}}
      name = isObject(value.config) ? (value.config.name ?? 'float32') : 'float32';
      this.notes.add('DTypePolicy dtype');
    }
    if (typeof name === 'string' && /^(mixed_)?(b?float16)$/.test(name)) {
      this.notes.add(`${name} policy computed in float32`);
      return 'float32';
    }
    return name;
  }

  initializer(value: Json): Json {
    if (!isObject(value) || typeof value.class_name !== 'string') return value;
    let className = INITIALIZER_ALIASES[value.class_name] ?? value.class_name;
    const config: JsonObject = isObject(value.config) ? { ...value.config } : {};
    if (className !== value.class_name) this.notes.add(`initializer ${value.class_name}`);
    if (className === 'VarianceScaling' && config.distribution === 'untruncated_normal') {
      config.distribution = 'normal';
    }
    if (!registered(className)) {
      // Stored weights replace initial values, so an initializer TF.js lacks does not matter.
      this.notes.add(`initializer ${className} replaced by Zeros`);
      className = 'Zeros';
      return { class_name: className, config: {} };
    }
    return { class_name: className, config };
  }

  activation(layerName: string, value: Json): Json {
    let name: Json = value;
    if (isObject(value) && typeof value.class_name === 'string') {
      name = value.class_name === 'function' && isObject(value.config) ? value.config.name : value.class_name;
    }
    if (name === null) return null;
    if (typeof name !== 'string') {
      throw new ModelLoadError(`layer "${layerName}": activation ${JSON.stringify(value)} is not supported`);
    }
    let mapped = ACTIVATION_ALIASES[name] ?? name;
    if (name === 'hard_sigmoid' && this.layout === 'keras3') {
      mapped = 'keras_hard_sigmoid';
      this.notes.add('Keras 3 hard_sigmoid');
    }
    if (mapped !== name) this.notes.add(`activation ${name}`);
    if (!registered(camel(mapped))) {
      throw new ModelLoadError(`layer "${layerName}": activation "${name}" is not supported by TF.js`);
    }
    return mapped;
  }

  /** Keras 3 `{args, kwargs}` nodes -> TF.js `[[layer, nodeIndex, tensorIndex, kwargs], ...]`. */
  inboundNodes(layerName: string, nodes: Json): Json {
    if (!Array.isArray(nodes)) return nodes;
    return nodes.map((node) => {
      if (!isObject(node) || !('args' in node)) return node;
      this.notes.add('Keras 3 inbound nodes');
      const refs: Json[] = [];
      const collect = (value: Json): void => {
        if (isKerasTensor(value)) {
          const history = (value.config as JsonObject).keras_history;
          if (!Array.isArray(history) || history.length < 3) {
            throw new ModelLoadError(`layer "${layerName}": an input tensor has no keras_history`);
          }
          refs.push([history[0], history[1], history[2], {}]);
        } else if (Array.isArray(value)) value.forEach(collect);
      };
      collect(node.args);
      if (isObject(node.kwargs)) {
        const tensorKwargs = Object.entries(node.kwargs).filter(([, v]) => {
          const found: Json[] = [];
          const walk = (x: Json): void => {
            if (isKerasTensor(x)) found.push(x);
            else if (Array.isArray(x)) x.forEach(walk);
          };
          walk(v);
          return found.length > 0;
        });
        if (tensorKwargs.length > 0) {
          throw new ModelLoadError(
            `layer "${layerName}" takes tensors as keyword arguments (${tensorKwargs
              .map(([k]) => k)
              .join(', ')}), which TF.js cannot express`,
          );
        }
      }
      return refs;
    });
  }
}

function detectLayout(topology: JsonObject, modelConfig: JsonObject, generatedBy?: string): LayersLayout {
  const version = typeof topology.keras_version === 'string' ? topology.keras_version : undefined;
  if (version?.startsWith('tfjs')) return 'tfjs';
  if (version?.startsWith('3')) return 'keras3';
  if (version && /^2\.(0|1)\./.test(version)) return 'keras2.1';
  if (Array.isArray(modelConfig.config)) return 'keras2.1';
  if (version?.startsWith('2')) return 'keras2';
  if (generatedBy && /keras v?3/i.test(generatedBy)) return 'keras3';
  const text = JSON.stringify(modelConfig);
  if (
    text.includes('"registered_name"') ||
    text.includes('"batch_shape"') ||
    text.includes('__keras_tensor__')
  ) {
    return 'keras3';
  }
  if (generatedBy && /tfjs|TensorFlow\.js/i.test(generatedBy)) return 'tfjs';
  return 'keras2';
}

/** Normalises the `modelTopology` of a layers model.json. */
export function normaliseLayersTopology(modelTopology: unknown, generatedBy?: string): NormalisedTopology {
  if (!isObject(modelTopology as Json)) throw new ModelLoadError('model.json has no modelTopology object');
  const topology = modelTopology as JsonObject;
  const modelConfig = isObject(topology.model_config) ? topology.model_config : topology;
  if (typeof modelConfig.class_name !== 'string') {
    throw new ModelLoadError('modelTopology has no model class_name (is this a layers model?)');
  }
  const layout = detectLayout(topology, modelConfig, generatedBy);
  const normaliser = new KerasConfigNormaliser(layout);
  const stripped = stripWrappers(modelConfig) as JsonObject;
  const className = LAYER_ALIASES[String(stripped.class_name)] ?? String(stripped.class_name);
  if (!MODEL_CLASSES.has(className)) {
    throw new ModelLoadError(
      `modelTopology class "${stripped.class_name}" is not a Sequential or functional model`,
    );
  }
  const model = normaliser.model({ ...stripped, class_name: className });
  return {
    modelTopology: model,
    layout,
    kerasVersion: typeof topology.keras_version === 'string' ? topology.keras_version : undefined,
    layerNames: normaliser.layerNames,
    notes: [...normaliser.notes],
  };
}

/**
 * Maps weight names to the `<layer>/<weight>` form TF.js expects. Keras 3 prefixes them with
 * the enclosing model's name (`sequential_4/dense_8/kernel`); names that already start with a
 * layer name are left as they are (TF.js itself drops RNN cell names such as `lstm_cell`).
 */
export function normaliseWeightName(name: string, layerNames: ReadonlySet<string>): string {
  const tokens = name.split('/');
  if (tokens.length < 2 || layerNames.has(tokens[0])) return name;
  const start = tokens.findIndex((t, i) => i < tokens.length - 1 && layerNames.has(t));
  return start > 0 ? tokens.slice(start).join('/') : name;
}
