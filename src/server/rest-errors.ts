// Errors of the plain HTTP routes (artifacts, downloads, CSV), in the same vocabulary as GraphQL's codes:
// `{"error": {"code", "message"}}` with the matching HTTP status.
import type { Request, Response } from 'express';
import { GraphQLError } from 'graphql';

const STATUS_BY_CODE: Record<string, number> = {
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  BAD_USER_INPUT: 400,
  CONFLICT: 409,
  RATE_LIMITED: 429,
  QUOTA_EXCEEDED: 429,
  OVERLOADED: 503,
};

export function sendRestError(res: Response, status: number, code: string, message: string): void {
  res.status(status).json({ error: { code, message } });
}

/** Answers a GraphQLError with its code; anything else is logged and answered as an internal error. */
export function sendUnexpected(req: Request, res: Response, error: unknown): void {
  if (error instanceof GraphQLError) {
    const code = String(error.extensions.code);
    sendRestError(res, STATUS_BY_CODE[code] ?? 400, code, error.message);
    return;
  }
  req.log.error({ err: error }, 'HTTP route failed');
  sendRestError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error');
}
