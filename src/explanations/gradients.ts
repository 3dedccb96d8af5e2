// Integrated gradients (Sundararajan et al. 2017) and gradient × input, computed by the inference workers on the
// model's graph. The explainer needs only `AttributionSource` — what InferenceEngine.attributions provides — so a
// server whose engine has no gradient support is given none, and the service refuses these methods.
import type { ModelRef, TensorInput } from '../inference/engine.js';
import { ModelError } from '../server/errors.js';
import type { ExplainRequest, ExplainResult, Explainer } from './explainer.js';

export type GradientMethod = 'INTEGRATED_GRADIENTS' | 'GRADIENT_X_INPUT';

export interface GradientAttributions {
  /** The input's shape for float inputs; [instances, tokens] for int32 token inputs. */
  attributions: Float32Array;
  shape: number[];
  /** The model's output at the input, [instances, outputs]. */
  outputs: Float32Array;
  baselineOutputs: Float32Array;
  /** IG: |Σ attributions − (f(x)[t] − f(b)[t])| per instance; null for gradient × input. */
  completenessError: (number | null)[];
}

/** The inference engine's gradient capability (InferenceEngine.attributions). */
export interface AttributionSource {
  attributions(
    model: ModelRef,
    input: TensorInput,
    request: { method: GradientMethod; targets: number[]; steps?: number },
  ): Promise<GradientAttributions>;
}

export class GradientExplainer implements Explainer {
  constructor(
    private readonly source: AttributionSource,
    private readonly method: GradientMethod,
  ) {}

  async explain(request: ExplainRequest): Promise<ExplainResult> {
    const { input, layout, classes, targets } = request;
    const instances = targets.length;
    const steps = this.method === 'INTEGRATED_GRADIENTS' ? request.samples! : undefined;
    const result = await this.source.attributions(request.model, input, { method: this.method, targets, steps });
    // Token inputs are attributed per token position, which is the instance's own layout too.
    if (result.attributions.length !== instances * layout.size) {
      throw new ModelError(`The gradients came back in shape [${result.shape.join(', ')}], not the input's`);
    }
    return {
      instances: targets.map((target, i) => {
        const values = result.attributions.slice(i * layout.size, (i + 1) * layout.size);
        const error = result.completenessError[i] ?? null;
        if (error === null) return { values, check: null };
        const attributionSum = values.reduce((sum, value) => sum + value, 0);
        const outputDifference = result.outputs[i * classes + target]! - result.baselineOutputs[i * classes + target]!;
        return { values, check: { kind: 'COMPLETENESS' as const, attributionSum, outputDifference, error } };
      }),
      // Integrated gradients evaluates the model's gradient at each step of each instance's path.
      evaluations: instances * (steps ?? 1),
    };
  }
}
