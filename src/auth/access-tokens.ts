// Access tokens: short-lived JWTs. Verification pins the algorithm to the one of the key named by `kid`
// and checks issuer and audience, so `alg: none`, HMAC-with-the-public-key, expired, tampered and foreign
// tokens are all rejected.
import { randomUUID } from 'node:crypto';
import jwt from 'jsonwebtoken';
import type { SigningKeyRing } from './signing-keys.js';

export interface AccessTokenClaims {
  userId: string;
  sessionId: string;
}

export class AccessTokens {
  constructor(
    private readonly keys: SigningKeyRing,
    private readonly options: { issuer: string; audience: string; ttlSeconds: number },
  ) {}

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

  /** The claims of a valid token, or undefined for any invalid one (the reason is not the caller's business). */
  async verify(token: string): Promise<AccessTokenClaims | undefined> {
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
        clockTolerance: 5,
        complete: false,
      });
      if (typeof payload === 'string' || !payload.sub || typeof payload.sid !== 'string' || !payload.jti) {
        return undefined;
      }
      return { userId: payload.sub, sessionId: payload.sid };
    } catch {
      return undefined;
    }
  }
}
