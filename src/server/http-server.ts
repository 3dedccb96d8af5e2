// The HTTP surface: GraphQL at /graphql, health and readiness probes, Prometheus metrics and the JWKS.
// Request-level limits (body size, batch size, credential checks, depth, cost, aliases, tokens) reject before any
// resolver runs.
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { expressMiddleware } from '@as-integrations/express5';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import express, { type ErrorRequestHandler, type RequestHandler } from 'express';
import { pinoHttp } from 'pino-http';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Database } from '../db/database.js';
import { pendingMigrations, type Migration } from '../db/migrate.js';
import { countCredentialChecks } from '../auth/credential-checks.js';
import { usageRoutes } from '../metering/usage-http.js';
import { artifactRoutes } from '../models/artifacts-http.js';
import { buildContext, type Context } from './context.js';
import { HttpDrain } from './drain.js';
import { CLIENT_ERROR_CODES, databaseUnavailableError, ErrorCode } from './errors.js';
import type { Logger } from './logger.js';
import { graphqlMetricsPlugin } from './metrics.js';
import { findUnstorableText, mayHoldUnstorableText, noteEscapes } from './storable-input.js';
import { retryStatusPlugin } from './retry-status.js';
import { unstorableTextError } from './text.js';
import { buildSchema } from './schema.js';
import type { Services } from './services.js';

export interface HttpServerDeps {
  config: Config;
  db: Database;
  services: Services;
  logger: Logger;
  registry: Registry;
  migrations: Migration[];
}

export interface RunningHttpServer {
  url: string;
  port: number;
  /** Stops listening and refuses new requests; in-flight ones go on (see drain.ts). */
  stopAccepting(): void;
  /** Requests whose handlers are still running. */
  readonly inFlight: number;
  /** Waits for in-flight requests until `deadline` (epoch ms); returns the ones still running, by label. */
  settled(deadline: number): Promise<Record<string, number>>;
  /** Stops Apollo and ends every connection left. */
  close(): Promise<void>;
}

const REQUEST_ID = /^[\w.:-]{1,128}$/;

function requestError(res: express.Response, status: number, code: string, message: string): void {
  res.status(status).json({ errors: [{ message, extensions: { code } }] });
}

/** Whether an Authorization header carries `token` (compared in constant time); everything passes without a token. */
function bearerCheck(token: string | undefined): (header: string | undefined) => boolean {
  if (token === undefined) return () => true;
  const digest = (value: string) => createHash('sha256').update(value).digest();
  const expected = digest(`Bearer ${token}`);
  return (header) => header !== undefined && timingSafeEqual(digest(header), expected);
}

/**
 * Failures of the client's request itself — body-parser's (oversized, malformed JSON), a malformed URL path —
 * as GraphQL-shaped errors with stable codes, not internal errors.
 */
const clientErrorHandler: ErrorRequestHandler = (error: { type?: string; status?: number }, _req, res, next) => {
  if (error.type === 'entity.too.large') return requestError(res, 413, 'PAYLOAD_TOO_LARGE', 'Request body too large');
  if (error.type === 'entity.parse.failed') return requestError(res, 400, 'BAD_REQUEST', 'Malformed JSON body');
  if (error.status && error.status >= 400 && error.status < 500) {
    return requestError(res, error.status, 'BAD_REQUEST', 'Bad request');
  }
  next(error);
};

/** BAD_USER_INPUT, before anything runs, for a request carrying text PostgreSQL cannot store (storable-input.ts). */
const refuseUnstorableText: RequestHandler = (req, res, next) => {
  const field = mayHoldUnstorableText(req) ? findUnstorableText(req.method === 'GET' ? req.query : req.body) : null;
  if (field === null) return next();
  const { message, extensions } = unstorableTextError(field);
  res.status(400).json({ errors: [{ message, extensions }] });
};

function batchLimit(max: number): RequestHandler {
  return (req, res, next) => {
    if (Array.isArray(req.body) && (req.body.length === 0 || req.body.length > max)) {
      return requestError(res, 400, 'BATCH_LIMIT_EXCEEDED', `A batch must hold 1 to ${max} operations`);
    }
    next();
  };
}

/** Refuses the whole request when its operations together ask for more than `max` credential checks. */
function credentialCheckLimit(max: number, maxTokens: number): RequestHandler {
  return (req, res, next) => {
    const checks = countCredentialChecks(req.body, maxTokens);
    if (checks > max) {
      return requestError(
        res,
        400,
        'CREDENTIAL_CHECK_LIMIT_EXCEEDED',
        `A request may hold at most ${max} logIn, signUp or refreshSession fields (this one holds ${checks})`,
      );
    }
    next();
  };
}

/** Returns what resolvers put in `ctx.warnings` as `extensions.warnings`. */
const warningsPlugin: ApolloServerPlugin<Context> = {
  async requestDidStart() {
    return {
      async willSendResponse({ contextValue, response }) {
        if (contextValue.warnings.length && response.body.kind === 'single') {
          response.body.singleResult.extensions = {
            ...response.body.singleResult.extensions,
            warnings: contextValue.warnings,
          };
        }
      },
    };
  },
};

export async function startHttpServer(deps: HttpServerDeps): Promise<RunningHttpServer> {
  const { config, db, services, logger, registry } = deps;
  const app = express();
  app.disable('x-powered-by');
  app.set('trust proxy', config.trustProxy);
  const httpServer = http.createServer(app);
  const drain = new HttpDrain(httpServer);
  app.use(drain.admit);

  app.use(
    pinoHttp({
      logger,
      genReqId(req, res) {
        const incoming = req.headers['x-request-id'];
        const id = typeof incoming === 'string' && REQUEST_ID.test(incoming) ? incoming : randomUUID();
        res.setHeader('x-request-id', id);
        return id;
      },
      autoLogging: { ignore: (req) => req.url === '/healthz' || req.url === '/metrics' },
    }),
  );

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });

  app.get('/readyz', async (_req, res) => {
    try {
      // Its own short deadline: a probe must answer (503) while the database does not.
      await db.ping(config.readinessTimeoutMs);
      const pending = await pendingMigrations(db.pool, deps.migrations);
      const inference = services.engine.stats();
      // Without a live worker no prediction can run; workerRestarts shows workers that broke and were replaced.
      const ready = pending.length === 0 && inference.workers > 0;
      res.status(ready ? 200 : 503).json({
        status: ready ? 'ready' : 'not ready',
        database: 'ok',
        migrations: pending.length === 0 ? 'applied' : { pending },
        inference: { backend: services.engine.backend, ...inference },
      });
    } catch (error) {
      logger.warn({ err: error }, 'readiness check failed');
      res.status(503).json({ status: 'not ready', database: 'unreachable' });
    }
  });

  const metricsAllowed = bearerCheck(config.metricsToken);
  app.get('/metrics', async (req, res) => {
    if (!metricsAllowed(req.headers.authorization)) {
      res.set('www-authenticate', 'Bearer realm="metrics"');
      return requestError(res, 401, 'UNAUTHENTICATED', 'Send the metrics token as Authorization: Bearer <token>');
    }
    res.type(registry.contentType).send(await registry.metrics());
  });

  app.get('/.well-known/jwks.json', (_req, res) => {
    res.set('cache-control', 'public, max-age=300').json(services.keyRing.jwks());
  });

  const armor = new ApolloArmor({
    maxDepth: { n: config.graphql.maxDepth },
    costLimit: { maxCost: config.graphql.maxCost },
    maxAliases: { n: config.graphql.maxAliases },
    maxDirectives: { n: 20 },
    // Token limits are enforced by graphql-js's own parser (parseOptions below), which answers a
    // 400 GRAPHQL_PARSE_FAILED; armor's variant turns every syntax error into a 500.
    maxTokens: { enabled: false },
    blockFieldSuggestion: { enabled: config.production },
  }).protect();

  const plugins: ApolloServerPlugin<Context>[] = [
    ...(armor.plugins as ApolloServerPlugin<Context>[]),
    graphqlMetricsPlugin(registry),
    warningsPlugin,
    retryStatusPlugin,
  ];
  if (!config.graphql.landingPage) plugins.push(ApolloServerPluginLandingPageDisabled());

  const apollo = new ApolloServer<Context>({
    schema: buildSchema(),
    introspection: config.graphql.introspection,
    // Batches are allowed but bounded (batchLimit); each operation in one is checked on its own.
    allowBatchedHttpRequests: true,
    // No automatic persisted queries: a hash-only operation would hide its text from credentialCheckLimit.
    persistedQueries: false,
    csrfPrevention: true,
    // app.ts owns shutdown (drain HTTP, then services, then the database).
    stopOnTerminationSignals: false,
    includeStacktraceInErrorResponses: config.graphql.exposeErrorDetails,
    validationRules: armor.validationRules,
    parseOptions: { maxTokens: config.graphql.maxTokens },
    plugins,
    formatError(formatted, error) {
      const code = String(formatted.extensions?.code ?? 'INTERNAL_SERVER_ERROR');
      if (CLIENT_ERROR_CODES.has(code)) return formatted;
      // Where the error is in the client's own operation: which field failed (retry-status.ts reads it too).
      const { locations, path } = formatted;
      const unavailable = databaseUnavailableError(error);
      if (unavailable) {
        logger.warn({ err: error }, 'database unavailable');
        const { retryAfter } = unavailable.extensions;
        return {
          message: unavailable.message,
          locations,
          path,
          extensions: { code: ErrorCode.SERVICE_UNAVAILABLE, retryAfter },
        };
      }
      logger.error({ err: error }, 'internal error');
      if (config.graphql.exposeErrorDetails) return formatted;
      return { message: 'Internal server error', locations, path, extensions: { code: 'INTERNAL_SERVER_ERROR' } };
    },
  });
  await apollo.start();

  app.use(
    '/graphql',
    express.json({
      limit: config.graphql.bodyLimitBytes,
      type: ['application/json', 'application/*+json'],
      verify: noteEscapes,
    }),
    clientErrorHandler,
    refuseUnstorableText,
    batchLimit(config.graphql.maxBatch),
    credentialCheckLimit(config.graphql.maxCredentialChecks, config.graphql.maxTokens),
    drain.track(expressMiddleware(apollo, { context: ({ req }) => buildContext(req, services, db.prisma) })),
  );
  app.use(artifactRoutes(services, db.prisma, config.models.artifactMaxBytes, drain.track));
  app.use(usageRoutes(services, drain.track));

  app.use((_req, res) => requestError(res, 404, 'NOT_FOUND', 'No such route'));
  app.use(clientErrorHandler);
  app.use(((error, req, res, _next) => {
    req.log.error({ err: error }, 'unhandled HTTP error');
    requestError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error');
  }) as ErrorRequestHandler);

  await new Promise<void>((resolve, reject) => {
    httpServer.once('error', reject);
    httpServer.listen(config.port, config.host, resolve);
  });
  const { port } = httpServer.address() as AddressInfo;
  return {
    url: `http://localhost:${port}/graphql`,
    port,
    stopAccepting: () => drain.stopAccepting(),
    get inFlight() {
      return drain.inFlight;
    },
    settled: (deadline) => drain.settled(deadline),
    async close() {
      await apollo.stop();
      drain.closeConnections();
    },
  };
}
