// Mark keys. Everything about a mark (the carrier, the target bits) is derived from a server secret and a
// public id, so marking and verifying need only (secret, purpose, id): nothing secret is stored per mark.
import { createHmac, hkdfSync } from 'node:crypto';
import { WatermarkError } from './errors.js';

/** Bits carried by every mark. */
export const MARK_BITS = 256;

/** 'owner': one mark per published version. 'licensee': one fingerprint per contract, on top of it. */
export type MarkPurpose = 'owner' | 'licensee';

export interface MarkKey {
  purpose: MarkPurpose;
  /** The version id (owner) or contract id (licensee) the key was derived for. */
  id: string;
  /** Secret: seeds the carrier (see carrier.ts). */
  carrierKey: Buffer;
  /** The MARK_BITS target bits, each 0 or 1. Secret as well: they are what a forger would need to know. */
  bits: Uint8Array;
}

const HKDF_SALT = 'modelmarket/watermark/v1';
const MIN_SECRET_BYTES = 16;
const MAX_ID_BYTES = 512;

/**
 * HKDF-SHA256 from the server secret, with (purpose, id) as the context, then two HMAC-SHA256 outputs
 * with fixed labels: the carrier key, and the 256 target bits. An owner and a licensee key never
 * coincide, even for equal ids.
 */
export function deriveMarkKey(secret: Uint8Array, purpose: MarkPurpose, id: string): MarkKey {
  if (secret.byteLength < MIN_SECRET_BYTES) {
    throw new WatermarkError(`the watermark secret must be at least ${MIN_SECRET_BYTES} bytes`);
  }
  if (purpose !== 'owner' && purpose !== 'licensee') throw new WatermarkError(`unknown mark purpose "${purpose}"`);
  const info = JSON.stringify([purpose, id]); // unambiguous for any id
  if (id.length === 0 || Buffer.byteLength(info) > MAX_ID_BYTES) {
    throw new WatermarkError(`a mark id must be 1 to ${MAX_ID_BYTES - 20} bytes long`);
  }
  const master = Buffer.from(hkdfSync('sha256', secret, HKDF_SALT, info, 32));
  const carrierKey = createHmac('sha256', master).update('carrier').digest();
  const bitBytes = createHmac('sha256', master).update('bits').digest();
  const bits = new Uint8Array(MARK_BITS);
  for (let i = 0; i < MARK_BITS; i++) bits[i] = (bitBytes[i >> 3]! >> (i & 7)) & 1;
  return { purpose, id, carrierKey, bits };
}
