// Kernel SHAP's sampling and solve on their own: a model that is linear in its features has Shapley values equal to
// its weights (relative to the baseline), which the constrained fit must recover from sampled coalitions too;
// coalitions come in complementary pairs after the empty one.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { sampleCoalitions, solveKernelShap } from '../../src/explanations/kernel-shap.js';

/** y_k = f(z_k) − f(empty) for f linear: Σ_j w_j z_kj (row 0 is the empty coalition). */
function linearScores(masks: Uint8Array, count: number, weights: number[]): Float64Array {
  const M = weights.length;
  return Float64Array.from({ length: count }, (_, k) => weights.reduce((sum, w, j) => sum + w * masks[k * M + j]!, 0));
}

describe('Kernel SHAP: coalitions and the constrained solve', () => {
  it('recovers a linear model’s weights exactly from 256 sampled coalitions over 40 features', () => {
    const weights = Array.from({ length: 40 }, (_, j) => Math.sin(j + 1) * (j % 3));
    const coalitions = sampleCoalitions(weights.length, 256, 7);
    assert.equal(coalitions.count, 255);
    const phi = solveKernelShap(
      coalitions,
      weights.length,
      linearScores(coalitions.masks, coalitions.count, weights),
      weights.reduce((a, b) => a + b, 0),
    );
    phi.forEach((value, j) => assert.ok(Math.abs(value - weights[j]!) < 1e-6, `φ${j} ${value} vs ${weights[j]}`));
  });

  it('draws the empty coalition, then complementary pairs; enumerates every coalition when they fit', () => {
    const M = 12;
    const { masks, count } = sampleCoalitions(M, 64, 3);
    assert.ok(masks.subarray(0, M).every((flag) => flag === 0));
    for (let row = 1; row < count; row += 2) {
      for (let j = 0; j < M; j++) assert.equal(masks[row * M + j]! + masks[(row + 1) * M + j]!, 1);
      const size = masks.subarray(row * M, (row + 1) * M).reduce((a, b) => a + b, 0);
      assert.ok(size >= 1 && size <= M - 1);
    }
    assert.equal(sampleCoalitions(4, 256, 1).count, 1 + 14, 'M = 4: the empty coalition and all 14 proper ones');
  });

  it('keeps efficiency (Σφ = f(x) − f(baseline)) with fewer coalitions than features', () => {
    const M = 300;
    const coalitions = sampleCoalitions(M, 64, 9);
    const y = Float64Array.from({ length: coalitions.count }, (_, k) => (k === 0 ? 0 : Math.cos(k)));
    const phi = solveKernelShap(coalitions, M, y, 0.75);
    assert.ok(phi.every(Number.isFinite));
    assert.ok(Math.abs(phi.reduce((a, b) => a + b, 0) - 0.75) < 1e-9);
  });
});
