// The routes of the HTTP surface: a path is either exact (`/healthz`) or has `:name` segments
// (`/v1/versions/:id/:file`), decoded into `exchange.params`. A GET route answers HEAD too, except a
// `GET_ONLY` one (a metered download, an export: what HEAD would bill or run without delivering); one trailing
// slash is ignored; no match is the caller's 404.
import type { Exchange } from './exchange.js';

/** A route's work; a returned promise settles when the answer was written. */
export type RouteHandler = (exchange: Exchange) => unknown;

type Method = 'GET' | 'GET_ONLY' | 'POST' | 'ANY';

/** A path parameter that does not decode (`%ZZ`): the client's error. */
export class MalformedPathError extends Error {}

interface PatternRoute {
  method: Method;
  segments: string[];
  handler: RouteHandler;
}

function accepts(method: Method, requested: string | undefined): boolean {
  if (method === 'GET_ONLY') return requested === 'GET';
  return method === 'ANY' || method === requested || (method === 'GET' && requested === 'HEAD');
}

function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new MalformedPathError(`malformed path parameter ${raw}`);
  }
}

export class Router {
  readonly #exact = new Map<string, { method: Method; handler: RouteHandler }[]>();
  readonly #patterns: PatternRoute[] = [];

  add(method: Method, path: string, handler: RouteHandler): this {
    if (path.includes('/:')) this.#patterns.push({ method, segments: path.split('/'), handler });
    else this.#exact.set(path, [...(this.#exact.get(path) ?? []), { method, handler }]);
    return this;
  }

  /** The handler for the exchange (its params set), or null; MalformedPathError for a parameter that does not decode. */
  find(exchange: Exchange): RouteHandler | null {
    const method = exchange.req.method;
    const path = exchange.path.length > 1 && exchange.path.endsWith('/') ? exchange.path.slice(0, -1) : exchange.path;
    const exact = this.#exact.get(path)?.find((route) => accepts(route.method, method));
    if (exact) return exact.handler;
    const segments = path.split('/');
    for (const route of this.#patterns) {
      if (route.segments.length !== segments.length || !accepts(route.method, method)) continue;
      const params: Record<string, string> = {};
      const matches = route.segments.every((segment, i) => {
        if (segment.startsWith(':')) {
          params[segment.slice(1)] = segments[i]!;
          return segments[i] !== '';
        }
        return segment === segments[i];
      });
      if (!matches) continue;
      for (const name in params) params[name] = decodeParam(params[name]!);
      exchange.params = params;
      return route.handler;
    }
    return null;
  }
}
