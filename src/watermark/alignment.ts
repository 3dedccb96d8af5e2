// Undoing a hidden-unit permutation and per-unit positive rescaling of the marked tensor, before decoding.
// Each suspect unit is matched to the original unit its weights point the same way as (cosine similarity,
// optimal one-to-one assignment), then divided by the least-squares factor that best maps the original
// unit onto it. Neither step looks at a key, so on a model without the mark the decoded bits stay fair coins.
import type { UnitAxis } from './topology.js';

export interface AlignmentReport {
  /** Units that were matched to a different position. */
  unitsMoved: number;
  /** Range of the per-unit factors divided out (1 when the units were not rescaled). */
  minScale: number;
  maxScale: number;
}

/** Unit u's weights as one contiguous vector of length outer · inner, for every unit. */
function unitVectors(values: Float32Array, { outer, units, inner }: UnitAxis): Float64Array {
  const length = outer * inner;
  const vectors = new Float64Array(units * length);
  for (let o = 0; o < outer; o++) {
    for (let u = 0; u < units; u++) {
      for (let i = 0; i < inner; i++) vectors[u * length + o * inner + i] = values[(o * units + u) * inner + i]!;
    }
  }
  return vectors;
}

function dot(a: Float64Array, aStart: number, b: Float64Array, bStart: number, length: number): number {
  let sum = 0;
  for (let i = 0; i < length; i++) sum += a[aStart + i]! * b[bStart + i]!;
  return sum;
}

/**
 * Minimum-cost perfect assignment (Hungarian algorithm with potentials, O(n³)); cost is n × n row-major.
 * Returns the column assigned to each row.
 */
export function minimumCostAssignment(cost: Float64Array, n: number): Int32Array {
  // 1-based, with row/column 0 as the sentinel of the shortest augmenting path search.
  const rowPotential = new Float64Array(n + 1);
  const columnPotential = new Float64Array(n + 1);
  const rowOfColumn = new Int32Array(n + 1);
  const previousColumn = new Int32Array(n + 1);
  for (let row = 1; row <= n; row++) {
    rowOfColumn[0] = row;
    let column = 0;
    const slack = new Float64Array(n + 1).fill(Infinity);
    const visited = new Uint8Array(n + 1);
    do {
      visited[column] = 1;
      const currentRow = rowOfColumn[column]!;
      let delta = Infinity;
      let nextColumn = 0;
      for (let j = 1; j <= n; j++) {
        if (visited[j]) continue;
        const reduced = cost[(currentRow - 1) * n + j - 1]! - rowPotential[currentRow]! - columnPotential[j]!;
        if (reduced < slack[j]!) {
          slack[j] = reduced;
          previousColumn[j] = column;
        }
        if (slack[j]! < delta) {
          delta = slack[j]!;
          nextColumn = j;
        }
      }
      for (let j = 0; j <= n; j++) {
        if (visited[j]) {
          rowPotential[rowOfColumn[j]!]! += delta;
          columnPotential[j]! -= delta;
        } else {
          slack[j]! -= delta;
        }
      }
      column = nextColumn;
    } while (rowOfColumn[column] !== 0);
    do {
      const previous = previousColumn[column]!;
      rowOfColumn[column] = rowOfColumn[previous]!;
      column = previous;
    } while (column !== 0);
  }
  const assignment = new Int32Array(n);
  for (let j = 1; j <= n; j++) assignment[rowOfColumn[j]! - 1] = j - 1;
  return assignment;
}

/** How a suspect's units map to the original's: original unit a is suspect unit match[a], times scales[a]. */
export interface UnitMap {
  match: Int32Array;
  scales: Float64Array;
}

/**
 * Moves suspect unit match[a] to position a and multiplies it by scales[a] ** power: power −1 undoes the
 * scaling of the units themselves, +1 the compensating scaling of the next layer's weights they feed.
 */
export function applyUnitMap(values: Float32Array, { outer, units, inner }: UnitAxis, map: UnitMap, power: number) {
  const out = new Float32Array(values.length);
  for (let a = 0; a < units; a++) {
    const b = map.match[a]!;
    const factor = map.scales[a]! ** power;
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) out[(o * units + a) * inner + i] = values[(o * units + b) * inner + i]! * factor;
    }
  }
  return out;
}

/** The suspect tensor with its units put back in the original's order and scale, and the map that did it. */
export function alignUnits(
  suspect: Float32Array,
  original: Float32Array,
  axis: UnitAxis,
): { aligned: Float32Array; report: AlignmentReport; map: UnitMap } {
  const { outer, units, inner } = axis;
  const length = outer * inner;
  const suspectUnits = unitVectors(suspect, axis);
  const originalUnits = unitVectors(original, axis);
  const norm = (vectors: Float64Array, u: number) =>
    Math.sqrt(dot(vectors, u * length, vectors, u * length, length)) || 1;
  const suspectNorms = Array.from({ length: units }, (_, u) => norm(suspectUnits, u));
  const originalNorms = Array.from({ length: units }, (_, u) => norm(originalUnits, u));
  const negatedCosines = new Float64Array(units * units);
  for (let a = 0; a < units; a++) {
    for (let b = 0; b < units; b++) {
      const cosine =
        dot(originalUnits, a * length, suspectUnits, b * length, length) / (originalNorms[a]! * suspectNorms[b]!);
      negatedCosines[a * units + b] = -cosine;
    }
  }
  const match = minimumCostAssignment(negatedCosines, units); // original unit → suspect unit
  const scales = new Float64Array(units);
  const report: AlignmentReport = { unitsMoved: 0, minScale: Infinity, maxScale: -Infinity };
  for (let a = 0; a < units; a++) {
    const b = match[a]!;
    if (a !== b) report.unitsMoved++;
    // Least-squares s in suspect ≈ s · original; only a positive factor is a symmetry of the model.
    const fitted = dot(suspectUnits, b * length, originalUnits, a * length, length) / originalNorms[a]! ** 2;
    const scale = fitted > 0 && Number.isFinite(fitted) ? fitted : 1;
    scales[a] = scale;
    report.minScale = Math.min(report.minScale, scale);
    report.maxScale = Math.max(report.maxScale, scale);
  }
  const map = { match, scales };
  return { aligned: applyUnitMap(suspect, axis, map, -1), report, map };
}
