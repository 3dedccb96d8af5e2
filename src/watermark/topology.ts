// Which weight tensor carries the mark, decided from the model topology alone (so the server, and later
// the verifier, pick the same one), and along which axis an attacker can permute and rescale hidden units
// of that tensor without changing what the model computes.
import { parseModelJson, readTensor, tensorEntries, type WeightSpec } from './artifact.js';
import { MARK_BITS } from './keys.js';
import { WatermarkError } from './errors.js';

/**
 * A tensor viewed as [outer, units, inner] (row-major): index (o · units + u) · inner + i belongs to hidden
 * unit u. Permuting the units, or scaling one by a positive factor, and compensating in the neighbouring
 * layer leaves the model's function unchanged.
 */
export interface UnitAxis {
  outer: number;
  units: number;
  inner: number;
}

export interface MarkTarget {
  /** Weight name in the manifest, e.g. "dense_Dense1/kernel". */
  name: string;
  shape: number[];
  size: number;
  /** null: no hidden-unit symmetry is known for this tensor, or it has two (see inputAxis), so decoding does not align it on its own. */
  unitAxis: UnitAxis | null;
  /**
   * The hidden units of the previous weighted layer, `previous`, as they enter this tensor; set only when
   * this tensor's own units (outputAxis) are hidden too. Decoding then puts them back in place with the
   * previous tensor's alignment before it aligns this tensor's own units.
   */
  inputAxis: UnitAxis | null;
  outputAxis: UnitAxis | null;
  previous: string | null;
  /** The layer's name when the tensor is a Dense kernel [inputs, outputs], which a mark can be shaped for (shaping.ts). */
  denseLayer: string | null;
}

/** A mark spreads MARK_BITS constraints over the tensor; fewer than 8 weights per bit costs too much fidelity. */
export const MIN_MARK_WEIGHTS = 8 * MARK_BITS;

// Layers between two weighted layers that pass unit i of the first on as unit i (per position) of the second.
const UNIT_PRESERVING_LAYERS = new Set([
  'InputLayer',
  'Flatten',
  'Dropout',
  'SpatialDropout1D',
  'SpatialDropout2D',
  'GaussianNoise',
  'GaussianDropout',
  'Activation',
  'ReLU',
  'MaxPooling1D',
  'MaxPooling2D',
  'AveragePooling1D',
  'AveragePooling2D',
  'GlobalAveragePooling1D',
  'GlobalAveragePooling2D',
  'GlobalMaxPooling1D',
  'GlobalMaxPooling2D',
]);
const KERNEL_LAYERS: Record<string, string> = {
  Dense: 'kernel',
  Conv1D: 'kernel',
  Conv2D: 'kernel',
  Embedding: 'embeddings',
};

interface Layer {
  className: string;
  name: string;
  config: Record<string, unknown>;
  /** Names of the layers feeding this one; undefined in Sequential models. */
  inbound?: string[];
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function parseLayer(raw: unknown): Layer | null {
  if (!isRecord(raw) || typeof raw.class_name !== 'string' || !isRecord(raw.config)) return null;
  const name = typeof raw.name === 'string' ? raw.name : raw.config.name;
  if (typeof name !== 'string') return null;
  const layer: Layer = { className: raw.class_name, name, config: raw.config };
  // Keras 2 / tfjs functional format: inbound_nodes = [[[layerName, nodeIndex, tensorIndex, kwargs], ...]].
  if (Array.isArray(raw.inbound_nodes)) {
    layer.inbound = raw.inbound_nodes.flatMap((node: unknown) =>
      Array.isArray(node) ? node.map((input: unknown) => (Array.isArray(input) ? String(input[0]) : '?')) : ['?'],
    );
  }
  return layer;
}

/** The layers in execution order when the model is a plain chain (Sequential, or functional without branches); else null. */
function chainOfLayers(modelTopology: unknown): Layer[] | null {
  const topology =
    isRecord(modelTopology) && isRecord(modelTopology.model_config) ? modelTopology.model_config : modelTopology;
  if (!isRecord(topology)) return null;
  const rawLayers = isRecord(topology.config) ? topology.config.layers : topology.config;
  if (!Array.isArray(rawLayers)) return null;
  const layers = rawLayers.map(parseLayer);
  if (layers.some((layer) => layer === null)) return null;
  const chain = layers as Layer[];
  if (topology.class_name === 'Sequential') return chain;
  const isChain = chain.every((layer, i) => {
    const inbound = layer.inbound ?? [];
    return i === 0 ? inbound.length === 0 : inbound.length === 1 && inbound[0] === chain[i - 1]!.name;
  });
  return isChain ? chain : null;
}

interface Candidate {
  spec: WeightSpec;
  layer: Layer | null;
  size: number;
  /** Permutable axes of this tensor: the previous layer's units, then its own. */
  unitAxes: UnitAxis[];
  inputAxis: UnitAxis | null;
  outputAxis: UnitAxis | null;
  previous: Candidate | null;
  /** The layers before this one mix units in a way not modelled here, so it cannot be aligned. */
  unknownInputs: boolean;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/**
 * The unit axis through which the previous weighted layer's units enter this kernel, or 'unknown' when
 * the layers in between mix them in a way not modelled here.
 */
function inputUnitAxis(
  layer: Layer,
  kernel: WeightSpec,
  previousUnits: number,
  between: readonly Layer[],
): UnitAxis | 'unknown' {
  const channelsFirst = [layer, ...between].some((l) => l.config.data_format === 'channels_first');
  if (channelsFirst || !between.every((l) => UNIT_PRESERVING_LAYERS.has(l.className))) return 'unknown';
  const shape = kernel.shape;
  const [inputs, outputs] = layer.className === 'Dense' ? [shape[0]!, shape[1]!] : [shape.at(-2)!, shape.at(-1)!];
  if (layer.className === 'Dense') {
    // Flatten of a channels-last [..., units] output: unit u is every `previousUnits`-th input row.
    if (inputs % previousUnits !== 0) return 'unknown';
    return { outer: inputs / previousUnits, units: previousUnits, inner: outputs };
  }
  if (inputs !== previousUnits) return 'unknown';
  return { outer: sizeOf(shape.slice(0, -2)), units: inputs, inner: outputs };
}

function candidates(layers: readonly Layer[], specs: readonly WeightSpec[]): Candidate[] {
  const weighted = layers.flatMap((layer, index) => {
    const tensor = KERNEL_LAYERS[layer.className];
    const spec = tensor && specs.find((s) => s.name === `${layer.name}/${tensor}`);
    return spec && spec.shape.length >= 2 ? [{ layer, index, spec }] : [];
  });
  const result: Candidate[] = [];
  weighted.forEach(({ layer, index, spec }, order) => {
    const size = sizeOf(spec.shape);
    let inputAxis: UnitAxis | null = null;
    let outputAxis: UnitAxis | null = null;
    let unknownInputs = false;
    const previous = weighted[order - 1];
    if (previous && layer.className !== 'Embedding') {
      const axis = inputUnitAxis(layer, spec, previous.spec.shape.at(-1)!, layers.slice(previous.index + 1, index));
      if (axis === 'unknown') unknownInputs = true;
      else inputAxis = axis;
    }
    if (order < weighted.length - 1) {
      const units = spec.shape.at(-1)!;
      outputAxis = { outer: size / units, units, inner: 1 };
    }
    const unitAxes = [inputAxis, outputAxis].filter((axis): axis is UnitAxis => axis !== null);
    const previousCandidate = inputAxis ? result[order - 1]! : null;
    result.push({ spec, layer, size, unitAxes, inputAxis, outputAxis, previous: previousCandidate, unknownInputs });
  });
  return result;
}

/** A tensor decoding can align: its units alone, or its own units after the previous tensor's (recursively). */
function alignable(candidate: Candidate): boolean {
  if (candidate.unknownInputs) return false;
  return candidate.unitAxes.length <= 1 || alignable(candidate.previous!);
}

function toTarget({ spec, layer, size, unitAxes, inputAxis, outputAxis, previous }: Candidate): MarkTarget {
  const twoAxes = unitAxes.length === 2;
  return {
    name: spec.name,
    shape: spec.shape,
    size,
    unitAxis: twoAxes ? null : (unitAxes[0] ?? null),
    inputAxis: twoAxes ? inputAxis : null,
    outputAxis: twoAxes ? outputAxis : null,
    previous: twoAxes ? previous!.spec.name : null,
    denseLayer: layer?.className === 'Dense' ? layer.name : null,
  };
}

/**
 * Every tensor that can carry (part of) a mark, in manifest order: the kernels (Dense, Conv1D, Conv2D) and
 * embedding matrices whose hidden units decoding can put back in place after a permutation and rescaling,
 * including those between two hidden layers (aligned after the previous one). Models whose layers do not
 * form a chain, and graph models (a GraphDef has no layers; its weights are its Const nodes), offer every ≥ 2-d
 * float32 tensor, without alignment. Given the weights, constant tensors (σ = 0: masks, fills, kernels
 * initialised to zeros or ones) are left out: a mark is measured in units of σ, so they cannot carry one.
 */
export function markableTensors(modelJson: unknown, weights?: Uint8Array): MarkTarget[] {
  const { modelTopology, weightsManifest } = parseModelJson(modelJson);
  const specs = weightsManifest.flatMap((group) => group.weights);
  const layers = chainOfLayers(modelTopology);
  const usable: Candidate[] = layers
    ? candidates(layers, specs).filter(alignable)
    : specs
        .filter((spec) => spec.shape.length >= 2 && spec.dtype === 'float32')
        .map((spec) => ({
          spec,
          layer: null,
          size: sizeOf(spec.shape),
          unitAxes: [],
          inputAxis: null,
          outputAxis: null,
          previous: null,
          unknownInputs: false,
        }));
  const targets = usable.map(toTarget);
  if (!weights) return targets;
  const entries = tensorEntries({ modelJson, weights });
  return targets.filter((target) => {
    const values = readTensor(
      { modelJson, weights },
      entries.find((entry) => entry.spec.name === target.name)!,
    );
    return values.some((value) => value !== values[0]);
  });
}

/**
 * The tensor that carries a full-capacity mark on its own: the largest markable one with ≥ MIN_MARK_WEIGHTS
 * weights and at most one hidden-unit axis, because the relative weight change a mark costs falls as
 * 1/sqrt(size) (see mark.ts).
 */
export function selectMarkTensor(modelJson: unknown): MarkTarget {
  let best: MarkTarget | undefined;
  for (const candidate of markableTensors(modelJson))
    if (!candidate.inputAxis && candidate.size >= MIN_MARK_WEIGHTS && candidate.size > (best?.size ?? 0))
      best = candidate;
  if (!best)
    throw new WatermarkError(
      `no weight tensor of the model can carry a mark (one needs ≥ ${MIN_MARK_WEIGHTS} weights)`,
    );
  return best;
}
