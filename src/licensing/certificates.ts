// Licence certificates: JWTs signed with the server's JWKS keys, so a third party can verify a licence
// offline (GET /.well-known/jwks.json); verifyLicenseCertificate adds what only the server knows: revocation.
import jwt from 'jsonwebtoken';
import type { SigningKeyRing } from '../auth/signing-keys.js';
import type { Prisma } from '../db/database.js';
import type { Contract, Model } from '../generated/prisma/client.js';
import { visibleStatus, type VisibleStatus } from './contracts-service.js';

export const CERTIFICATE_AUDIENCE = 'modelmarket-licence';

interface CertificateClaims {
  typ: 'licence';
  model: string;
  versions: string;
  licensee: string;
  termsDigest: string;
}

export interface CertificateVerification {
  valid: boolean;
  reason: string | null;
  contractId: string | null;
  status: VisibleStatus | null;
  model: string | null;
  versions: string | null;
  licensee: string | null;
  termsDigest: string | null;
  expiresAt: Date | null;
}

const INVALID = (reason: string): CertificateVerification => ({
  valid: false,
  reason,
  contractId: null,
  status: null,
  model: null,
  versions: null,
  licensee: null,
  termsDigest: null,
  expiresAt: null,
});

export class LicenceCertificates {
  constructor(
    private readonly prisma: Prisma,
    private readonly keys: SigningKeyRing,
    private readonly issuer: string,
  ) {}

  /** A certificate for an ACTIVE contract, or null. */
  issue(contract: Contract, model: Pick<Model, 'slug'>): string | null {
    if (visibleStatus(contract) !== 'ACTIVE') return null;
    const key = this.keys.signing;
    const claims: CertificateClaims = {
      typ: 'licence',
      model: model.slug,
      versions: contract.versionRange,
      licensee: contract.consumerId,
      termsDigest: contract.termsDigest,
    };
    return jwt.sign(
      { ...claims, ...(contract.expiresAt ? { exp: Math.floor(contract.expiresAt.getTime() / 1000) } : {}) },
      key.privateKey,
      {
        algorithm: key.algorithm,
        keyid: key.kid,
        issuer: this.issuer,
        audience: CERTIFICATE_AUDIENCE,
        subject: contract.id,
      },
    );
  }

  async verify(token: string): Promise<CertificateVerification> {
    const kid = jwt.decode(token, { complete: true })?.header.kid;
    const key = kid ? await this.keys.verificationKey(kid) : undefined;
    if (!key) return INVALID('BAD_SIGNATURE');
    let claims: jwt.JwtPayload & Partial<CertificateClaims>;
    try {
      claims = jwt.verify(token, key.publicKey, {
        algorithms: [key.algorithm],
        issuer: this.issuer,
        audience: CERTIFICATE_AUDIENCE,
      }) as jwt.JwtPayload;
    } catch (error) {
      return INVALID(error instanceof jwt.TokenExpiredError ? 'EXPIRED' : 'BAD_SIGNATURE');
    }
    if (claims.typ !== 'licence' || !claims.sub) return INVALID('BAD_SIGNATURE');
    const contract = await this.prisma.contract.findUnique({ where: { id: claims.sub } });
    if (!contract) return INVALID('UNKNOWN_CONTRACT');
    const status = visibleStatus(contract);
    return {
      valid: status === 'ACTIVE' && contract.termsDigest === claims.termsDigest,
      reason: status === 'ACTIVE' ? null : status,
      contractId: contract.id,
      status,
      model: claims.model ?? null,
      versions: claims.versions ?? null,
      licensee: claims.licensee ?? null,
      termsDigest: claims.termsDigest ?? null,
      expiresAt: contract.expiresAt,
    };
  }
}
