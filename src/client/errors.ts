// The client's errors: one class per `extensions.code` the server documents (README "Errors"), so callers can
// `catch (e) { if (e instanceof RateLimitedError) … }` and read `code`, `reason` and the server's extensions.

export interface ErrorDetails {
  /** The server's `extensions.code` (or the client's own: NETWORK_ERROR, BAD_RESPONSE). */
  code: string;
  /** `extensions.reason`, e.g. TOKEN_EXPIRED, NO_CONTRACT. */
  reason?: string;
  /** The HTTP status of the answer, when there was one. */
  httpStatus?: number;
  /** Everything the server put in `extensions` (field, retryAfter, used, quota, …). */
  extensions?: Record<string, unknown>;
  cause?: unknown;
}

export class ModelmarketError extends Error {
  readonly code: string;
  readonly reason: string | undefined;
  readonly httpStatus: number | undefined;
  readonly extensions: Record<string, unknown>;

  constructor(message: string, details: ErrorDetails) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.name = new.target.name;
    this.code = details.code;
    this.reason = details.reason;
    this.httpStatus = details.httpStatus;
    this.extensions = details.extensions ?? {};
  }

  /** Seconds the server asked to wait before a retry (`extensions.retryAfter` or Retry-After), if it said. */
  get retryAfter(): number | undefined {
    const value = this.extensions.retryAfter;
    return typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined;
  }

  /** The argument or value the server refused (BAD_USER_INPUT), e.g. `input.inputs[2][27]`. */
  get field(): string | undefined {
    return typeof this.extensions.field === 'string' ? this.extensions.field : undefined;
  }
}

export class UnauthenticatedError extends ModelmarketError {}
export class ForbiddenError extends ModelmarketError {}
export class BadUserInputError extends ModelmarketError {}
export class NotFoundError extends ModelmarketError {}
export class ConflictError extends ModelmarketError {}
export class RateLimitedError extends ModelmarketError {}
export class QuotaExceededError extends ModelmarketError {}
export class OverloadedError extends ModelmarketError {}
export class ServiceUnavailableError extends ModelmarketError {}
export class ModelError extends ModelmarketError {}
export class InternalServerError extends ModelmarketError {}
/** An artifact upload the server refused as a model (BAD_ARTIFACT), or one this client could not read. */
export class BadArtifactError extends ModelmarketError {}
export class PayloadTooLargeError extends ModelmarketError {}
/** No answer: the connection failed or was cut, or the request timed out. */
export class NetworkError extends ModelmarketError {}

const CLASSES: Record<string, new (message: string, details: ErrorDetails) => ModelmarketError> = {
  UNAUTHENTICATED: UnauthenticatedError,
  FORBIDDEN: ForbiddenError,
  BAD_USER_INPUT: BadUserInputError,
  NOT_FOUND: NotFoundError,
  CONFLICT: ConflictError,
  RATE_LIMITED: RateLimitedError,
  QUOTA_EXCEEDED: QuotaExceededError,
  OVERLOADED: OverloadedError,
  SERVICE_UNAVAILABLE: ServiceUnavailableError,
  MODEL_ERROR: ModelError,
  INTERNAL_SERVER_ERROR: InternalServerError,
  BAD_ARTIFACT: BadArtifactError,
  PAYLOAD_TOO_LARGE: PayloadTooLargeError,
  NETWORK_ERROR: NetworkError,
};

/** The typed error for a server's code; codes without a class of their own are plain ModelmarketErrors. */
export function errorFor(message: string, details: ErrorDetails): ModelmarketError {
  const Class = CLASSES[details.code] ?? ModelmarketError;
  return new Class(message, details);
}
