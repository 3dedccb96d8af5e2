// Who may see and manage a model, and what of its surroundings (owner accounts, watermark details, files) a
// caller sees: decided here, for every entry point (GraphQL roots and edges, artifact downloads).
import type { Principal } from '../auth/principal.js';
import type { Model } from '../generated/prisma/client.js';
import { ForbiddenError, NotFoundError } from '../server/errors.js';
import type { WatermarkReport } from '../watermark/watermark-service.js';

export type ModelAccess = Pick<Model, 'ownerId' | 'visibility'>;

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

/** An account's e-mail address is for the account itself and admins; public profiles show the display name. */
export function canSeeEmail(principal: Principal, userId: string): boolean {
  return (principal.kind !== 'anonymous' && principal.userId === userId) || isAdmin(principal);
}

/**
 * Which tensor carries the mark, and its margins, tell a licensee what to attack: they are the owner's and
 * admins' business. Everyone else learns only whether the version is marked.
 */
export function visibleWatermark(principal: Principal, model: ModelAccess, report: WatermarkReport): WatermarkReport {
  return canManage(principal, model) ? report : { marked: report.marked };
}

/**
 * API keys download model files with the DOWNLOAD scope, or, on models they manage, MANAGE_MODELS (owners
 * fetching their own artifacts). Sessions need no scope. Which licence allows it is the contracts' business.
 */
export function assertDownloadScope(principal: Principal, model: ModelAccess): void {
  if (principal.kind !== 'apiKey' || principal.scopes.includes('DOWNLOAD')) return;
  if (principal.scopes.includes('MANAGE_MODELS') && canManage(principal, model)) return;
  throw new ForbiddenError('This API key lacks the DOWNLOAD scope', { requiredScope: 'DOWNLOAD' });
}
