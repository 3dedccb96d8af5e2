// Who may see and manage a model: decided here, for every entry point (GraphQL, artifact downloads).
import type { Principal } from '../auth/principal.js';
import type { Model } from '../generated/prisma/client.js';
import { ForbiddenError, NotFoundError } from '../server/errors.js';

type ModelAccess = Pick<Model, 'ownerId' | 'visibility'>;

export function isAdmin(principal: Principal): boolean {
  return principal.kind !== 'anonymous' && principal.role === 'ADMIN';
}

export function isOwner(principal: Principal, model: ModelAccess): boolean {
  return principal.kind !== 'anonymous' && principal.userId === model.ownerId;
}

/** PRIVATE models exist only for their owner and admins. */
export function canView(principal: Principal, model: ModelAccess): boolean {
  return model.visibility === 'PUBLIC' || isOwner(principal, model) || isAdmin(principal);
}

export function canManage(principal: Principal, model: ModelAccess): boolean {
  return isOwner(principal, model) || isAdmin(principal);
}

/** NOT_FOUND for a model the caller cannot see (its existence is not revealed), FORBIDDEN for one it only sees. */
export function assertCanManage(principal: Principal, model: ModelAccess | null): asserts model is ModelAccess {
  if (!model || !canView(principal, model)) throw new NotFoundError('Model');
  if (!canManage(principal, model)) throw new ForbiddenError('Only the model owner or an admin can do this');
}
