// The composition root: every long-lived service, built once per server from config and the database.
import { AccessTokens } from '../auth/access-tokens.js';
import { ApiKeyService } from '../auth/api-keys.js';
import { AuthService } from '../auth/auth-service.js';
import { Authenticator } from '../auth/authenticator.js';
import { LoginThrottle } from '../auth/login-throttle.js';
import { SigningKeyRing } from '../auth/signing-keys.js';
import { AuditService } from '../audit/audit-service.js';
import type { Config } from '../config.js';
import type { Database } from '../db/database.js';
import type { SecretBox } from '../security/secret-box.js';

export interface Services {
  audit: AuditService;
  auth: AuthService;
  apiKeys: ApiKeyService;
  authenticator: Authenticator;
  keyRing: SigningKeyRing;
}

export async function createServices(
  config: Config,
  db: Database,
  secrets: SecretBox,
): Promise<Services & { close(): Promise<void> }> {
  const audit = new AuditService(db.prisma);
  const keyRing = await SigningKeyRing.open(db.prisma, secrets, config.auth.configuredPrivateKeyPem);
  const tokens = new AccessTokens(keyRing, {
    issuer: config.auth.issuer,
    audience: config.auth.audience,
    ttlSeconds: config.auth.accessTokenTtlSeconds,
  });
  const throttle = new LoginThrottle(db.pool, {
    maxFailuresPerAccount: config.auth.loginMaxFailuresPerAccount,
    lockSeconds: config.auth.loginLockSeconds,
    maxFailuresPerIp: config.auth.loginMaxFailuresPerIp,
  });
  const auth = new AuthService(db.prisma, audit, tokens, throttle, {
    scrypt: { log2N: config.auth.scryptLog2N, r: 8, p: 1 },
    refreshTokenTtlDays: config.auth.refreshTokenTtlDays,
  });
  const apiKeys = new ApiKeyService(db.prisma, audit, config.auth.apiKeyUsageFlushMs);
  const authenticator = new Authenticator(auth, apiKeys);
  return {
    audit,
    auth,
    apiKeys,
    authenticator,
    keyRing,
    async close() {
      keyRing.close();
      await apiKeys.close();
    },
  };
}
