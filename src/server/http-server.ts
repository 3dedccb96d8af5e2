// The HTTP surface on node:http: GraphQL at /graphql (graphql-http.ts), health and readiness probes, Prometheus
// metrics, the JWKS, the REST routes of artifacts, usage and image predict, and the Open Inference Protocol's (/v2).
// Every request gets an Exchange (request id, client address, its Actor), one access-log line, and the drain's
// admission (drain.ts). Request-level limits (body size, batch size, credential checks, depth, cost, aliases,
// tokens) reject before any resolver runs.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { ApolloServer, type ApolloServerPlugin } from '@apollo/server';
import {
  ApolloServerPluginCacheControlDisabled,
  ApolloServerPluginLandingPageDisabled,
} from '@apollo/server/plugin/disabled';
import { ApolloArmor } from '@escape.tech/graphql-armor';
import type { Registry } from 'prom-client';
import type { Config } from '../config.js';
import type { Database } from '../db/database.js';
import { pendingMigrations, type Migration } from '../db/migrate.js';
import { addUsageRoutes } from '../metering/usage-http.js';
import { addArtifactRoutes } from '../models/artifacts-http.js';
import { addDatasetRoutes } from '../evaluation/datasets-http.js';
import { addBatchPredictionRoutes } from '../predictions/batch-predictions-http.js';
import { addPredictRoutes } from '../predictions/predict-http.js';
import { addOpenInferenceRoutes } from '../predictions/open-inference-http.js';
import { sameSecret } from '../security/same-secret.js';
import { consoleSite, wantsPage } from './console-http.js';
import { buildContext, type Context } from './context.js';
import { HttpDrain } from './drain.js';
import { CLIENT_ERROR_CODES, databaseUnavailableError, ErrorCode } from './errors.js';
import { Exchange, type ExchangeSettings } from './exchange.js';
import { graphqlRoute } from './graphql-http.js';
import { sendJson, sendRequestError } from './http-response.js';
import { REQUEST_COMPLETED, type Logger } from './logger.js';
import { graphqlMetricsPlugin } from './metrics.js';
import { retryStatusPlugin } from './retry-status.js';
import { MalformedPathError, Router } from './router.js';
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

/** Whether an Authorization header carries `token` (compared in constant time); everything passes without a token. */
function bearerCheck(token: string | undefined): (header: string | undefined) => boolean {
  if (token === undefined) return () => true;
  const expected = `Bearer ${token}`;
  return (header) => header !== undefined && sameSecret(header, expected);
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

/** Paths probed or scraped every few seconds: not worth an access-log line each. */
const UNLOGGED_PATHS = new Set(['/healthz', '/metrics']);

/** The answer to a request whose handler failed unexpectedly: logged, and a JSON 500 when nothing was sent yet. */
function answerUnexpected(exchange: Exchange, error: unknown): void {
  const { res } = exchange;
  if (error instanceof MalformedPathError) return sendRequestError(res, 400, 'BAD_REQUEST', 'Bad request');
  exchange.log.error({ err: error }, 'unhandled HTTP error');
  if (res.headersSent) res.destroy();
  else sendRequestError(res, 500, 'INTERNAL_SERVER_ERROR', 'Internal server error');
}

/** graphql-js's parse error when a document passes `maxTokens` (graphql 16 writes "more that"). */
const TOO_MANY_TOKENS = /Document contains more tha[nt] \d+ tokens/;

export async function startHttpServer(deps: HttpServerDeps): Promise<RunningHttpServer> {
  const { config, db, services, logger, registry } = deps;
  const router = new Router();
  const settings: ExchangeSettings = { logger, authenticator: services.authenticator, trustProxy: config.trustProxy };
  // Its lines hold only the fields below, none of them a credential: redaction's key walk (~3.5 µs a line,
  // measured) is left out.
  const accessLog = logger.child({}, { redact: { paths: [] } });
  // Under tsx every named function made per request is named again (esbuild's keepNames): the per-request
  // work is in functions made once.
  const logCompleted = (exchange: Exchange) => {
    if (UNLOGGED_PATHS.has(exchange.path)) return;
    const ms = Math.round((performance.now() - exchange.startedAt) * 10) / 10;
    const { req, res } = exchange;
    accessLog.info(
      { reqId: exchange.id, method: req.method, path: exchange.path, status: res.statusCode, ms },
      REQUEST_COMPLETED,
    );
  };
  const site = consoleSite({ graphiql: config.graphql.ide });
  const serve = async (exchange: Exchange) => {
    try {
      const handler = router.find(exchange);
      if (handler) await handler(exchange);
      else if (await serveConsole(exchange)) return;
      else sendRequestError(exchange.res, 404, 'NOT_FOUND', 'No such route');
    } catch (error) {
      answerUnexpected(exchange, error);
    } finally {
      drain.release(exchange.res);
      logCompleted(exchange);
    }
  };
  /** The console's files, or its index.html for a browser's page request; false for API clients' misses. */
  const serveConsole = async (exchange: Exchange): Promise<boolean> => {
    const method = exchange.req.method;
    if (method !== 'GET' && method !== 'HEAD') return false;
    if (await site.serveFile(exchange)) return true;
    if (!wantsPage(exchange)) return false;
    site.servePage(exchange, 'index.html');
    return true;
  };
  const httpServer = http.createServer((req, res) => {
    const exchange = new Exchange(req, res, settings);
    res.setHeader('x-request-id', exchange.id);
    if (drain.admit(res)) void serve(exchange);
  });
  httpServer.keepAliveTimeout = config.keepAliveTimeoutMs;
  // The deadline for a request's headers stays above the idle timeout (Node's advice); 60 s by default.
  httpServer.headersTimeout = Math.max(httpServer.headersTimeout, config.keepAliveTimeoutMs + 1000);
  const drain = new HttpDrain(httpServer);

  router.add('GET', '/healthz', ({ res }) => sendJson(res, 200, { status: 'ok' }));

  /** Whether the server can serve predictions: its database answers, migrations are applied, a worker lives. */
  const readiness = async () => {
    try {
      // Its own short deadline: a probe must answer (503) while the database does not.
      await db.ping(config.readinessTimeoutMs);
      const pending = await pendingMigrations(db.pool, deps.migrations);
      const inference = services.engine.stats();
      // Without a live worker no prediction can run; workerRestarts shows workers that broke and were replaced.
      const ready = pending.length === 0 && inference.workers > 0;
      return {
        ready,
        status: ready ? 'ready' : 'not ready',
        database: 'ok',
        migrations: pending.length === 0 ? 'applied' : { pending },
        inference: { backend: services.engine.backend, ...inference },
      };
    } catch (error) {
      logger.warn({ err: error }, 'readiness check failed');
      return { ready: false, status: 'not ready', database: 'unreachable' };
    }
  };

  router.add('GET', '/readyz', async ({ res }) => {
    const { ready, ...report } = await readiness();
    sendJson(res, ready ? 200 : 503, report);
  });

  const metricsAllowed = bearerCheck(config.metricsToken);
  router.add('GET', '/metrics', async ({ req, res }) => {
    if (!metricsAllowed(req.headers.authorization)) {
      res.setHeader('www-authenticate', 'Bearer realm="metrics"');
      return sendRequestError(res, 401, 'UNAUTHENTICATED', 'Send the metrics token as Authorization: Bearer <token>');
    }
    const text = await registry.metrics();
    res.setHeader('content-type', registry.contentType);
    res.end(text);
  });

  router.add('GET', '/.well-known/jwks.json', ({ res }) => {
    res.setHeader('cache-control', 'public, max-age=300');
    sendJson(res, 200, services.keyRing.jwks());
  });

  const armor = new ApolloArmor({
    // A fragment costs what its fields cost, as if written inline: the console shares selections as fragments,
    // and armor's default counts each spread as one more level (deeper and 1.5× dearer).
    maxDepth: { n: config.graphql.maxDepth, flattenFragments: true },
    costLimit: { maxCost: config.graphql.maxCost, flattenFragments: true },
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
    // No field has a cache hint: its per-field hook only wrapped every resolver (graphql-http.ts sends no-store).
    ApolloServerPluginCacheControlDisabled(),
  ];
  // Browsers get the bundled GraphiQL (below) instead of Apollo's landing page, which loads from a CDN.
  plugins.push(ApolloServerPluginLandingPageDisabled());

  const apollo = new ApolloServer<Context>({
    schema: buildSchema(),
    introspection: config.graphql.introspection,
    // Batches are allowed but bounded (graphql-http.ts); each operation in one is checked on its own.
    allowBatchedHttpRequests: true,
    // No automatic persisted queries: a hash-only operation would hide its text from the credential-check limit.
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
      // graphql-js stops at GRAPHQL_MAX_TOKENS; the usual cause is data (an image's pixels) written into the query.
      if (code === 'GRAPHQL_PARSE_FAILED' && TOO_MANY_TOKENS.test(formatted.message)) {
        return {
          ...formatted,
          message: `The query has more than ${config.graphql.maxTokens} tokens: send large inputs as variables (\`mutation P($input: PredictInput!) { predict(input: $input) { … } }\` with "variables": {"input": …}), not written into the query`,
        };
      }
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

  const graphql = graphqlRoute(apollo, drain, (exchange) => buildContext(exchange, services, db.prisma), {
    bodyLimitBytes: config.graphql.bodyLimitBytes,
    maxBatch: config.graphql.maxBatch,
    maxCredentialChecks: config.graphql.maxCredentialChecks,
    maxTokens: config.graphql.maxTokens,
  });
  router.add('ANY', '/graphql', (exchange) => {
    if (config.graphql.ide && wantsPage(exchange) && exchange.search === '')
      return site.servePage(exchange, 'graphiql.html');
    return graphql(exchange);
  });
  addArtifactRoutes(router, services, db.prisma, config.models.artifactMaxBytes, drain.track);
  addUsageRoutes(router, services, drain.track);
  addDatasetRoutes(router, services, drain.track);
  addBatchPredictionRoutes(router, services, drain.track);
  addPredictRoutes(router, services, config.models.maxImageBytesPerCall, drain.track);
  addOpenInferenceRoutes(
    router,
    services,
    { bodyLimitBytes: config.graphql.bodyLimitBytes, ready: async () => (await readiness()).ready },
    drain.track,
  );

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
