// Every error the API can answer, in words a person reads; the console never shows JSON.
import { ApiError } from './client';

const SENTENCES: Record<string, string> = {
  UNAUTHENTICATED: 'Please log in: your session has ended, or that e-mail address and password do not match.',
  FORBIDDEN: 'Your account is not allowed to do this.',
  NOT_FOUND: 'This does not exist, or it is not visible to you.',
  BAD_USER_INPUT: 'Some of what you entered is not valid.',
  CONFLICT: 'This was changed meanwhile, or it already exists.',
  RATE_LIMITED: 'Too many requests: wait a moment and try again.',
  QUOTA_EXCEEDED: 'Your contract has used its whole quota for this period.',
  OVERLOADED: 'The model is busy: try again in a moment.',
  MODEL_ERROR: 'The model gave no usable answer for this input (you were not billed).',
  SERVICE_UNAVAILABLE: 'The service is busy or restarting: try again in a moment.',
  INTERNAL_SERVER_ERROR: 'Something went wrong on the server. Try again; if it persists, tell an admin.',
  NETWORK_ERROR: 'The server could not be reached. Check your connection.',
  PAYLOAD_TOO_LARGE: 'That file is too large.',
  GRAPHQL_VALIDATION_FAILED: 'The console sent a request this server does not understand: reload the page.',
};

/** A sentence for the person; BAD_USER_INPUT keeps the API's own message, which names what was wrong. */
export function describeError(error: unknown): string {
  if (!(error instanceof ApiError)) return SENTENCES.INTERNAL_SERVER_ERROR!;
  const sentence = SENTENCES[error.code];
  if (error.code === 'BAD_USER_INPUT' || error.code === 'CONFLICT' || !sentence) {
    return sentence ? `${sentence} ${error.message}` : error.message;
  }
  return sentence;
}
