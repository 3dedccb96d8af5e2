// Turns a request's credentials into a Principal. No credentials: anonymous. Bad credentials: an error,
// never a silent downgrade to anonymous.
import type { IncomingHttpHeaders } from 'node:http';
import { UnauthenticatedError } from '../server/errors.js';
import { looksLikeApiKey, type ApiKeyService } from './api-keys.js';
import type { AuthService } from './auth-service.js';
import { ANONYMOUS, type Principal } from './principal.js';

export class Authenticator {
  constructor(
    private readonly auth: AuthService,
    private readonly apiKeys: ApiKeyService,
  ) {}

  async authenticate(headers: IncomingHttpHeaders): Promise<Principal> {
    const apiKeyHeader = headers['x-api-key'];
    const authorization = headers.authorization;
    if (typeof apiKeyHeader === 'string' && apiKeyHeader !== '') {
      if (authorization) throw new UnauthenticatedError('Send either Authorization or x-api-key, not both');
      return this.apiKeys.authenticate(apiKeyHeader.trim());
    }
    if (!authorization) return ANONYMOUS;
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization);
    if (!match?.[1]) throw new UnauthenticatedError('Authorization must be "Bearer <token or API key>"');
    const credential = match[1];
    return looksLikeApiKey(credential)
      ? this.apiKeys.authenticate(credential)
      : this.auth.authenticateAccessToken(credential);
  }
}
