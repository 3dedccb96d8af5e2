// scrypt password hashing at the OWASP Password Storage cost (N=2^17, r=8, p=1), stored self-describing
// (`scrypt$<log2N>$<r>$<p>$<salt>$<hash>`) so the cost can be raised later: a hash below the configured
// cost is replaced at the next successful log-in.
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';

const KEY_LENGTH = 32;
const SALT_LENGTH = 16;

export interface ScryptCost {
  log2N: number;
  r: number;
  p: number;
}

export const OWASP_SCRYPT_COST: ScryptCost = { log2N: 17, r: 8, p: 1 };

function derive(password: string, salt: Buffer, cost: ScryptCost, keyLength: number): Promise<Buffer> {
  const N = 2 ** cost.log2N;
  // scrypt needs 128·N·r bytes; Node's default maxmem (32 MiB) is below that at N=2^17.
  const options: ScryptOptions = { N, r: cost.r, p: cost.p, maxmem: 256 * N * cost.r };
  return new Promise((resolve, reject) =>
    scrypt(password.normalize('NFKC'), salt, keyLength, options, (error, key) =>
      error ? reject(error) : resolve(key),
    ),
  );
}

export async function hashPassword(password: string, cost: ScryptCost = OWASP_SCRYPT_COST): Promise<string> {
  const salt = randomBytes(SALT_LENGTH);
  const hash = await derive(password, salt, cost, KEY_LENGTH);
  return ['scrypt', cost.log2N, cost.r, cost.p, salt.toString('base64url'), hash.toString('base64url')].join('$');
}

function parse(stored: string): { cost: ScryptCost; salt: Buffer; hash: Buffer } | undefined {
  const [scheme, log2N, r, p, salt, hash] = stored.split('$');
  if (scheme !== 'scrypt' || !salt || !hash) return undefined;
  const cost = { log2N: Number(log2N), r: Number(r), p: Number(p) };
  if (![cost.log2N, cost.r, cost.p].every((n) => Number.isInteger(n) && n > 0)) return undefined;
  return { cost, salt: Buffer.from(salt, 'base64url'), hash: Buffer.from(hash, 'base64url') };
}

export interface PasswordCheck {
  ok: boolean;
  /** The stored hash is weaker than `wanted`: store a new one. */
  needsRehash: boolean;
}

export async function verifyPassword(password: string, stored: string, wanted: ScryptCost): Promise<PasswordCheck> {
  const parsed = parse(stored);
  if (!parsed) return { ok: false, needsRehash: false };
  const candidate = await derive(password, parsed.salt, parsed.cost, parsed.hash.length);
  const ok = candidate.length === parsed.hash.length && timingSafeEqual(candidate, parsed.hash);
  const { cost } = parsed;
  const needsRehash = ok && (cost.log2N < wanted.log2N || cost.r < wanted.r || cost.p < wanted.p);
  return { ok, needsRehash };
}

/** A hash of a random password, verified against when the account does not exist so timing matches. */
export function dummyHash(cost: ScryptCost): Promise<string> {
  return hashPassword(randomBytes(16).toString('hex'), cost);
}
