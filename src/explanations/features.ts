// What an explanation attributes to: the features of one instance of a single-input model, and the baseline a
// removed feature takes. Perturbation methods (Kernel SHAP, occlusion) remove whole features; their answer is
// spread back over the instance's values so that every method answers in the input's own form.
//
// - Images (image preprocessing, or a [height, width, channels] input): square patches of PATCH pixels a side,
//   all channels together, chosen so that there are at most ~64 (28×28 → 4×4 patches, 49 features); a removed
//   patch is black (zeros in the model's input).
// - Token ids (text preprocessing, or any int32 input): one feature per token that is not padding; a removed
//   token becomes padding (id 0).
// - Anything else (tabular rows, plain tensors): one feature per value; a removed value is 0, which after a
//   tabular signature's standardisation is the feature's training mean.
import type { TensorInput } from '../inference/engine.js';
import type { SingleSignature } from '../models/signature.js';
import { PAD_ID } from '../preprocessing/text.js';

export type AttributionForm = 'IMAGE' | 'TEXT' | 'FEATURES';

export interface ImageGeometry {
  height: number;
  width: number;
  channels: number;
  /** How the model's input maps back to 0..255 pixels for the overlay: ×255 (`unit`), as is (`none`), or min–max. */
  scaling: 'unit' | 'none' | 'minmax';
}

/** How a signature's input is explained. */
export interface InputLayout {
  form: AttributionForm;
  /** Values per instance. */
  size: number;
  image: ImageGeometry | null;
  /** Tabular signatures: each value's feature name. */
  featureNames: string[] | null;
  /** Said with every explanation: what a removed feature (or, for gradients, the path's start) is. */
  baseline: string;
  /** What one feature of a perturbation method is, where it is not one value (image patches). */
  featureUnit: string | null;
}

/** The features of one instance: each a list of flat offsets into the instance's values. */
export interface FeatureGroups {
  groups: Int32Array[];
  /** One name per feature (tokens for text, "patch r,c" for images, feature names otherwise). */
  names: string[];
}

/** Images get at most about this many patches a side, so Kernel SHAP solves over ≤ ~64 features. */
const PATCHES_PER_SIDE = 8;

export function layoutOf(signature: SingleSignature): InputLayout {
  const { shape, dtype, preprocessing } = signature.input;
  const size = shape.reduce((a, b) => a * b, 1);
  if (preprocessing.kind === 'image') {
    const { height, width, channels, scaling } = preprocessing;
    return {
      form: 'IMAGE',
      size,
      image: { height, width, channels, scaling },
      featureNames: null,
      baseline: "black (zeros in the model's input)",
      featureUnit: `${patchSize(height, width)}×${patchSize(height, width)}-pixel patches`,
    };
  }
  if (preprocessing.kind === 'text' || dtype === 'int32') {
    return {
      form: 'TEXT',
      size,
      image: null,
      featureNames: null,
      baseline: 'padding: a removed token becomes the padding id 0',
      featureUnit: null,
    };
  }
  if (shape.length === 3 && [1, 3, 4].includes(shape[2]!)) {
    const [height, width, channels] = shape as [number, number, number];
    return {
      form: 'IMAGE',
      size,
      image: { height, width, channels, scaling: 'minmax' },
      featureNames: null,
      baseline: 'zeros',
      featureUnit: `${patchSize(height, width)}×${patchSize(height, width)} patches (all channels)`,
    };
  }
  if (preprocessing.kind === 'tabular') {
    return {
      form: 'FEATURES',
      size,
      image: null,
      featureNames: preprocessing.features.map((f) => f.name),
      baseline: "each feature's training mean (0 after the signature's standardisation)",
      featureUnit: null,
    };
  }
  return { form: 'FEATURES', size, image: null, featureNames: null, baseline: 'zeros', featureUnit: null };
}

export function patchSize(height: number, width: number): number {
  return Math.max(1, Math.ceil(Math.max(height, width) / PATCHES_PER_SIDE));
}

/** The features of instance `index` of `input` (only text depends on the instance: its non-padding tokens). */
export function featuresOf(layout: InputLayout, input: TensorInput, index: number, tokens?: string[]): FeatureGroups {
  const { size } = layout;
  if (layout.image) {
    const { height, width, channels } = layout.image;
    const patch = patchSize(height, width);
    const groups: Int32Array[] = [];
    const names: string[] = [];
    for (let top = 0; top < height; top += patch) {
      for (let left = 0; left < width; left += patch) {
        const rows = Math.min(patch, height - top);
        const cols = Math.min(patch, width - left);
        const group = new Int32Array(rows * cols * channels);
        let n = 0;
        for (let y = top; y < top + rows; y++) {
          for (let x = left; x < left + cols; x++) {
            for (let c = 0; c < channels; c++) group[n++] = (y * width + x) * channels + c;
          }
        }
        groups.push(group);
        names.push(`patch ${top / patch},${left / patch}`);
      }
    }
    return { groups, names };
  }
  if (layout.form === 'TEXT') {
    const row = input.data.subarray(index * size, (index + 1) * size);
    const groups: Int32Array[] = [];
    const names: string[] = [];
    for (let position = 0; position < size; position++) {
      if (row[position] === PAD_ID) continue;
      groups.push(Int32Array.of(position));
      names.push(tokens?.[position] ?? `#${row[position]}`);
    }
    return { groups, names };
  }
  return {
    groups: Array.from({ length: size }, (_, i) => Int32Array.of(i)),
    names: Array.from({ length: size }, (_, i) => layout.featureNames?.[i] ?? `x[${i}]`),
  };
}

/**
 * Spreads per-feature attributions over the instance's values: each value of a feature gets an equal share, so
 * the values sum to the features' attributions (an image patch's weight is its pixels' sum).
 */
export function spreadOverValues(features: FeatureGroups, attributions: Float64Array, size: number): Float32Array {
  const values = new Float32Array(size);
  features.groups.forEach((group, j) => {
    const share = attributions[j]! / group.length;
    for (const offset of group) values[offset]! += share;
  });
  return values;
}
