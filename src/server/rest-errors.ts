// Errors of the plain HTTP routes (artifacts, downloads, CSV), in the same vocabulary as GraphQL's codes:
// `{"error": {"code", "message", …details}}` (details such as `field` and `reason`) with the matching HTTP status.
import type { ServerResponse } from 'node:http';
import { GraphQLError } from 'graphql';
import { databaseUnavailableError } from './errors.js';
import type { Exchange } from './exchange.js';
import { sendJson } from './http-response.js';
import { closeIfUnread, refuseBody, RequestBodyError } from './request-body.js';

const STATUS_BY_CODE: Record<string, number> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  BAD_USER_INPUT: 400,
  CONFLICT: 409,
  RATE_LIMITED: 429,
  QUOTA_EXCEEDED: 429,
  OVERLOADED: 503,
  SERVICE_UNAVAILABLE: 503,
};

/** The HTTP status that answers an error code, for GraphQL and the plain routes alike. */
export function httpStatusOf(code: string): number {
  return STATUS_BY_CODE[code] ?? 400;
}

export function sendRestError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { error: { code, message } });
}

/** The JSON body of an error answer; `details` are the error's extensions a client may read (field, reason…). */
export type ErrorBody = (code: string, message: string, details: Record<string, unknown>) => unknown;

const restErrorBody: ErrorBody = (code, message, details) => ({ error: { code, message, ...details } });

/**
 * Answers a GraphQLError with its code (and Retry-After when it says when to retry), an unavailable database
 * with SERVICE_UNAVAILABLE; anything else is logged and answered as an internal error.
 */
export function sendUnexpected(exchange: Exchange, error: unknown, body: ErrorBody = restErrorBody): void {
  const { res } = exchange;
  const known = error instanceof GraphQLError ? error : databaseUnavailableError(error);
  if (known) {
    const code = String(known.extensions.code);
    const { retryAfter } = known.extensions;
    if (typeof retryAfter === 'number') res.setHeader('retry-after', String(retryAfter));
    // What the error asks to be told in headers (WWW-Authenticate of an expired token), as GraphQL answers do.
    const http = known.extensions.http as { headers?: Map<string, string> } | undefined;
    for (const [name, value] of http?.headers ?? []) res.setHeader(name, value);
    if (known !== error) exchange.log.warn({ err: error }, 'HTTP route failed: database unavailable');
    const { code: _code, http: _http, ...details } = known.extensions;
    sendJson(res, httpStatusOf(code), body(code, known.message, details));
    return;
  }
  exchange.log.error({ err: error }, 'HTTP route failed');
  sendJson(res, 500, body('INTERNAL_SERVER_ERROR', 'Internal server error', {}));
}

/**
 * Answers the failure of a route that reads a body, in the route's error shape: a refused body (closing a
 * connection whose body is left unread), or else as sendUnexpected, also closing an unread body (a refusal before
 * reading it: credentials, scope, a model that takes no file).
 */
export function sendBodyRouteError(exchange: Exchange, error: unknown, body: ErrorBody = restErrorBody): void {
  const { req, res } = exchange;
  if (error instanceof RequestBodyError) {
    return refuseBody(req, res, error, (status, code, message) => sendJson(res, status, body(code, message, {})));
  }
  closeIfUnread(req, res);
  sendUnexpected(exchange, error, body);
}
