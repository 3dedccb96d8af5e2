// The JWT key ring. The signing key is JWT_PRIVATE_KEY when configured, else the newest ACTIVE key in the
// database (generated once, stored encrypted). ACTIVE and RETIRING keys verify, so a rotation never logs
// anyone out; their public halves are served as the JWKS. Replicas share keys through the database.
import {
  createHash,
  createPrivateKey,
  createPublicKey,
  generateKeyPairSync,
  type JsonWebKey,
  type KeyObject,
} from 'node:crypto';
import type { Prisma } from '../db/database.js';
import type { SecretBox } from '../security/secret-box.js';

export type JwtAlgorithm = 'ES256' | 'RS256';

export interface VerificationKey {
  kid: string;
  algorithm: JwtAlgorithm;
  publicKey: KeyObject;
}

export interface SigningKey extends VerificationKey {
  privateKey: KeyObject;
}

const SEAL_LABEL = 'jwt-signing-key';
// How often a replica re-reads the key set (to follow rotations made elsewhere), and the least time
// between re-reads forced by an unknown `kid` (so forged kids cannot hammer the database).
const REFRESH_INTERVAL_MS = 60_000;
const MIN_FORCED_REFRESH_MS = 5_000;

function algorithmOf(key: KeyObject): JwtAlgorithm {
  if (key.asymmetricKeyType === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'ES256';
  if (key.asymmetricKeyType === 'rsa' && (key.asymmetricKeyDetails?.modulusLength ?? 0) >= 2048) return 'RS256';
  throw new Error('JWT keys must be EC P-256 (ES256) or RSA ≥ 2048 bits (RS256)');
}

/** RFC 7638 thumbprint: a kid derived from the key itself, identical on every replica. */
function thumbprint(publicKey: KeyObject): string {
  const jwk = publicKey.export({ format: 'jwk' });
  const members =
    jwk.kty === 'EC' ? { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y } : { e: jwk.e, kty: jwk.kty, n: jwk.n };
  return createHash('sha256').update(JSON.stringify(members)).digest('base64url');
}

export class SigningKeyRing {
  #signing: SigningKey | undefined;
  #verification = new Map<string, VerificationKey>();
  #lastLoad = 0;
  #timer: NodeJS.Timeout | undefined;

  private constructor(
    private readonly prisma: Prisma,
    private readonly secrets: SecretBox,
    private readonly configured: SigningKey | undefined,
  ) {}

  static async open(prisma: Prisma, secrets: SecretBox, configuredPem?: string): Promise<SigningKeyRing> {
    let configured: SigningKey | undefined;
    if (configuredPem) {
      const privateKey = createPrivateKey(configuredPem);
      const publicKey = createPublicKey(privateKey);
      configured = { kid: thumbprint(publicKey), algorithm: algorithmOf(privateKey), privateKey, publicKey };
      // Only the public half is stored, so other replicas can verify; the private key stays in config.
      await prisma.signingKey.upsert({
        where: { kid: configured.kid },
        create: {
          kid: configured.kid,
          algorithm: configured.algorithm,
          publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
          status: 'ACTIVE',
        },
        update: {},
      });
    }
    const ring = new SigningKeyRing(prisma, secrets, configured);
    await ring.reload();
    if (!ring.#signing) await ring.rotate();
    ring.#timer = setInterval(() => void ring.reload().catch(() => undefined), REFRESH_INTERVAL_MS);
    ring.#timer.unref();
    return ring;
  }

  async reload(): Promise<void> {
    const rows = await this.prisma.signingKey.findMany({
      where: { status: { in: ['ACTIVE', 'RETIRING'] } },
      orderBy: { createdAt: 'desc' },
    });
    const verification = new Map<string, VerificationKey>();
    let newestActive: SigningKey | undefined;
    for (const row of rows) {
      const publicKey = createPublicKey(row.publicKeyPem);
      const key = { kid: row.kid, algorithm: algorithmOf(publicKey), publicKey };
      verification.set(row.kid, key);
      if (!newestActive && row.status === 'ACTIVE' && row.privateKeyEnc) {
        newestActive = { ...key, privateKey: createPrivateKey(this.#openPrivateKey(row.kid, row.privateKeyEnc)) };
      }
    }
    this.#verification = verification;
    const signing = this.configured ?? newestActive;
    if (signing) this.#signing = signing;
    this.#lastLoad = Date.now();
  }

  #openPrivateKey(kid: string, sealed: string): string {
    try {
      return this.secrets.open(sealed, SEAL_LABEL);
    } catch {
      throw new Error(`cannot decrypt JWT signing key ${kid}: APP_SECRET is not the one it was stored with`);
    }
  }

  /** Generates a new ES256 key that signs from now on; the previous active keys keep verifying. */
  async rotate(): Promise<string> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
    const kid = thumbprint(publicKey);
    await this.prisma.$transaction([
      this.prisma.signingKey.updateMany({ where: { status: 'ACTIVE' }, data: { status: 'RETIRING' } }),
      this.prisma.signingKey.create({
        data: {
          kid,
          algorithm: 'ES256',
          publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
          privateKeyEnc: this.secrets.seal(privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), SEAL_LABEL),
          status: 'ACTIVE',
        },
      }),
    ]);
    await this.reload();
    return kid;
  }

  /** Stops a non-signing key from verifying: tokens it signed are rejected from now on. */
  async retire(kid: string): Promise<boolean> {
    if (kid === this.signing.kid) throw new Error('the signing key cannot be retired; rotate first');
    const { count } = await this.prisma.signingKey.updateMany({
      where: { kid, status: { not: 'RETIRED' } },
      data: { status: 'RETIRED', retiredAt: new Date() },
    });
    await this.reload();
    return count > 0;
  }

  get signing(): SigningKey {
    if (!this.#signing) throw new Error('no signing key loaded');
    return this.#signing;
  }

  /** Whether `kid` verifies now (retired keys stop verifying at the next reload). */
  verifies(kid: string): boolean {
    return this.#verification.has(kid);
  }

  /** The key for `kid`; an unknown kid triggers one (throttled) re-read, to follow rotations elsewhere. */
  async verificationKey(kid: string): Promise<VerificationKey | undefined> {
    const known = this.#verification.get(kid);
    if (known || Date.now() - this.#lastLoad < MIN_FORCED_REFRESH_MS) return known;
    await this.reload();
    return this.#verification.get(kid);
  }

  jwks(): { keys: JsonWebKey[] } {
    return {
      keys: [...this.#verification.values()].map((k) => ({
        ...k.publicKey.export({ format: 'jwk' }),
        kid: k.kid,
        alg: k.algorithm,
        use: 'sig',
      })),
    };
  }

  close(): void {
    clearInterval(this.#timer);
  }
}
