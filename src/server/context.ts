// The per-request context: the authenticated principal (resolved once), request metadata for audit, and
// the services.
import type { Request } from 'express';
import type { Actor } from '../auth/principal.js';
import type { Logger } from './logger.js';
import type { Services } from './services.js';

export interface Context {
  actor: Actor;
  userAgent: string | undefined;
  services: Services;
  log: Logger;
}

export async function buildContext(req: Request, services: Services): Promise<Context> {
  const principal = await services.authenticator.authenticate(req.headers);
  return {
    actor: { principal, ip: req.ip ?? 'unknown', requestId: String(req.id) },
    userAgent: req.headers['user-agent'],
    services,
    log: req.log,
  };
}
