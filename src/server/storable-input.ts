// The front door for text PostgreSQL cannot store (NUL, lone UTF-16 surrogates): no GraphQL variable,
// literal, operation name or extension carrying one reaches a resolver. A UTF-8 JSON body can carry them only
// as `\u` escapes (a raw NUL byte is not valid JSON, invalid UTF-8 decodes to U+FFFD), and a GraphQL string
// literal inside it only as an escaped `\u` escape. So the raw body is searched for `\u` (a byte search) and
// only a body that has one, rare for real clients, is walked exactly.
import type { IncomingMessage } from 'node:http';
import { Lexer, Source, TokenKind } from 'graphql';
import { isUnstorableText } from './text.js';

const ESCAPE = Buffer.from('\\u');
const suspects = new WeakSet<IncomingMessage>();

/** `express.json`'s `verify`: remembers a body that may carry such text (any `\u`, or a charset not UTF-8). */
export function noteEscapes(req: IncomingMessage, _res: unknown, body: Buffer, encoding: string): void {
  if (encoding !== 'utf-8' || body.includes(ESCAPE)) suspects.add(req);
}

/** True when the request's parsed GraphQL body (or GET parameters) must be walked. */
export function mayHoldUnstorableText(req: IncomingMessage): boolean {
  return req.method === 'GET' || suspects.has(req);
}

/**
 * The path (`variables.input.requestId`, `query`, `1.operationName`…) of the first string or key PostgreSQL
 * could not store, or null. Iterative, so nesting depth costs no stack. GraphQL documents (`query`) are lexed
 * to check their string literals as decoded; JSON-encoded GET parameters (`variables`, `extensions`) are
 * decoded first.
 */
export function findUnstorableText(request: unknown): string | null {
  // A request is one operation or a batch (an array) of them; an operation's members are `query`,
  // `variables`… and everything below them is data.
  type Role = 'operation' | 'member' | 'data';
  const stack: [value: unknown, path: string, role: Role][] = Array.isArray(request)
    ? request.map((operation, i) => [operation, String(i), 'operation'])
    : [[request, '', 'operation']];
  while (stack.length > 0) {
    const [value, path, role] = stack.pop()!;
    if (typeof value === 'string') {
      if (isUnstorableText(value)) return path;
      if (role !== 'member') continue;
      const key = path.slice(path.lastIndexOf('.') + 1);
      if (key === 'query' && hasUnstorableLiteral(value)) return path;
      if ((key === 'variables' || key === 'extensions') && value.includes('\\u')) {
        try {
          stack.push([JSON.parse(value), path, 'data']);
        } catch {
          // Not JSON: Apollo answers that itself.
        }
      }
    } else if (typeof value === 'object' && value !== null) {
      for (const [key, child] of Object.entries(value)) {
        const childPath = path ? `${path}.${key}` : key;
        if (isUnstorableText(key)) return childPath;
        stack.push([child, childPath, role === 'operation' ? 'member' : 'data']);
      }
    }
  }
  return null;
}

/** Whether a GraphQL document has a string literal that decodes to unstorable text. */
function hasUnstorableLiteral(document: string): boolean {
  if (!document.includes('\\u')) return false;
  const lexer = new Lexer(new Source(document));
  try {
    for (let token = lexer.advance(); token.kind !== TokenKind.EOF; token = lexer.advance()) {
      if ((token.kind === TokenKind.STRING || token.kind === TokenKind.BLOCK_STRING) && isUnstorableText(token.value)) {
        return true;
      }
    }
  } catch {
    // A syntax error (graphql-js also refuses some bad escapes here) is the parser's to report.
  }
  return false;
}
