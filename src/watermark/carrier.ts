// The secret carrier X: a MARK_BITS × n matrix (n = weights in the marked tensor), regenerated from the
// key on every use and never stored. Bit k of a mark is read as the sign of row k's projection x_k · d.
//
// X is a sparse random sign matrix: every weight gets r = ⌈ROW_SUPPORT · MARK_BITS / n⌉ entries ±1 (at most
// MARK_BITS), each in a row drawn uniformly, so every row has about max(ROW_SUPPORT, n / MARK_BITS) nonzeros:
// r = 6 for the MNIST MLP's 784×128 kernel, 1 for the spam model's 10,000×128 embedding (5,000 per row),
// 132 for the CNN's 400×10 head. Rows are scaled to unit expected norm, so for weights with i.i.d. spread σ
// a projection has spread σ too: margins and noise compare in units of the tensor's standard deviation,
// whatever its size. Sparsity is what keeps marking fast: X Xᵀ costs O(n·r²) instead of the O(n·MARK_BITS²)
// of a dense carrier (6.6·10⁹ multiply-adds for the 784×128 kernel), a projection O(n·r). Each bit still
// averages over thousands of weights, which is what robustness to noise, pruning and fine-tuning needs.
//
// The entries come from AES-256-CTR under the key's carrier key: two keystream bytes per entry, the first
// naming the row (MARK_BITS = 256 rows, so one byte is exactly uniform), the low bit of the second the sign.
import { createCipheriv } from 'node:crypto';
import { MARK_BITS, type MarkKey } from './keys.js';

/** Nonzeros per carrier row, at least. */
export const ROW_SUPPORT = 2048;

export interface Carrier {
  /** Weights in the tensor. */
  size: number;
  entriesPerWeight: number;
  /** rows[i · entriesPerWeight + j]: the row of weight i's j-th entry. */
  rows: Uint8Array;
  /** The entry's sign, ±1, at the same index. */
  signs: Int8Array;
  /** Every entry's magnitude: 1 / sqrt(expected nonzeros per row). */
  scale: number;
}

export function carrierFor(key: MarkKey, size: number): Carrier {
  const entriesPerWeight = Math.min(MARK_BITS, Math.ceil((ROW_SUPPORT * MARK_BITS) / size));
  const entries = size * entriesPerWeight;
  const stream = createCipheriv('aes-256-ctr', key.carrierKey, Buffer.alloc(16)).update(Buffer.alloc(2 * entries));
  const rows = new Uint8Array(entries);
  const signs = new Int8Array(entries);
  for (let e = 0; e < entries; e++) {
    rows[e] = stream[2 * e]!;
    signs[e] = stream[2 * e + 1]! & 1 ? 1 : -1;
  }
  return { size, entriesPerWeight, rows, signs, scale: 1 / Math.sqrt((size * entriesPerWeight) / MARK_BITS) };
}

/** X · values: the MARK_BITS projections. */
export function project(carrier: Carrier, values: ArrayLike<number>): Float64Array {
  const { size, entriesPerWeight: r, rows, signs, scale } = carrier;
  const projections = new Float64Array(MARK_BITS);
  for (let i = 0, e = 0; i < size; i++, e += r) {
    const value = values[i]!;
    if (value === 0) continue; // differences are often sparse (pruned or untouched weights)
    for (let j = e; j < e + r; j++) projections[rows[j]!]! += signs[j]! * value;
  }
  for (let k = 0; k < MARK_BITS; k++) projections[k]! *= scale;
  return projections;
}

/** out += M Xᵀ · coefficients, M the diagonal `metric` (per weight; identity when absent). */
export function addTransposed(
  carrier: Carrier,
  coefficients: Float64Array,
  out: Float64Array,
  metric?: Float64Array,
): void {
  const { size, entriesPerWeight: r, rows, signs, scale } = carrier;
  for (let i = 0, e = 0; i < size; i++, e += r) {
    let sum = 0;
    for (let j = e; j < e + r; j++) sum += signs[j]! * coefficients[rows[j]!]!;
    out[i]! += scale * sum * (metric ? metric[i]! : 1);
  }
}

/** A M Bᵀ for two carriers of the same tensor, M as in addTransposed: MARK_BITS × MARK_BITS, row-major. */
export function crossGram(a: Carrier, b: Carrier, metric?: Float64Array): Float64Array {
  const gram = new Float64Array(MARK_BITS * MARK_BITS);
  const ra = a.entriesPerWeight;
  const rb = b.entriesPerWeight;
  for (let i = 0; i < a.size; i++) {
    const weight = metric ? metric[i]! : 1;
    for (let ja = i * ra; ja < (i + 1) * ra; ja++) {
      const rowOffset = a.rows[ja]! * MARK_BITS;
      const sign = a.signs[ja]! * weight;
      for (let jb = i * rb; jb < (i + 1) * rb; jb++) gram[rowOffset + b.rows[jb]!]! += sign * b.signs[jb]!;
    }
  }
  const scale = a.scale * b.scale;
  for (let k = 0; k < gram.length; k++) gram[k]! *= scale;
  return gram;
}
