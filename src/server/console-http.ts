// The web console (web/, built into web/dist by `npm run build:web`, which `npm install` runs) served at `/` by
// the API server itself, and the bundled GraphiQL at `/graphql` for browsers when enabled. Static files go
// through sirv: hashed assets are cached for a year, pages never. Any other GET that a browser sends for a page
// (Accept: text/html) gets the console's index.html, whose router draws the page; API clients keep their 404.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sirv from 'sirv';
import type { Exchange } from './exchange.js';
import { sendRequestError } from './http-response.js';

export const WEB_DIST_DIR = fileURLToPath(new URL('../../web/dist', import.meta.url));

/**
 * The console's pages: no framing by other sites, scripts and styles from this server only (uPlot and GraphiQL
 * set inline styles; Monaco runs workers from blob: URLs).
 */
const PAGE_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; worker-src 'self' blob:; font-src 'self' data:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'same-origin',
  'cache-control': 'no-cache',
};

export interface ConsoleSite {
  /** Whether web/dist holds a build. */
  readonly built: boolean;
  /** Serves a file of the build (assets, index.html) when one matches the path; false when none does. */
  serveFile(exchange: Exchange): Promise<boolean>;
  /** Serves a page: the console's index.html, or GraphiQL's page. */
  servePage(exchange: Exchange, page: 'index.html' | 'graphiql.html'): void;
}

/** Whether a request is a browser asking for a page (not an API client, not a script or image). */
export function wantsPage(exchange: Exchange): boolean {
  const { method, headers } = exchange.req;
  return (method === 'GET' || method === 'HEAD') && (headers.accept ?? '').includes('text/html');
}

/**
 * The paths at which sirv would hand out GraphiQL's page (it adds .html and .htm, drops a trailing slash and
 * decodes %-escapes), refused when GraphiQL is off: its hashed assets may stay, its page may not.
 */
const GRAPHIQL_PAGE = /^\/graphiql(?:\.html?)?\/?$/;

function decodedPath(exchange: Exchange): string {
  try {
    return decodeURI(exchange.path);
  } catch {
    return exchange.path;
  }
}

/** `graphiql`: GRAPHIQL (config.graphql.ide); when off, the build's GraphiQL page is not served as a file either. */
export function consoleSite({ graphiql }: { graphiql: boolean }, distDir = WEB_DIST_DIR): ConsoleSite {
  const built = existsSync(`${distDir}/index.html`);
  // sirv lists the folder when it is made: without a build there is nothing to list (and the API still serves).
  if (!built) {
    return {
      built,
      serveFile: () => Promise.resolve(false),
      servePage: (exchange) =>
        sendRequestError(
          exchange.res,
          503,
          'SERVICE_UNAVAILABLE',
          'The web console is not built: run `npm run build:web` (npm install runs it)',
        ),
    };
  }
  const files = sirv(distDir, {
    dev: false,
    etag: true,
    gzip: false,
    brotli: false,
    setHeaders(res, pathname) {
      if (pathname.startsWith('/assets/')) res.setHeader('cache-control', 'public, max-age=31536000, immutable');
      else for (const [name, value] of Object.entries(PAGE_HEADERS)) res.setHeader(name, value);
    },
  });
  const servePage = (exchange: Exchange, page: 'index.html' | 'graphiql.html') => {
    exchange.req.url = `/${page}`;
    files(exchange.req, exchange.res, () => sendRequestError(exchange.res, 404, 'NOT_FOUND', 'No such route'));
  };
  return {
    built,
    servePage,
    serveFile(exchange) {
      if (!graphiql && GRAPHIQL_PAGE.test(decodedPath(exchange))) return Promise.resolve(false);
      return new Promise((resolve) => {
        files(exchange.req, exchange.res, () => resolve(false));
        if (exchange.res.headersSent || exchange.res.writableEnded) resolve(true);
        else exchange.res.once('finish', () => resolve(true)).once('close', () => resolve(true));
      });
    },
  };
}
