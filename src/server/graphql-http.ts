// POST and GET /graphql on node:http, the way @apollo/server's own standalone server runs Apollo
// (executeHTTPGraphQLRequest), with the request-level limits first: body size, JSON syntax, unstorable text,
// batch size and credential checks are refused before Apollo parses anything, and before any resolver runs.
import { HeaderMap, type ApolloServer, type HTTPGraphQLRequest } from '@apollo/server';
import type { IncomingMessage } from 'node:http';
import { countCredentialChecks } from '../auth/credential-checks.js';
import type { Context } from './context.js';
import type { HttpDrain } from './drain.js';
import type { Exchange } from './exchange.js';
import { sendJson, sendRequestError } from './http-response.js';
import { readJsonBody, refuseBody, RequestBodyError } from './request-body.js';
import type { RouteHandler } from './router.js';
import { findUnstorableText, mayHoldUnstorableText, searchParameters } from './storable-input.js';
import { unstorableTextError } from './text.js';

export interface GraphQLRouteOptions {
  bodyLimitBytes: number;
  maxBatch: number;
  maxCredentialChecks: number;
  maxTokens: number;
}

/** `application/json` and `application/*+json`, as Express's JSON parser took; other bodies are left to Apollo. */
const JSON_MEDIA_TYPE = /^application\/(?:[\w.-]+\+)?json\s*(?:;|$)/i;

/**
 * The parsed JSON body, `{}` for an empty one, or undefined when the request does not send JSON; `suspect`
 * says whether the raw bytes have a `\u` escape.
 */
async function readJson(req: IncomingMessage, limit: number): Promise<{ body: unknown; suspect: boolean }> {
  const type = req.headers['content-type'];
  if (type === undefined || !JSON_MEDIA_TYPE.test(type)) return { body: undefined, suspect: false };
  const { body, raw } = await readJsonBody(req, limit);
  return { body, suspect: mayHoldUnstorableText(raw) };
}

/** The refusal of a request over a limit that needs no parsing of its operations (errors, status), or null. */
function refusal(
  exchange: Exchange,
  body: unknown,
  suspect: boolean,
  options: GraphQLRouteOptions,
): { status: number; errors: unknown[] } | null {
  const isGet = exchange.req.method === 'GET';
  const field = isGet || suspect ? findUnstorableText(isGet ? searchParameters(exchange.search) : body) : null;
  if (field !== null) {
    const { message, extensions } = unstorableTextError(field);
    return { status: 400, errors: [{ message, extensions }] };
  }
  const { maxBatch, maxCredentialChecks, maxTokens } = options;
  if (Array.isArray(body) && (body.length === 0 || body.length > maxBatch)) {
    const message = `A batch must hold 1 to ${maxBatch} operations`;
    return { status: 400, errors: [{ message, extensions: { code: 'BATCH_LIMIT_EXCEEDED' } }] };
  }
  const checks = countCredentialChecks(body, maxTokens);
  if (checks > maxCredentialChecks) {
    const message = `A request may hold at most ${maxCredentialChecks} logIn, signUp or refreshSession fields (this one holds ${checks})`;
    return { status: 400, errors: [{ message, extensions: { code: 'CREDENTIAL_CHECK_LIMIT_EXCEEDED' } }] };
  }
  return null;
}

/** The operation names a body asks for, to name the request in the log of work a stop had to cut. */
function operationNames(body: unknown): string[] {
  return (Array.isArray(body) ? body : [body])
    .map((item) => (item as { operationName?: unknown } | undefined)?.operationName)
    .filter((name): name is string => typeof name === 'string');
}

async function execute(
  apollo: ApolloServer<Context>,
  exchange: Exchange,
  body: unknown,
  context: () => Promise<Context>,
): Promise<void> {
  const { req, res } = exchange;
  const headers = new HeaderMap();
  for (const name in req.headers) {
    const value = req.headers[name];
    if (value !== undefined) headers.set(name, Array.isArray(value) ? value.join(', ') : value);
  }
  const httpGraphQLRequest: HTTPGraphQLRequest = { method: req.method!, headers, search: exchange.search, body };
  const response = await apollo.executeHTTPGraphQLRequest({ httpGraphQLRequest, context });
  res.statusCode = response.status ?? 200;
  // Answers are per caller: never stored by a cache on the way (Apollo's cache-control plugin, off, said so).
  res.setHeader('cache-control', 'no-store');
  for (const [name, value] of response.headers) res.setHeader(name, value);
  if (response.body.kind === 'complete') {
    res.end(response.body.string);
    return;
  }
  for await (const chunk of response.body.asyncIterator) res.write(chunk);
  res.end();
}

export function graphqlRoute(
  apollo: ApolloServer<Context>,
  drain: HttpDrain,
  buildContext: (exchange: Exchange) => Promise<Context>,
  options: GraphQLRouteOptions,
): RouteHandler {
  return async (exchange) => {
    const { res } = exchange;
    let read: { body: unknown; suspect: boolean };
    try {
      read = await readJson(exchange.req, options.bodyLimitBytes);
    } catch (error) {
      if (!(error instanceof RequestBodyError)) throw error;
      return refuseBody(exchange.req, res, error, (...refusal) => sendRequestError(res, ...refusal));
    }
    const refused = refusal(exchange, read.body, read.suspect, options);
    if (refused) return sendJson(res, refused.status, { errors: refused.errors });
    await drain.run(
      exchange,
      () => execute(apollo, exchange, read.body, () => buildContext(exchange)),
      operationNames(read.body),
    );
  };
}
