// Starts the server's parts: database (configured or embedded), migrations, services, HTTP. Used by
// main.ts, the operator scripts (without HTTP) and the tests, which run real servers on real databases.
import path from 'node:path';
import type { Registry } from 'prom-client';
import { AdminBootstrapRefusedError } from './auth/auth-service.js';
import type { Config } from './config.js';
import { connectDatabase, type Database } from './db/database.js';
import { EMBEDDED_STOP_BUDGET_MS, startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded.js';
import { applyMigrations, listMigrations, type Migration } from './db/migrate.js';
import { migrationPool } from './db/migration-pool.js';
import { resolveAppSecret, SecretBox } from './security/secret-box.js';
import { startHttpServer, type RunningHttpServer } from './server/http-server.js';
import { createLogger, type Logger } from './server/logger.js';
import { createRegistry } from './server/metrics.js';
import { createServices, type Services } from './server/services.js';

export interface Runtime {
  db: Database;
  registry: Registry;
  services: Services;
  migrations: Migration[];
  logger: Logger;
  /** Closes the services (inference engine, workers, timers); the database stays open for what they leave. */
  closeServices(): Promise<void>;
  /**
   * Closes the services (unless closeServices was called), then metering, then the pool, then the embedded
   * database, each within its budget (see withinBudget); rejects with the first failure, after every step.
   */
  close(): Promise<void>;
}

/** Each step of a stop after the grace gets this long; then it is logged, forced where it can be, and left. */
const STOP_STEP_BUDGET_MS = 2_000;

/**
 * Runs a step of a stop within STOP_STEP_BUDGET_MS. Past it the step is logged, `force` ends what it waits on
 * (a frozen database never answers, nor closes its side of a connection) and the stop goes on, reporting the
 * step as failed; the process exits soon after, so nothing is left waiting.
 */
async function withinBudget(
  logger: Logger,
  step: string,
  run: () => Promise<unknown>,
  force?: () => void,
): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<'expired'>((resolve) => (timer = setTimeout(resolve, STOP_STEP_BUDGET_MS, 'expired')));
  try {
    if ((await Promise.race([run(), expired])) !== 'expired') return;
  } catch (error) {
    logger.error({ step, err: error }, 'a stop step failed');
    throw error;
  } finally {
    clearTimeout(timer);
  }
  logger.error({ step, budgetMs: STOP_STEP_BUDGET_MS }, 'a stop step did not finish within its budget; forcing it');
  force?.();
  throw new Error(`stopping: ${step} did not finish within ${STOP_STEP_BUDGET_MS} ms`);
}

/** Runs steps in order, each even when an earlier one failed; rejects with the first failure. */
async function inOrder(steps: (() => Promise<unknown>)[]): Promise<void> {
  let failure: unknown;
  for (const step of steps) await step().catch((error: unknown) => (failure ??= error));
  if (failure !== undefined) throw failure;
}

/** Database (migrated) and services, without HTTP. */
export async function openRuntime(
  config: Config,
  logger = createLogger(config.logLevel, config.logFormat),
): Promise<Runtime> {
  const secrets = new SecretBox(await resolveAppSecret(config.appSecret, config.dataDir));

  let embedded: EmbeddedDatabase | undefined;
  let databaseUrl = config.database.url;
  if (!databaseUrl) {
    embedded = await startEmbeddedPostgres({
      dir: path.join(config.dataDir, 'postgres'),
      password: secrets.deriveKey('embedded-postgres-password').toString('base64url'),
      database: 'modelmarket',
      logger,
    });
    databaseUrl = embedded.url;
    logger.info('using the embedded PostgreSQL (set DATABASE_URL to use another)');
  }

  const db = connectDatabase(databaseUrl, config.database.poolSize, config.database.timeouts);
  try {
    const migrations = await listMigrations();
    // Migrations get their own pool, without the statement timeouts (one may rewrite a large table).
    const migrating = migrationPool(databaseUrl);
    const applied = await applyMigrations(migrating, migrations).finally(() => migrating.end());
    if (applied.length) logger.info({ applied }, 'applied database migrations');
    const registry = createRegistry();
    const services = await createServices(config, db, secrets, registry, logger);
    let servicesClosed: Promise<void> | undefined;
    const closeServices = () => (servicesClosed ??= services.close());
    return {
      db,
      registry,
      services,
      migrations,
      logger,
      closeServices,
      async close() {
        // A stop that closed the services already (or gave up on them) does not wait for them again.
        const closing = servicesClosed ? [] : [() => withinBudget(logger, 'closing the services', closeServices)];
        await inOrder([
          ...closing,
          () => withinBudget(logger, 'closing metering', () => services.closeMetering()),
          () => withinBudget(logger, 'closing the database pool', () => db.close(), db.destroy),
          // Bounded by its own escalation (EMBEDDED_STOP_BUDGET_MS).
          async () => embedded?.stop(),
        ]);
      },
    };
  } catch (error) {
    await db.close().catch(() => undefined);
    await embedded?.stop().catch(() => undefined);
    throw error;
  }
}

/**
 * ADMIN_EMAIL/ADMIN_PASSWORD. When the address belongs to an account with another password, nobody is
 * promoted and the refusal is logged as an error (and audited), but the server starts: failing the start would
 * let whoever signed up with the address first keep the whole service down. `admin:create --reset-password`
 * resolves it.
 */
async function ensureBootstrapAdmin(
  services: Services,
  admin: { email: string; password: string },
  logger: Logger,
): Promise<void> {
  try {
    const outcome = await services.auth.ensureAdmin(admin.email, admin.password);
    if (outcome === 'already-admin-other-password') {
      logger.warn(
        { email: admin.email },
        'the ADMIN_EMAIL account is an admin whose password is not ADMIN_PASSWORD; if nobody changed it, reset it with `npm run admin:create -- --reset-password`',
      );
    } else if (outcome !== 'already-admin') {
      logger.info({ email: admin.email, outcome }, 'bootstrap admin ensured');
    }
  } catch (error) {
    if (!(error instanceof AdminBootstrapRefusedError)) throw error;
    logger.error({ email: error.email }, `ADMIN_EMAIL refused: ${error.message}`);
  }
}

export interface Application {
  url: string;
  port: number;
  services: Services;
  logger: Logger;
  /** Stops accepting, drains in-flight requests, flushes and closes everything it started (see stop). */
  close(): Promise<void>;
}

/** After the inference engine closed under calls still running, how long they get to record their failure. */
const AFTER_ENGINE_CLOSE_MS = 1000;
/** After their statements were cancelled, how long the calls still running get to fail. */
const AFTER_CANCEL_MS = 1000;

/**
 * The longest a stop takes after SHUTDOWN_GRACE_MS: the waits, five steps within their budget (services,
 * cancelling statements, HTTP, metering, pool) and the embedded database's escalation. main.ts's force-exit
 * comes only after it.
 */
export const STOP_BUDGET_AFTER_GRACE_MS =
  AFTER_ENGINE_CLOSE_MS + AFTER_CANCEL_MS + 5 * STOP_STEP_BUDGET_MS + EMBEDDED_STOP_BUDGET_MS;

/**
 * The graceful stop. Nothing new is accepted; in-flight requests finish (each predict's usage record commits
 * before its answer is sent), within SHUTDOWN_GRACE_MS. Only then does the inference engine close: calls it
 * still runs (the grace expired) fail and their error records give their units back through the pool. Calls
 * still running after that have their statements cancelled: left to run after their connections close, one
 * could commit a usage record whose answer nobody receives (billed, never answered); cancelled, it rolls back,
 * the call fails and metering's close gives its units back. Then connections close, then metering, the pool
 * and the embedded database. Every step after the grace is bounded (STOP_BUDGET_AFTER_GRACE_MS).
 */
async function stop(http: RunningHttpServer, runtime: Runtime, graceMs: number, logger: Logger): Promise<void> {
  const started = Date.now();
  http.stopAccepting();
  logger.info({ inFlight: http.inFlight, graceMs }, 'stopped accepting requests; waiting for those in flight');
  let running = await http.settled(started + graceMs);
  const anyRunning = () => Object.keys(running).length > 0;
  if (anyRunning()) {
    logger.warn({ running }, 'shutdown grace expired: closing the inference engine under requests still running');
  }
  await inOrder([
    async () => {
      try {
        await withinBudget(logger, 'closing the services', runtime.closeServices);
      } finally {
        running = await http.settled(Date.now() + AFTER_ENGINE_CLOSE_MS);
      }
    },
    async () => {
      if (!anyRunning()) return;
      logger.warn({ running }, 'cancelling the database statements of requests still running');
      try {
        await withinBudget(logger, 'cancelling statements', () =>
          runtime.db.cancelRunningStatements(STOP_STEP_BUDGET_MS / 2),
        );
      } finally {
        running = await http.settled(Date.now() + AFTER_CANCEL_MS);
        if (anyRunning()) logger.error({ running }, 'closing connections under requests still running');
      }
    },
    () => withinBudget(logger, 'closing HTTP', () => http.close()),
    () => runtime.close(),
  ]);
  logger.info({ ms: Date.now() - started }, 'stopped');
}

export async function startApplication(
  config: Config,
  logger = createLogger(config.logLevel, config.logFormat),
): Promise<Application> {
  const runtime = await openRuntime(config, logger);
  try {
    const { services } = runtime;
    if (config.bootstrapAdmin) await ensureBootstrapAdmin(services, config.bootstrapAdmin, logger);
    const http = await startHttpServer({ ...runtime, config });
    return {
      url: http.url,
      port: http.port,
      services,
      logger,
      close: () => stop(http, runtime, config.shutdownGraceMs, logger),
    };
  } catch (error) {
    await runtime.close().catch(() => undefined);
    throw error;
  }
}
