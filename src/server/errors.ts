// Every error a client can see has a stable `extensions.code`. Anything else is an internal error whose
// details stay in the logs.
import { GraphQLError } from 'graphql';
import { HeaderMap } from '@apollo/server';
import { isDatabaseUnavailable } from '../db/errors.js';

export const ErrorCode = {
  UNAUTHENTICATED: 'UNAUTHENTICATED',
  FORBIDDEN: 'FORBIDDEN',
  BAD_USER_INPUT: 'BAD_USER_INPUT',
  NOT_FOUND: 'NOT_FOUND',
  CONFLICT: 'CONFLICT',
  RATE_LIMITED: 'RATE_LIMITED',
  QUOTA_EXCEEDED: 'QUOTA_EXCEEDED',
  OVERLOADED: 'OVERLOADED',
  /** The model itself gave no usable answer (e.g. NaN or Infinity) for valid inputs; not billed. */
  MODEL_ERROR: 'MODEL_ERROR',
  /** The server cannot serve now (its database is unavailable, or it is shutting down); retry after `retryAfter`. */
  SERVICE_UNAVAILABLE: 'SERVICE_UNAVAILABLE',
  INTERNAL_SERVER_ERROR: 'INTERNAL_SERVER_ERROR',
} as const;
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

/** The codes whose messages are written for clients; every other error is masked unless DEBUG_ERRORS is set. */
export const CLIENT_ERROR_CODES: ReadonlySet<string> = new Set([
  ...Object.values(ErrorCode).filter((c) => c !== ErrorCode.INTERNAL_SERVER_ERROR),
  // Apollo's own request-level rejections.
  'GRAPHQL_PARSE_FAILED',
  'GRAPHQL_VALIDATION_FAILED',
  'BAD_REQUEST',
  'PERSISTED_QUERY_NOT_FOUND',
  'PERSISTED_QUERY_NOT_SUPPORTED',
  'OPERATION_RESOLUTION_FAILURE',
  'PAYLOAD_TOO_LARGE',
  'BATCH_LIMIT_EXCEEDED',
  'CREDENTIAL_CHECK_LIMIT_EXCEEDED',
]);

class AppError extends GraphQLError {
  constructor(
    code: ErrorCode,
    message: string,
    extensions: Record<string, unknown> = {},
    httpStatus?: number,
    httpHeaders?: HeaderMap,
  ) {
    const http = httpStatus ? { http: { status: httpStatus, ...(httpHeaders ? { headers: httpHeaders } : {}) } } : {};
    super(message, { extensions: { code, ...extensions, ...http } });
  }
}

export class UnauthenticatedError extends AppError {
  constructor(message = 'Authentication required') {
    super(ErrorCode.UNAUTHENTICATED, message, {}, 401);
  }
}

/**
 * An access token of ours past its expiry: RFC 6750's `invalid_token` with why, in the message and in
 * `WWW-Authenticate`, so a client refreshes it rather than logging in again or giving up.
 */
export class AccessTokenExpiredError extends AppError {
  constructor() {
    super(
      ErrorCode.UNAUTHENTICATED,
      'The access token expired: get a new one with refreshSession (or log in again)',
      { reason: 'TOKEN_EXPIRED' },
      401,
      new HeaderMap([
        ['www-authenticate', 'Bearer error="invalid_token", error_description="The access token expired"'],
      ]),
    );
  }
}

export class ForbiddenError extends AppError {
  constructor(message = 'Not allowed', extensions: Record<string, unknown> = {}) {
    super(ErrorCode.FORBIDDEN, message, extensions);
  }
}

export class BadUserInputError extends AppError {
  /** `field` names the offending argument path, e.g. `input.password`. */
  constructor(message: string, field?: string, extensions: Record<string, unknown> = {}) {
    super(ErrorCode.BAD_USER_INPUT, message, { ...(field ? { field } : {}), ...extensions });
  }
}

export class NotFoundError extends AppError {
  constructor(what: string) {
    super(ErrorCode.NOT_FOUND, `${what} not found`);
  }
}

export class ConflictError extends AppError {
  constructor(message: string) {
    super(ErrorCode.CONFLICT, message);
  }
}

/**
 * Too many attempts: HTTP 429 with Retry-After, and the wait in the message and `extensions.retryAfter` (the
 * retry-status plugin keeps the 200 of a request in which something else ran).
 */
export class RateLimitedError extends AppError {
  constructor(message: string, retryAfterSeconds: number) {
    const retryAfter = Math.max(1, Math.ceil(retryAfterSeconds));
    super(
      ErrorCode.RATE_LIMITED,
      `${message}; try again in ${retryAfter} second${retryAfter === 1 ? '' : 's'}`,
      { retryAfter },
      429,
      new HeaderMap([['retry-after', String(retryAfter)]]),
    );
  }
}

export class ModelError extends AppError {
  constructor(message: string) {
    super(ErrorCode.MODEL_ERROR, message);
  }
}

/** Seconds a client should wait before retrying when the database is unavailable. */
export const DATABASE_RETRY_AFTER_SECONDS = 5;

/** HTTP 503 with Retry-After (and `extensions.retryAfter`). */
export class ServiceUnavailableError extends AppError {
  constructor(message: string, retryAfterSeconds: number) {
    super(
      ErrorCode.SERVICE_UNAVAILABLE,
      message,
      { retryAfter: retryAfterSeconds },
      503,
      new HeaderMap([['retry-after', String(retryAfterSeconds)]]),
    );
  }
}

/** The client's error for a failure that means the database is unavailable (see db/errors.ts), else null. */
export function databaseUnavailableError(error: unknown): ServiceUnavailableError | null {
  return isDatabaseUnavailable(error)
    ? new ServiceUnavailableError('The database is unavailable; retry shortly', DATABASE_RETRY_AFTER_SECONDS)
    : null;
}
