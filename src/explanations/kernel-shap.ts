// Kernel SHAP (Lundberg & Lee 2017): Shapley values as the weighted least-squares fit of a linear model over
// coalitions of features, with the Shapley kernel's weights and the efficiency constraint Σφ = f(x) − f(baseline).
//
// Coalitions: when every proper coalition fits in the budget they are all used, each with its kernel weight;
// otherwise coalitions are drawn in pairs (a coalition and its complement), their size from the kernel's
// distribution over sizes, so each counts once. The empty and the full coalition are always evaluated: they are
// the constraint's two ends (f(baseline) is evaluated with the perturbations; f(x) is the prediction).
//
// Sampling and the solve are CPU work of O(samples × features²): they run in the preprocessing worker threads
// (sampleCoalitions, solveKernelShap), never on the event loop.
import type { PreprocessingPool } from '../preprocessing/preprocessing-pool.js';
import type { ExplainRequest, ExplainResult, Explainer, InstanceAttribution, Predictor } from './explainer.js';
import { spreadOverValues } from './features.js';
import { evaluatePerturbations, inTurn } from './perturbations.js';

export interface Coalitions {
  /** `count` rows of `features` flags (1 = present); row 0 is the empty coalition. */
  masks: Uint8Array;
  /** Each row's weight in the regression (row 0's is unused: it is the baseline). */
  weights: Float64Array;
  count: number;
}

/** A small seeded generator (mulberry32): the same instance gets the same coalitions. */
function random(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function binomial(n: number, k: number): number {
  let result = 1;
  for (let i = 1; i <= k; i++) result = (result * (n - k + i)) / i;
  return result;
}

/** The empty coalition, then `samples − 2` others (the full one is the prediction itself, not re-evaluated). */
export function sampleCoalitions(features: number, samples: number, seed: number): Coalitions {
  const M = features;
  const proper = M >= 2 ? 2 ** M - 2 : 0;
  if (proper <= samples - 2) {
    const count = 1 + proper;
    const masks = new Uint8Array(count * M);
    const weights = new Float64Array(count);
    for (let code = 1; code <= proper; code++) {
      let size = 0;
      for (let j = 0; j < M; j++) {
        const present = (code >> j) & 1;
        masks[code * M + j] = present;
        size += present;
      }
      weights[code] = (M - 1) / (binomial(M, size) * size * (M - size));
    }
    return { masks, weights, count };
  }
  const pairs = Math.floor((samples - 2) / 2);
  const count = 1 + 2 * pairs;
  const masks = new Uint8Array(count * M);
  const weights = new Float64Array(count).fill(1);
  const next = random(seed);
  // The kernel's weight of all coalitions of each size: (M − 1) / (s (M − s)), cumulated for sampling.
  const cumulative = new Float64Array(M);
  for (let s = 1; s < M; s++) cumulative[s] = cumulative[s - 1]! + (M - 1) / (s * (M - s));
  const order = Int32Array.from({ length: M }, (_, j) => j);
  for (let p = 0; p < pairs; p++) {
    const u = next() * cumulative[M - 1]!;
    let size = 1;
    while (size < M - 1 && cumulative[size]! < u) size++;
    // A uniform subset of `size` features: the first `size` of a partial Fisher–Yates shuffle.
    for (let i = 0; i < size; i++) {
      const j = i + Math.floor(next() * (M - i));
      const swap = order[i]!;
      order[i] = order[j]!;
      order[j] = swap;
    }
    const row = 1 + 2 * p;
    masks.fill(1, (row + 1) * M, (row + 2) * M);
    for (let i = 0; i < size; i++) {
      masks[row * M + order[i]!] = 1;
      masks[(row + 1) * M + order[i]!] = 0;
    }
  }
  return { masks, weights, count };
}

/**
 * Solves min Σ_k w_k (y_k − z_k·φ)² subject to Σφ = delta, where y_k = f(z_k) − f(baseline) for rows 1.. of the
 * coalitions (row 0 is the baseline itself). The constraint eliminates the last φ; the normal equations are
 * solved by Cholesky, with a tiny ridge so that fewer coalitions than features still give an answer.
 */
export function solveKernelShap(
  coalitions: Coalitions,
  features: number,
  y: Float64Array,
  delta: number,
): Float64Array {
  const M = features;
  const phi = new Float64Array(M);
  if (M === 0) return phi;
  if (M === 1) {
    phi[0] = delta;
    return phi;
  }
  const n = M - 1;
  const ata = new Float64Array(n * n);
  const aty = new Float64Array(n);
  const a = new Float64Array(n);
  const { masks, weights, count } = coalitions;
  for (let k = 1; k < count; k++) {
    const w = weights[k]!;
    const last = masks[k * M + n]!;
    for (let j = 0; j < n; j++) a[j] = masks[k * M + j]! - last;
    const target = y[k]! - last * delta;
    for (let i = 0; i < n; i++) {
      const wai = w * a[i]!;
      if (wai === 0) continue;
      aty[i]! += wai * target;
      for (let j = 0; j <= i; j++) ata[i * n + j]! += wai * a[j]!;
    }
  }
  let trace = 0;
  for (let i = 0; i < n; i++) trace += ata[i * n + i]!;
  const ridge = 1e-9 * (trace / n) + 1e-12;
  for (let i = 0; i < n; i++) ata[i * n + i]! += ridge;
  // Cholesky: ata = L Lᵀ (lower triangle, in place).
  for (let j = 0; j < n; j++) {
    let diagonal = ata[j * n + j]!;
    for (let k = 0; k < j; k++) diagonal -= ata[j * n + k]! ** 2;
    const root = Math.sqrt(Math.max(diagonal, 1e-300));
    ata[j * n + j] = root;
    for (let i = j + 1; i < n; i++) {
      let sum = ata[i * n + j]!;
      for (let k = 0; k < j; k++) sum -= ata[i * n + k]! * ata[j * n + k]!;
      ata[i * n + j] = sum / root;
    }
  }
  for (let i = 0; i < n; i++) {
    let sum = aty[i]!;
    for (let k = 0; k < i; k++) sum -= ata[i * n + k]! * phi[k]!;
    phi[i] = sum / ata[i * n + i]!;
  }
  for (let i = n - 1; i >= 0; i--) {
    let sum = phi[i]!;
    for (let k = i + 1; k < n; k++) sum -= ata[k * n + i]! * phi[k]!;
    phi[i] = sum / ata[i * n + i]!;
  }
  let rest = delta;
  for (let i = 0; i < n; i++) rest -= phi[i]!;
  phi[n] = rest;
  return phi;
}

export class KernelShapExplainer implements Explainer {
  constructor(
    private readonly engine: Predictor,
    private readonly workers: Pick<PreprocessingPool, 'sampleCoalitions' | 'solveKernelShap'>,
  ) {}

  async explain(request: ExplainRequest): Promise<ExplainResult> {
    const { input, layout, features, outputs, classes, targets } = request;
    const samples = request.samples!;
    let evaluations = 0;
    // One instance after the other, so one call holds at most its CHUNKS_IN_FLIGHT chunks of the shared queue.
    const instances = await inTurn(features, async (instance, index): Promise<InstanceAttribution> => {
      const M = instance.groups.length;
      const target = targets[index]!;
      const fx = outputs[index * classes + target]!;
      const coalitions = await this.workers.sampleCoalitions(M, samples, 0x5eed + index);
      const scores = await evaluatePerturbations(
        this.engine,
        request.model,
        input,
        index,
        instance.groups,
        { masks: coalitions.masks, count: coalitions.count },
        classes,
        target,
      );
      evaluations += coalitions.count;
      const baseline = scores[0]!;
      const y = scores.map((score) => score - baseline);
      const delta = fx - baseline;
      const phi = await this.workers.solveKernelShap(coalitions, M, y, delta);
      const attributionSum = phi.reduce((sum, value) => sum + value, 0);
      return {
        values: spreadOverValues(instance, phi, layout.size),
        check: {
          kind: 'EFFICIENCY',
          attributionSum,
          outputDifference: delta,
          error: Math.abs(attributionSum - delta),
        },
      };
    });
    return { instances, evaluations };
  }
}
