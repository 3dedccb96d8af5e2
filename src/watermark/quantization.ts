// The weight quantisation schemes of tfjs manifests (what `tensorflowjs_converter --quantize_*` writes), in
// both directions. Reading dequantises as tfjs does: uint8/uint16 are per-tensor affine (level × scale + min),
// float16 is a cast. Writing keeps the tensor's scheme and its min and scale, so the manifest, the bytes per
// weight and every unmarked tensor stay exactly as uploaded.
//
// A mark changes each weight of a large tensor by a few hundredths of its standard deviation σ, and a uint8
// step (scale) is typically 0.03–0.1σ: rounding to the nearest level would undo most of the change. Affine
// levels are therefore rounded stochastically (up with probability equal to the fraction past the lower
// level), which is unbiased: the rounding errors are independent with zero mean, so a carrier row of unit
// norm sees them as noise of at most step/2 standard deviation against a projection of margin·σ. The
// marking code checks afterwards that every bit decodes from the re-quantised tensor. float16 keeps 11
// significant bits, a step of at most 2⁻¹¹ of the weight: far below the change, so nearest rounding does.
import { createCipheriv, createHmac } from 'node:crypto';
import type { MarkKey } from './keys.js';
import { WatermarkError } from './errors.js';

export type QuantizationDtype = 'uint8' | 'uint16' | 'float16';

export interface Quantization {
  dtype: QuantizationDtype;
  scale?: number;
  min?: number;
}

const LEVELS = { uint8: 255, uint16: 65535 } as const;

function float16ToFloat32(half: number): number {
  const sign = half & 0x8000 ? -1 : 1;
  const exponent = (half >> 10) & 0x1f;
  const fraction = half & 0x3ff;
  if (exponent === 0) return sign * 2 ** -14 * (fraction / 1024);
  if (exponent === 0x1f) return fraction ? NaN : sign * Infinity;
  return sign * 2 ** (exponent - 15) * (1 + fraction / 1024);
}

// One float32's bits, reused by every conversion (a view per value made a million-weight tensor take seconds).
const float32Slot = new Float32Array(1);
const float32SlotBits = new Uint32Array(float32Slot.buffer);

/** float32 → IEEE half bits, round to nearest even (what numpy's astype(float16) does). */
function float16Bits(value: number): number {
  float32Slot[0] = value;
  const bits = float32SlotBits[0]!;
  const sign = (bits >>> 16) & 0x8000;
  const exponent = (bits >>> 23) & 0xff;
  const mantissa = bits & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  // Normal halves keep 10 mantissa bits; subnormal ones shift the implicit 1 in as well.
  const shift = halfExponent > 0 ? 13 : 14 - halfExponent;
  if (shift > 24) return sign;
  const full = halfExponent > 0 ? mantissa : mantissa | 0x800000;
  const truncated = full >>> shift;
  const remainder = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  const rounded = truncated + (remainder > halfway || (remainder === halfway && truncated & 1) ? 1 : 0);
  return sign | ((halfExponent > 0 ? halfExponent << 10 : 0) + rounded);
}

function affine(name: string, quantization: Quantization): { scale: number; min: number } {
  const { scale, min } = quantization;
  if (scale === undefined || min === undefined) {
    throw new WatermarkError(`weight ${name} is ${quantization.dtype}-quantized without scale and min`);
  }
  return { scale, min };
}

/** `size` values stored as `quantization` in `bytes` (aligned for a 16-bit view), as float32. */
export function dequantize(name: string, bytes: Uint8Array, size: number, quantization: Quantization): Float32Array {
  const values = new Float32Array(size);
  if (quantization.dtype === 'float16') {
    const halves = new Uint16Array(bytes.buffer, bytes.byteOffset, size);
    for (let i = 0; i < size; i++) values[i] = float16ToFloat32(halves[i]!);
    return values;
  }
  const { scale, min } = affine(name, quantization);
  const levels = quantization.dtype === 'uint8' ? bytes : new Uint16Array(bytes.buffer, bytes.byteOffset, size);
  for (let i = 0; i < size; i++) values[i] = levels[i]! * scale + min;
  return values;
}

/**
 * The bytes of `values` stored as `quantization`, with its min and scale (values outside the range are
 * clamped to it). `dither` holds one uniform [0, 1) offset per value for stochastic rounding of affine
 * levels; without it they are rounded to the nearest level.
 */
export function quantize(
  name: string,
  values: Float32Array,
  quantization: Quantization,
  dither?: Float64Array,
): Uint8Array {
  if (quantization.dtype === 'float16') {
    const halves = new Uint16Array(values.length);
    for (let i = 0; i < values.length; i++) halves[i] = float16Bits(values[i]!);
    return new Uint8Array(halves.buffer);
  }
  const { scale, min } = affine(name, quantization);
  const top = LEVELS[quantization.dtype];
  const levels = quantization.dtype === 'uint8' ? new Uint8Array(values.length) : new Uint16Array(values.length);
  for (let i = 0; i < values.length; i++) {
    const level = Math.floor((values[i]! - min) / scale + (dither ? dither[i]! : 0.5));
    levels[i] = Math.min(Math.max(level, 0), top);
  }
  return new Uint8Array(levels.buffer);
}

/**
 * Deterministic rounding offsets for one tensor marked under `key`: AES-256-CTR under a key of their own
 * (HMAC of the carrier key), so rebuilding a marked copy gives the same bytes.
 */
export function roundingDither(key: MarkKey, tensor: string, size: number): Float64Array {
  const ditherKey = createHmac('sha256', key.carrierKey).update(`rounding\0${tensor}`).digest();
  const stream = createCipheriv('aes-256-ctr', ditherKey, Buffer.alloc(16)).update(Buffer.alloc(4 * size));
  const dither = new Float64Array(size);
  for (let i = 0; i < size; i++) dither[i] = stream.readUInt32LE(4 * i) / 2 ** 32;
  return dither;
}
