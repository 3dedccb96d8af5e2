// One explanation method = one Explainer: it answers, for each instance, one attribution per input value (in the
// instance's own layout) towards a target class, and the method's own check where it has one.
import type { InferenceEngine, ModelRef, TensorInput } from '../inference/engine.js';
import type { FeatureGroups, InputLayout } from './features.js';

export type ExplanationMethod = 'INTEGRATED_GRADIENTS' | 'GRADIENT_X_INPUT' | 'KERNEL_SHAP' | 'OCCLUSION';

/** How well the attributions account for the model's output, by the method's own standard. */
export interface AttributionCheck {
  /** COMPLETENESS (integrated gradients) or EFFICIENCY (Kernel SHAP). */
  kind: 'COMPLETENESS' | 'EFFICIENCY';
  /** Σ attributions. */
  attributionSum: number;
  /** f(x)[target] − f(baseline)[target]. */
  outputDifference: number;
  /** |attributionSum − outputDifference|. */
  error: number;
}

export interface InstanceAttribution {
  /** One attribution per input value of the instance (its signature's shape, row-major). */
  values: Float32Array;
  check: AttributionCheck | null;
}

export interface ExplainRequest {
  model: ModelRef;
  /** All instances, as predict encodes them. */
  input: TensorInput;
  layout: InputLayout;
  /** Each instance's features (what perturbation methods remove). */
  features: FeatureGroups[];
  /** The model's output at each instance, [instances, classes]. */
  outputs: Float32Array;
  classes: number;
  /** The class explained, per instance. */
  targets: number[];
  /** Kernel SHAP coalitions or integrated-gradients steps (null for methods without). */
  samples: number | null;
}

export interface ExplainResult {
  instances: InstanceAttribution[];
  /** Model evaluations the method ran for all instances (perturbed inputs, or gradient steps). */
  evaluations: number;
}

export interface Explainer {
  explain(request: ExplainRequest): Promise<ExplainResult>;
}

/** What perturbation methods need of the inference engine: predict, batched with everyone else's calls. */
export type Predictor = Pick<InferenceEngine, 'predict'>;
