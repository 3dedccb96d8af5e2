import type { ApiScope, Role } from '../generated/prisma/client.js';
import { UnauthenticatedError } from '../server/errors.js';

/** Who is calling: resolved once per request from its credentials. */
export type Principal =
  | { kind: 'anonymous' }
  | { kind: 'user'; userId: string; role: Role; sessionId: string }
  | { kind: 'apiKey'; userId: string; role: Role; apiKeyId: string; scopes: ApiScope[] };

export type AuthenticatedPrincipal = Exclude<Principal, { kind: 'anonymous' }>;

/** The caller of a service method: who, and from where (for audit). Built once per request. */
export interface Actor {
  principal: Principal;
  ip: string;
  requestId: string;
}

export const ANONYMOUS: Principal = { kind: 'anonymous' };

/** The calling user's id; anonymous callers are UNAUTHENTICATED. */
export function requireUserId(principal: Principal): string {
  if (principal.kind === 'anonymous') throw new UnauthenticatedError();
  return principal.userId;
}
