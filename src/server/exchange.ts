// One HTTP request and its response, with what every route needs of it: the request id, the client's address,
// a logger that names the request, and its Actor (the credentials checked once, for GraphQL and REST alike).
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Actor } from '../auth/principal.js';
import type { Authenticator } from '../auth/authenticator.js';
import { databaseUnavailableError } from './errors.js';
import type { Logger } from './logger.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** What the exchanges of one server share. */
export interface ExchangeSettings {
  logger: Logger;
  authenticator: Authenticator;
  /** TRUST_PROXY: the client is the first address of X-Forwarded-For (as Express's `trust proxy = true`). */
  trustProxy: boolean;
}

export class Exchange {
  /** The client's `x-request-id` when it is sane, else a new UUID; echoed in the response, logged, audited. */
  readonly id: string;
  /** The path without the query string, as sent (not decoded). */
  readonly path: string;
  /** The query string with its `?`, or ''. */
  readonly search: string;
  /** Route parameters, decoded (router.ts). */
  params: Record<string, string> = {};
  readonly startedAt = performance.now();
  #log: Logger | undefined;
  #ip: string | undefined;
  #actor: Promise<Actor> | undefined;

  constructor(
    readonly req: IncomingMessage,
    readonly res: ServerResponse,
    private readonly settings: ExchangeSettings,
  ) {
    const incoming = req.headers['x-request-id'];
    this.id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
    const url = req.url ?? '/';
    const query = url.indexOf('?');
    this.path = query === -1 ? url : url.slice(0, query);
    this.search = query === -1 ? '' : url.slice(query);
  }

  /** A child logger carrying the request id, made only when something is logged (most requests log one line). */
  get log(): Logger {
    return (this.#log ??= this.settings.logger.child({ reqId: this.id }));
  }

  get ip(): string {
    if (this.#ip === undefined) {
      // Node joins repeated X-Forwarded-For headers into one, in order: the first address is the client's.
      const forwarded = this.settings.trustProxy ? String(this.req.headers['x-forwarded-for'] ?? '') : '';
      // Only an address: anything else (empty, a name, garbage) would key the per-IP throttles as the client chose.
      const first = forwarded.split(',', 1)[0]!.trim();
      this.#ip = isIP(first) ? first : (this.req.socket.remoteAddress ?? 'unknown');
    }
    return this.#ip;
  }

  /**
   * Who calls, from where: the credentials are checked once per request, whichever route asks. An unavailable
   * database is the client's SERVICE_UNAVAILABLE (retry), not an internal error.
   */
  actor(): Promise<Actor> {
    return (this.#actor ??= this.settings.authenticator.authenticate(this.req.headers).then(
      (principal) => ({ principal, ip: this.ip, requestId: this.id }),
      (error: unknown) => {
        const unavailable = databaseUnavailableError(error);
        if (!unavailable) throw error;
        this.log.warn({ err: error }, 'authentication failed: database unavailable');
        throw unavailable;
      },
    ));
  }
}
