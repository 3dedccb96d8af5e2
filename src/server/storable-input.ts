// The front door for text PostgreSQL cannot store (NUL, lone UTF-16 surrogates): no GraphQL variable,
// literal, operation name or extension carrying one reaches a resolver. A UTF-8 JSON body (the only charset
// /graphql accepts) can carry them only as `\u` escapes (a raw NUL byte is not valid JSON, invalid UTF-8
// decodes to U+FFFD), and a GraphQL string literal inside it only as an escaped `\u` escape. So the raw body
// is searched for `\u` (a byte search) and only a body that has one, rare for real clients, is walked exactly.
// GET parameters are always walked (they are short).
import { Lexer, Source, TokenKind } from 'graphql';
import { isUnstorableText } from './text.js';

const ESCAPE = Buffer.from('\\u');

/** Whether a raw UTF-8 JSON body may carry such text: only a body with a `\u` escape must be walked. */
export function mayHoldUnstorableText(body: Buffer): boolean {
  return body.includes(ESCAPE);
}

/** A query string as findUnstorableText walks it: each parameter once, a repeated one as the list of its values. */
export function searchParameters(search: string): Record<string, string | string[]> {
  const parameters: Record<string, string | string[]> = {};
  for (const [name, value] of new URLSearchParams(search)) {
    const seen = parameters[name];
    parameters[name] = seen === undefined ? value : [...(Array.isArray(seen) ? seen : [seen]), value];
  }
  return parameters;
}

/**
 * The path (`variables.input.requestId`, `query`, `1.operationName`…) of the first string or key PostgreSQL
 * could not store, or null. Iterative, so nesting depth costs no stack. GraphQL documents (`query`) are lexed
 * to check their string literals as decoded; JSON-encoded GET parameters (`variables`, `extensions`) are
 * decoded first.
 */
export function findUnstorableText(request: unknown): string | null {
  // A request is one operation or a batch (an array) of them; an operation's members are `query`,
  // `variables`… and everything below them is data. Only objects are stacked: strings are checked where they
  // are found and numbers skipped, so a large numeric input costs one type check per value.
  type Role = 'operation' | 'member' | 'data';
  const stack: [value: object, path: string, role: Role][] = [];
  const visit = (value: unknown, path: string, role: Role): boolean => {
    if (typeof value === 'string') {
      if (isUnstorableText(value)) return true;
      if (role !== 'member') return false;
      const key = path.slice(path.lastIndexOf('.') + 1);
      if (key === 'query') return hasUnstorableLiteral(value);
      if ((key === 'variables' || key === 'extensions') && value.includes('\\u')) {
        try {
          // GET parameters: `variables` and `extensions` are JSON text Apollo decodes later.
          return visit(JSON.parse(value), path, 'data');
        } catch {
          return false; // not JSON: Apollo answers that itself
        }
      }
    } else if (typeof value === 'object' && value !== null) {
      stack.push([value, path, role]);
    }
    return false;
  };
  if (Array.isArray(request)) {
    for (let i = 0; i < request.length; i++) if (visit(request[i], String(i), 'operation')) return String(i);
  } else if (visit(request, '', 'operation')) return '';
  while (stack.length > 0) {
    const [value, path, role] = stack.pop()!;
    const childRole = role === 'operation' ? 'member' : 'data';
    const prefix = path ? `${path}.` : '';
    if (Array.isArray(value)) {
      for (let i = 0; i < value.length; i++) {
        const child: unknown = value[i];
        if (typeof child !== 'number' && visit(child, `${prefix}${i}`, childRole)) return `${prefix}${i}`;
      }
    } else {
      for (const key in value) {
        if (!Object.hasOwn(value, key)) continue;
        if (isUnstorableText(key) || visit((value as Record<string, unknown>)[key], `${prefix}${key}`, childRole)) {
          return `${prefix}${key}`;
        }
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
