import { WatermarkError } from './errors.js';

/** The lower Cholesky factor L (A = L Lᵀ) of a symmetric positive-definite m × m matrix A (row-major). */
export function choleskyFactor(matrix: Float64Array, m: number): Float64Array {
  const lower = new Float64Array(m * m);
  for (let i = 0; i < m; i++) {
    for (let j = 0; j <= i; j++) {
      let sum = matrix[i * m + j]!;
      for (let k = 0; k < j; k++) sum -= lower[i * m + k]! * lower[j * m + k]!;
      if (i === j) {
        if (!(sum > 0)) throw new WatermarkError('the carrier Gram matrix is not positive definite (tensor too small)');
        lower[i * m + i] = Math.sqrt(sum);
      } else {
        lower[i * m + j] = sum / lower[j * m + j]!;
      }
    }
  }
  return lower;
}

/** Solves L Lᵀ x = b given the Cholesky factor L. */
function solveWithFactor(lower: Float64Array, m: number, b: Float64Array): Float64Array {
  const y = new Float64Array(m); // L y = b
  for (let i = 0; i < m; i++) {
    let sum = b[i]!;
    for (let k = 0; k < i; k++) sum -= lower[i * m + k]! * y[k]!;
    y[i] = sum / lower[i * m + i]!;
  }
  const x = new Float64Array(m); // Lᵀ x = y
  for (let i = m - 1; i >= 0; i--) {
    let sum = y[i]!;
    for (let k = i + 1; k < m; k++) sum -= lower[k * m + i]! * x[k]!;
    x[i] = sum / lower[i * m + i]!;
  }
  return x;
}

/** Solves A x = b for a symmetric positive-definite m × m matrix A (row-major) by Cholesky factorisation. */
export function solveSymmetricPositiveDefinite(matrix: Float64Array, m: number, b: Float64Array): Float64Array {
  return solveWithFactor(choleskyFactor(matrix, m), m, b);
}
