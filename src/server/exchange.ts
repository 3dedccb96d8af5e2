// One HTTP request and its response, with what every route needs of it: the request id, the client's address,
// scheme, origin and cookies, a logger that names the request, and its Actor (the credentials checked once, for
// GraphQL and REST alike).
import { randomUUID } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import type { Actor } from '../auth/principal.js';
import type { Authenticator } from '../auth/authenticator.js';
import { databaseUnavailableError } from './errors.js';
import type { Logger } from './logger.js';

const REQUEST_ID = /^[\w.:-]{1,128}$/;

/** A cookie for the response to set (or, with `maxAgeSeconds` 0, to clear). */
export interface ResponseCookie {
  name: string;
  value: string;
  path: string;
  maxAgeSeconds: number;
  /** Out of reach of the page's scripts. */
  httpOnly: boolean;
}

/** The first value of a header a proxy may have sent several times (Node joins them with commas). */
function firstForwarded(value: string | string[] | undefined): string | undefined {
  const first = (Array.isArray(value) ? value[0] : value)?.split(',', 1)[0]!.trim();
  return first || undefined;
}

interface ParsedCookies {
  cookies: ReadonlyMap<string, string>;
  repeated: ReadonlySet<string>;
}

/** Logged once per process: a proxy's https that TRUST_PROXY does not let us believe. */
let warnedUntrustedProxy = false;

/** What the exchanges of one server share. */
export interface ExchangeSettings {
  logger: Logger;
  authenticator: Authenticator;
  /**
   * TRUST_PROXY: the client is the first address of X-Forwarded-For, its scheme and host the first of
   * X-Forwarded-Proto and X-Forwarded-Host (as Express's `trust proxy = true`).
   */
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
  #cookies: ParsedCookies | undefined;

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
      const first = this.settings.trustProxy ? firstForwarded(this.req.headers['x-forwarded-for']) : undefined;
      // Only an address: anything else (empty, a name, garbage) would key the per-IP throttles as the client chose.
      this.#ip = first !== undefined && isIP(first) ? first : (this.req.socket.remoteAddress ?? 'unknown');
    }
    return this.#ip;
  }

  /** Whether the client reached us over https: our own TLS, or a trusted proxy's. */
  get secure(): boolean {
    if ((this.req.socket as Partial<TLSSocket>).encrypted) return true;
    const forwardedHttps = firstForwarded(this.req.headers['x-forwarded-proto'])?.toLowerCase() === 'https';
    if (forwardedHttps && !this.settings.trustProxy && !warnedUntrustedProxy) {
      warnedUntrustedProxy = true;
      this.settings.logger.warn(
        'a request came through a proxy over https (X-Forwarded-Proto) but TRUST_PROXY is off: session cookies lack Secure and the console cannot refresh its session behind that proxy until TRUST_PROXY=true',
      );
    }
    return this.settings.trustProxy && forwardedHttps;
  }

  /** The origin the client addressed (scheme and host), to tell a request from our own pages from a foreign one. */
  get origin(): string {
    const forwardedHost = this.settings.trustProxy ? firstForwarded(this.req.headers['x-forwarded-host']) : undefined;
    return `${this.secure ? 'https' : 'http'}://${forwardedHost ?? this.req.headers.host ?? ''}`;
  }

  /**
   * The request's cookies by name (the first of a repeated name, as browsers send the most specific first).
   * Node bounds the Cookie header with all the others (--max-http-header-size).
   */
  get cookies(): ReadonlyMap<string, string> {
    return this.#parsedCookies().cookies;
  }

  /**
   * Whether the request carries a cookie name more than once: a sibling subdomain can plant one of the same name
   * (Domain=the parent domain) that the browser sends beside ours, and which comes first is not ours to know.
   */
  cookieRepeated(name: string): boolean {
    return this.#parsedCookies().repeated.has(name);
  }

  #parsedCookies(): ParsedCookies {
    if (this.#cookies === undefined) {
      const cookies = new Map<string, string>();
      const repeated = new Set<string>();
      for (const pair of (this.req.headers.cookie ?? '').split(';')) {
        const equals = pair.indexOf('=');
        if (equals === -1) continue;
        const name = pair.slice(0, equals).trim();
        if (!name) continue;
        if (cookies.has(name)) repeated.add(name);
        else cookies.set(name, decodeCookieValue(pair.slice(equals + 1).trim()));
      }
      this.#cookies = { cookies, repeated };
    }
    return this.#cookies;
  }

  /**
   * Adds a Set-Cookie to the response (SameSite=Strict always; Secure when the client came over https). Written on
   * the response at once: a resolver runs before graphql-http.ts copies Apollo's headers, none of them Set-Cookie.
   */
  setCookie({ name, value, path, maxAgeSeconds, httpOnly }: ResponseCookie): void {
    const attributes = [
      `${name}=${encodeURIComponent(value)}`,
      `Path=${path}`,
      `Max-Age=${maxAgeSeconds}`,
      'SameSite=Strict',
      ...(httpOnly ? ['HttpOnly'] : []),
      ...(this.secure ? ['Secure'] : []),
    ];
    this.res.appendHeader('set-cookie', attributes.join('; '));
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

/** A cookie's value, %-decoded when it was encoded (RFC 6265 leaves the encoding to the application). */
function decodeCookieValue(raw: string): string {
  const unquoted = raw.length > 1 && raw.startsWith('"') && raw.endsWith('"') ? raw.slice(1, -1) : raw;
  try {
    return decodeURIComponent(unquoted);
  } catch {
    return unquoted;
  }
}
