// Occlusion (Zeiler & Fergus 2014): remove one feature at a time — an image patch (the feature grid of
// features.ts, slid patch by patch), a token, a tabular value — and attribute to it the drop of the target's
// score: f(x)[t] − f(x without it)[t]. No check: occlusion makes no promise about the sum.
import type { ExplainRequest, ExplainResult, Explainer, InstanceAttribution, Predictor } from './explainer.js';
import { spreadOverValues } from './features.js';
import { evaluatePerturbations, inTurn } from './perturbations.js';

export class OcclusionExplainer implements Explainer {
  constructor(private readonly engine: Predictor) {}

  async explain(request: ExplainRequest): Promise<ExplainResult> {
    const { input, layout, features, outputs, classes, targets } = request;
    let evaluations = 0;
    // One instance after the other, so one call holds at most its CHUNKS_IN_FLIGHT chunks of the shared queue.
    const instances = await inTurn(features, async (instance, index): Promise<InstanceAttribution> => {
      const M = instance.groups.length;
      // Row j keeps every feature but j.
      const masks = new Uint8Array(M * M).fill(1);
      for (let j = 0; j < M; j++) masks[j * M + j] = 0;
      const target = targets[index]!;
      const scores = await evaluatePerturbations(
        this.engine,
        request.model,
        input,
        index,
        instance.groups,
        { masks, count: M },
        classes,
        target,
      );
      evaluations += M;
      const fx = outputs[index * classes + target]!;
      const drops = scores.map((score) => fx - score);
      return { values: spreadOverValues(instance, drops, layout.size), check: null };
    });
    return { instances, evaluations };
  }
}
