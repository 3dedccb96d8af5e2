// Starts the server's parts: database (configured or embedded), migrations, services, HTTP. Used by
// main.ts, the operator scripts (without HTTP) and the tests, which run real servers on real databases.
import path from 'node:path';
import type { Registry } from 'prom-client';
import { AdminBootstrapRefusedError } from './auth/auth-service.js';
import type { Config } from './config.js';
import { connectDatabase, type Database } from './db/database.js';
import { startEmbeddedPostgres, type EmbeddedDatabase } from './db/embedded.js';
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
  /** Closes the services, then metering, then the pool, then the embedded database. */
  close(): Promise<void>;
}

/** Database (migrated) and services, without HTTP. */
export async function openRuntime(config: Config, logger = createLogger(config.logLevel)): Promise<Runtime> {
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
        // In order, each step even when an earlier one failed; the first failure is reported.
        const steps = [closeServices, () => services.closeMetering(), () => db.close(), async () => embedded?.stop()];
        let failure: unknown;
        for (const step of steps) await step().catch((error: unknown) => (failure ??= error));
        if (failure !== undefined) throw failure;
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

/**
 * The graceful stop. Nothing new is accepted; in-flight requests finish (each predict's usage record commits
 * before its answer is sent), within SHUTDOWN_GRACE_MS. Only then does the inference engine close: calls it
 * still runs (the grace expired) fail and their error records give their units back through the pool, which
 * closes after them, then the embedded database.
 */
async function stop(http: RunningHttpServer, runtime: Runtime, graceMs: number, logger: Logger): Promise<void> {
  const started = Date.now();
  http.stopAccepting();
  logger.info({ inFlight: http.inFlight, graceMs }, 'stopped accepting requests; waiting for those in flight');
  let running = await http.settled(started + graceMs);
  if (Object.keys(running).length) {
    logger.warn({ running }, 'shutdown grace expired: closing the inference engine under requests still running');
  }
  try {
    await runtime.closeServices();
  } finally {
    running = await http.settled(Date.now() + AFTER_ENGINE_CLOSE_MS);
    if (Object.keys(running).length) logger.error({ running }, 'closing the database under requests still running');
    try {
      await http.close();
    } finally {
      await runtime.close();
    }
  }
  logger.info({ ms: Date.now() - started }, 'stopped');
}

export async function startApplication(config: Config, logger = createLogger(config.logLevel)): Promise<Application> {
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
