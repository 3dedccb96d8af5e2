// Access tokens: short-lived JWTs. Verification pins the algorithm to the one of the key named by `kid`
// and checks issuer and audience, so `alg: none`, HMAC-with-the-public-key, expired, tampered and foreign
// tokens are all rejected. A token's signature is checked once: valid tokens are cached (by their SHA-256)
// until they expire, and each use still checks expiry and that the signing key was not retired since.
import { createHash, randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { ChangeFeed } from '../db/change-feed.js';
import { FeedCache } from '../db/feed-cache.js';
import type { SigningKeyRing } from './signing-keys.js';

export interface AccessTokenClaims {
  userId: string;
  sessionId: string;
}

interface VerifiedToken {
  claims: AccessTokenClaims;
  kid: string;
  /** Epoch milliseconds past which jwt.verify would refuse it (expiry plus the clock tolerance). */
  validUntilMs: number;
}

const CLOCK_TOLERANCE_SECONDS = 5;

export class AccessTokens {
  // Nothing in the database changes a verified token, so no change drops one; the cache is still bypassed while
  // the feed is not trusted, and cleared when it reconnects, like every hot-path cache.
  readonly #verified: FeedCache<VerifiedToken>;

  constructor(
    private readonly keys: SigningKeyRing,
    private readonly options: { issuer: string; audience: string; ttlSeconds: number },
    changes: ChangeFeed,
  ) {
    this.#verified = new FeedCache(changes, { max: 50_000, kinds: [] });
  }

  get ttlSeconds(): number {
    return this.options.ttlSeconds;
  }

  sign(claims: AccessTokenClaims): string {
    const key = this.keys.signing;
    return jwt.sign({ sid: claims.sessionId }, key.privateKey, {
      algorithm: key.algorithm,
      keyid: key.kid,
      issuer: this.options.issuer,
      audience: this.options.audience,
      subject: claims.userId,
      expiresIn: this.options.ttlSeconds,
      jwtid: randomUUID(),
    });
  }

  /**
   * The claims of a valid token; `'expired'` for one of ours (its signature checked) past its expiry, so the
   * client knows to refresh it (RFC 6750's error_description); undefined for any other invalid token (why is not
   * the caller's business).
   */
  async verify(token: string): Promise<AccessTokenClaims | 'expired' | undefined> {
    const digest = createHash('sha256').update(token).digest('base64url');
    let expired = false;
    const verified = await this.#verified.getOrLoad(digest, async () => {
      const outcome = await this.#verifySignature(token);
      expired = outcome === 'expired';
      return outcome === 'expired' ? undefined : outcome;
    });
    if (expired) return 'expired';
    if (!verified || !this.keys.verifies(verified.kid)) return undefined;
    return verified.validUntilMs <= Date.now() ? 'expired' : verified.claims;
  }

  async #verifySignature(token: string): Promise<VerifiedToken | 'expired' | undefined> {
    const decoded = jwt.decode(token, { complete: true });
    const kid = decoded?.header.kid;
    if (!kid) return undefined;
    const key = await this.keys.verificationKey(kid);
    if (!key) return undefined;
    try {
      const payload = jwt.verify(token, key.publicKey, {
        algorithms: [key.algorithm],
        issuer: this.options.issuer,
        audience: this.options.audience,
        clockTolerance: CLOCK_TOLERANCE_SECONDS,
        complete: false,
      });
      if (
        typeof payload === 'string' ||
        !payload.sub ||
        typeof payload.sid !== 'string' ||
        !payload.jti ||
        typeof payload.exp !== 'number'
      ) {
        return undefined;
      }
      return {
        claims: { userId: payload.sub, sessionId: payload.sid },
        kid,
        validUntilMs: (payload.exp + CLOCK_TOLERANCE_SECONDS) * 1000,
      };
    } catch (error) {
      // jsonwebtoken checks the signature before the expiry: only our own tokens can be called expired.
      return error instanceof jwt.TokenExpiredError ? 'expired' : undefined;
    }
  }
}
