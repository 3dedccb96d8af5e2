// Shaped marks for Dense kernels: the weight change goes where real inputs do not look.
//
// A change δ of a Dense kernel moves the layer's outputs by f·δ for an input row f. The plain mark
// (mark.ts) takes the least-norm δ, which treats every input direction alike; on a small kernel that moves
// enough predictions to break the fidelity budget. Given the mean μ and covariance Σ of the kernel's inputs
// on calibration examples, the change that reaches the same carrier projections while moving the outputs
// least on such inputs solves
//   minimise Σ_j δ_jᵀ A δ_j   subject to   X δ = r,      A = Σ + λ·(tr Σ / inputs)·I,
// with δ_j the kernel's column j. Its solution is δ = M⁻¹Xᵀ (X M⁻¹ Xᵀ)⁻¹ r, M = A applied column by column.
// The mean input's part of the change, μ·δ_j, is a constant shift of output j that the layer's bias takes
// back (biasShift), which is why Σ is the centered covariance. λ keeps directions the calibration examples
// never took from looking free: with few examples Σ is singular.
//
// Cost: an explicit A⁻¹ (inputs³/2), then per output column nnz·inputs + rows²·nnz/rows, i.e. about
// 1.5·10⁹ multiply-adds for an 800×10 head with two keys; memory O(inputs² + rows·inputs).
import type { Carrier } from './carrier.js';
import { WatermarkError } from './errors.js';
import { choleskyFactor, solveSymmetricPositiveDefinite } from './linear-algebra.js';

/**
 * Default margin of shaped marks, in σ. A shaped change concentrates on fewer weights, so pruning erases more
 * of it: on the demo CNN, 1σ left 10–11 of 256 bits wrong after 70% pruning (limit 12), 1.5σ 1–4.
 */
export const SHAPED_MARGIN = 1.5;

/** Widest Dense kernel that is shaped: A⁻¹ costs inputs³/2 multiply-adds (4·10⁹, a few seconds, at 2048). */
export const MAX_SHAPED_INPUTS = 2048;

/** Ridge added to the covariance, relative to its mean variance. Measured in bench/watermark.ts. */
export const SHAPING_REGULARIZATION = 0.01;

/** What calibration examples say about a Dense kernel's inputs. */
export interface InputStatistics {
  inputs: number;
  samples: number;
  mean: Float64Array;
  /** inputs × inputs, row-major; centered. */
  covariance: Float64Array;
}

/** Mean and covariance of `samples` feature rows of equal length, given row-major. */
export function inputStatistics(features: ArrayLike<number>, samples: number): InputStatistics {
  if (!(Number.isSafeInteger(samples) && samples >= 2) || features.length % samples !== 0)
    throw new WatermarkError('calibration needs at least 2 feature rows of equal length');
  const inputs = features.length / samples;
  const mean = new Float64Array(inputs);
  for (let s = 0; s < samples; s++) for (let i = 0; i < inputs; i++) mean[i]! += features[s * inputs + i]! / samples;
  const covariance = new Float64Array(inputs * inputs);
  const centered = new Float64Array(inputs);
  for (let s = 0; s < samples; s++) {
    for (let i = 0; i < inputs; i++) centered[i] = features[s * inputs + i]! - mean[i]!;
    for (let a = 0; a < inputs; a++) {
      const value = centered[a]!;
      if (value === 0) continue;
      const row = a * inputs;
      for (let b = a; b < inputs; b++) covariance[row + b]! += value * centered[b]!;
    }
  }
  for (let a = 0; a < inputs; a++) {
    for (let b = a; b < inputs; b++) {
      const value = covariance[a * inputs + b]! / samples;
      covariance[a * inputs + b] = value;
      covariance[b * inputs + a] = value;
    }
  }
  return { inputs, samples, mean, covariance };
}

/** A⁻¹ for the regularised covariance: (L⁻¹)ᵀ L⁻¹ from its Cholesky factor L (symmetric, row-major). */
function regularisedInverse({ inputs: m, covariance }: InputStatistics): Float64Array {
  let trace = 0;
  for (let i = 0; i < m; i++) trace += covariance[i * m + i]!;
  const ridge = (SHAPING_REGULARIZATION * trace) / m || SHAPING_REGULARIZATION;
  const matrix = Float64Array.from(covariance);
  for (let i = 0; i < m; i++) matrix[i * m + i]! += ridge;
  const lower = choleskyFactor(matrix, m);
  const lowerInverse = new Float64Array(m * m); // lower triangular
  for (let c = 0; c < m; c++) {
    lowerInverse[c * m + c] = 1 / lower[c * m + c]!;
    for (let i = c + 1; i < m; i++) {
      let sum = 0;
      for (let k = c; k < i; k++) sum -= lower[i * m + k]! * lowerInverse[k * m + c]!;
      lowerInverse[i * m + c] = sum / lower[i * m + i]!;
    }
  }
  const inverse = new Float64Array(m * m);
  for (let k = 0; k < m; k++) {
    const row = k * m;
    for (let i = 0; i <= k; i++) {
      const value = lowerInverse[row + i]!;
      if (value === 0) continue;
      for (let j = 0; j <= i; j++) inverse[i * m + j]! += value * lowerInverse[row + j]!;
    }
  }
  for (let i = 0; i < m; i++) for (let j = 0; j < i; j++) inverse[j * m + i] = inverse[i * m + j]!;
  return inverse;
}

/** The carrier entries of each output column, grouped by constraint row (compressed sparse rows). */
interface ColumnEntries {
  /** Entries of row a: start[a] … start[a + 1] − 1. */
  start: Int32Array;
  input: Int32Array;
  value: Float64Array;
}

/** Only the first `bits` rows of each carrier are constraints (the mark's capacity). */
function columnEntries(
  carriers: readonly Carrier[],
  bits: number,
  inputs: number,
  outputs: number,
  column: number,
): ColumnEntries {
  const rows = carriers.length * bits;
  const start = new Int32Array(rows + 1);
  const each = (visit: (row: number, input: number, value: number) => void) =>
    carriers.forEach((carrier, block) => {
      const r = carrier.entriesPerWeight;
      for (let i = 0; i < inputs; i++) {
        const first = (i * outputs + column) * r;
        for (let e = first; e < first + r; e++)
          if (carrier.rows[e]! < bits) visit(block * bits + carrier.rows[e]!, i, carrier.signs[e]! * carrier.scale);
      }
    });
  each((row) => start[row + 1]!++);
  const count = start.reduce((sum, n) => sum + n, 0);
  for (let a = 0; a < rows; a++) start[a + 1]! += start[a]!;
  const next = Int32Array.from(start.subarray(0, rows));
  const input = new Int32Array(count);
  const value = new Float64Array(count);
  each((row, i, v) => {
    const at = next[row]!++;
    input[at] = i;
    value[at] = v;
  });
  return { start, input, value };
}

/**
 * The shaped change of a [inputs, outputs] kernel (row-major) that moves the carriers' projections by `rhs`
 * (one block per carrier, as many rows as the mark has bits), and the bias shift that cancels its mean-input part.
 */
export function shapedChange(
  carriers: readonly Carrier[],
  rhs: Float64Array,
  shape: readonly number[],
  statistics: InputStatistics,
): { change: Float64Array; biasShift: Float64Array } {
  const [inputs, outputs] = shape as [number, number];
  if (shape.length !== 2 || statistics.inputs !== inputs)
    throw new WatermarkError(`the calibration has ${statistics.inputs} inputs, the kernel [${shape.join(', ')}]`);
  if (inputs > MAX_SHAPED_INPUTS)
    throw new WatermarkError(`a kernel with more than ${MAX_SHAPED_INPUTS} inputs is not shaped (${inputs})`);
  const inverse = regularisedInverse(statistics);
  const rows = rhs.length;
  const bits = rows / carriers.length;
  const columns = Array.from({ length: outputs }, (_, j) => columnEntries(carriers, bits, inputs, outputs, j));

  // Gram matrix X M⁻¹ Xᵀ = Σ_j X_j A⁻¹ X_jᵀ.
  const gram = new Float64Array(rows * rows);
  const projected = new Float64Array(rows * inputs); // row a: A⁻¹ x_a for the current column
  for (const { start, input, value } of columns) {
    projected.fill(0);
    for (let a = 0; a < rows; a++) {
      const target = a * inputs;
      for (let k = start[a]!; k < start[a + 1]!; k++) {
        const source = input[k]! * inputs;
        const v = value[k]!;
        for (let m = 0; m < inputs; m++) projected[target + m]! += v * inverse[source + m]!;
      }
    }
    for (let a = 0; a < rows; a++) {
      for (let b = a; b < rows; b++) {
        const offset = b * inputs;
        let sum = 0;
        for (let k = start[a]!; k < start[a + 1]!; k++) sum += value[k]! * projected[offset + input[k]!]!;
        gram[a * rows + b]! += sum;
      }
    }
  }
  for (let a = 0; a < rows; a++) for (let b = a + 1; b < rows; b++) gram[b * rows + a] = gram[a * rows + b]!;
  const coefficients = solveSymmetricPositiveDefinite(gram, rows, rhs);

  // δ_j = A⁻¹ X_jᵀ c.
  const change = new Float64Array(inputs * outputs);
  const biasShift = new Float64Array(outputs);
  const direction = new Float64Array(inputs);
  columns.forEach(({ start, input, value }, column) => {
    direction.fill(0);
    for (let a = 0; a < rows; a++)
      for (let k = start[a]!; k < start[a + 1]!; k++) direction[input[k]!]! += value[k]! * coefficients[a]!;
    let shift = 0;
    for (let i = 0; i < inputs; i++) {
      let sum = 0;
      for (let m = 0; m < inputs; m++) sum += inverse[i * inputs + m]! * direction[m]!;
      change[i * outputs + column] = sum;
      shift += statistics.mean[i]! * sum;
    }
    biasShift[column] = -shift;
  });
  return { change, biasShift };
}
