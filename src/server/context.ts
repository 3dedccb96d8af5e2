// The per-request context: the caller (its credentials checked once, by the exchange), the HTTP exchange itself,
// per-request loaders, the services, and warnings to return in the response's extensions.
import type { Actor } from '../auth/principal.js';
import type { Prisma } from '../db/database.js';
import type { Exchange } from './exchange.js';
import { Loaders } from './loaders.js';
import type { Services } from './services.js';

export interface Context {
  actor: Actor;
  /** The HTTP request and response: cookies for browser sessions (auth/browser-sessions.ts). */
  exchange: Exchange;
  userAgent: string | undefined;
  services: Services;
  loaders: Loaders;
  /** Added to the response as `extensions.warnings` (e.g. a deprecated version served). */
  warnings: string[];
}

export async function buildContext(exchange: Exchange, services: Services, prisma: Prisma): Promise<Context> {
  const actor = await exchange.actor();
  return {
    actor,
    exchange,
    userAgent: exchange.req.headers['user-agent'],
    services,
    loaders: new Loaders(prisma, services.variants, actor.principal, services.evaluations),
    warnings: [],
  };
}
