// Writing answers on node:http: JSON bodies, and request-level errors in GraphQL's shape
// (`{"errors": [{"message", "extensions": {"code"}}]}`), the shape every client of /graphql already reads.
import type { ServerResponse } from 'node:http';

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  res.statusCode = status;
  res.setHeader('content-type', 'application/json; charset=utf-8');
  res.end(JSON.stringify(body));
}

/** A refusal of the request itself (no route, a body too large, a malformed one…) with a stable code. */
export function sendRequestError(res: ServerResponse, status: number, code: string, message: string): void {
  sendJson(res, status, { errors: [{ message, extensions: { code } }] });
}
