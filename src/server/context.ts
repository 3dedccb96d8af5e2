// The per-request context: the authenticated principal (resolved once), request metadata for audit,
// per-request loaders, the services, and warnings to return in the response's extensions.
import type { Request } from 'express';
import type { Actor } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import { databaseUnavailableError } from './errors.js';
import { createLoaders, type Loaders } from './loaders.js';
import type { Logger } from './logger.js';
import type { Services } from './services.js';

export interface Context {
  actor: Actor;
  userAgent: string | undefined;
  services: Services;
  loaders: Loaders;
  log: Logger;
  /** Added to the response as `extensions.warnings` (e.g. a deprecated version served). */
  warnings: string[];
}

export async function buildContext(req: Request, services: Services, prisma: Prisma): Promise<Context> {
  // Authentication reads the database: when it is unavailable the client is told to retry (503), not a 500.
  const principal = await services.authenticator.authenticate(req.headers).catch((error: unknown) => {
    const unavailable = databaseUnavailableError(error);
    if (!unavailable) throw error;
    req.log.warn({ err: error }, 'authentication failed: database unavailable');
    throw unavailable;
  });
  return {
    actor: { principal, ip: req.ip ?? 'unknown', requestId: String(req.id) },
    userAgent: req.headers['user-agent'],
    services,
    loaders: createLoaders(prisma, principal),
    log: req.log,
    warnings: [],
  };
}
