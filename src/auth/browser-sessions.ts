// Sessions held by a browser (`session: COOKIE`): the refresh token lives in an HttpOnly cookie that the page's
// scripts cannot read, so a script injected into the console cannot steal a session that outlives its tab.
// A cookie the browser attaches by itself needs a defence against requests forged by other sites: SameSite=Strict,
// a double-submitted CSRF token (the readable mm_csrf cookie echoed in the x-csrf-token header, which only our
// own pages can read and set), and, when the browser names it, an Origin that is our own.
import { randomBytes } from 'node:crypto';
import { sameSecret } from '../security/same-secret.js';
import { ForbiddenError, UnauthenticatedError } from '../server/errors.js';
import type { Exchange } from '../server/exchange.js';
import type { AuthPayload } from './auth-service.js';

const REFRESH_COOKIE = 'mm_refresh';
const CSRF_COOKIE = 'mm_csrf';
const CSRF_HEADER = 'x-csrf-token';
/** The refresh cookie goes only to the API, not with every file of the console. */
const REFRESH_COOKIE_PATH = '/graphql';

function setSessionCookies(exchange: Exchange, refreshToken: string, maxAgeSeconds: number, csrfToken: string): void {
  exchange.setCookie({
    name: REFRESH_COOKIE,
    value: refreshToken,
    path: REFRESH_COOKIE_PATH,
    maxAgeSeconds,
    httpOnly: true,
  });
  exchange.setCookie({ name: CSRF_COOKIE, value: csrfToken, path: '/', maxAgeSeconds, httpOnly: false });
}

/** What a browser is answered: everything but the refresh token, which is in its cookie. */
type BrowserAuthPayload = Omit<AuthPayload, 'refreshToken'> & { refreshToken: null };

/**
 * Hands a new session (log-in, sign-up, refresh) to the browser: the refresh token and a fresh CSRF token in
 * cookies that live as long as the session; the answer's `refreshToken` is null.
 */
export function deliverToBrowser(exchange: Exchange, payload: AuthPayload): BrowserAuthPayload {
  const maxAgeSeconds = Math.max(0, Math.floor((payload.sessionExpiresAt.getTime() - Date.now()) / 1000));
  setSessionCookies(exchange, payload.refreshToken, maxAgeSeconds, randomBytes(32).toString('base64url'));
  return { ...payload, refreshToken: null };
}

/** Makes the browser drop both cookies (log-out, or a session that is over). */
export function clearBrowserSession(exchange: Exchange): void {
  setSessionCookies(exchange, '', 0, '');
}

/**
 * The refresh token of the request's session cookie, once the request has shown it comes from our own pages;
 * else UNAUTHENTICATED (no session) or FORBIDDEN (a failed CSRF check), with nothing changed. A session or CSRF
 * cookie sent twice is UNAUTHENTICATED too, and both cookies are cleared.
 */
export function browserRefreshToken(exchange: Exchange): string {
  if (exchange.cookieRepeated(REFRESH_COOKIE) || exchange.cookieRepeated(CSRF_COOKIE)) {
    // Ours cannot be told from a planted one: neither is used, and ours are dropped (the browser logs in again).
    clearBrowserSession(exchange);
    throw new UnauthenticatedError('The session cookie came twice (one may be planted by a sibling site): log in');
  }
  const refreshToken = exchange.cookies.get(REFRESH_COOKIE);
  if (!refreshToken) throw new UnauthenticatedError('No session cookie: log in');
  const origin = exchange.req.headers.origin;
  if (origin !== undefined && origin !== exchange.origin) {
    throw new ForbiddenError(`A session cookie is accepted only from this server's own pages, not from ${origin}`);
  }
  const expected = exchange.cookies.get(CSRF_COOKIE);
  const given = exchange.req.headers[CSRF_HEADER];
  if (!expected || typeof given !== 'string' || !sameSecret(given, expected)) {
    throw new ForbiddenError(
      `The ${CSRF_HEADER} header must repeat the ${CSRF_COOKIE} cookie's value when the session cookie is used`,
    );
  }
  return refreshToken;
}
