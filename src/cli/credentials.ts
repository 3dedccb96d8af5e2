// Where `modelmarket login` keeps sessions: one per server, in a JSON file only its owner can read
// ($MODELMARKET_CONFIG, else ~/.config/modelmarket/credentials.json). Refreshed tokens are written back at once:
// a refresh token is single-use, so the stored one must always be the latest.
import { randomUUID } from 'node:crypto';
import { link, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { SessionTokens } from '../client/index.js';

/** A lock older than this was left by a process that died holding it (a refresh takes a request's time). */
const STALE_LOCK_MS = 90_000;

export interface StoredSession extends SessionTokens {
  email: string;
}

interface CredentialsFile {
  /** The server of the latest log-in: the default when neither --url nor MODELMARKET_URL is given. */
  defaultUrl?: string;
  sessions: Record<string, StoredSession>;
}

export function credentialsPath(env: Record<string, string | undefined>): string {
  return env.MODELMARKET_CONFIG || path.join(env.HOME || os.homedir(), '.config', 'modelmarket', 'credentials.json');
}

export class CredentialStore {
  constructor(readonly file: string) {}

  async read(): Promise<CredentialsFile> {
    let text: string;
    try {
      text = await readFile(this.file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return { sessions: {} };
      throw error;
    }
    try {
      const parsed = JSON.parse(text) as Partial<CredentialsFile>;
      return { defaultUrl: parsed.defaultUrl, sessions: parsed.sessions ?? {} };
    } catch {
      throw new Error(`${this.file} is not valid JSON: remove it and log in again`);
    }
  }

  async session(url: string): Promise<StoredSession | undefined> {
    return (await this.read()).sessions[url];
  }

  /**
   * Runs `fn` while holding the file's lock (`<file>.lock`, created exclusively), so that concurrent runs take
   * turns to refresh: the second finds the first's new pair instead of spending the same refresh token.
   */
  async withLock<T>(fn: () => Promise<T>): Promise<T> {
    const lock = `${this.file}.lock`;
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    for (;;) {
      try {
        await (await open(lock, 'wx', 0o600)).close();
        break;
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
        const held = await stat(lock).catch(() => undefined);
        if (held && isStale(held.mtimeMs)) await takeOverStale(lock, held.ino);
        else await sleep(50);
      }
    }
    try {
      return await fn();
    } finally {
      await rm(lock, { force: true });
    }
  }

  async save(url: string, session: StoredSession | undefined): Promise<void> {
    const data = await this.read();
    if (session) {
      data.sessions[url] = session;
      data.defaultUrl = url;
    } else {
      delete data.sessions[url];
    }
    await mkdir(path.dirname(this.file), { recursive: true, mode: 0o700 });
    // Written whole then renamed: a crash never leaves half a file (and the lost refresh token with it).
    // Created afresh ('wx': never through a link someone put there, never an old file's mode), readable by its
    // owner only before the tokens go in. A leftover of a crashed run that had our pid is ours to remove.
    const temporary = `${this.file}.${process.pid}.tmp`;
    await rm(temporary, { force: true });
    try {
      const handle = await open(temporary, 'wx', 0o600);
      try {
        await handle.writeFile(`${JSON.stringify(data, null, 2)}\n`);
      } finally {
        await handle.close();
      }
      await rename(temporary, this.file);
    } finally {
      await rm(temporary, { force: true });
    }
  }
}

const isStale = (mtimeMs: number) => Date.now() - mtimeMs > STALE_LOCK_MS;

/**
 * Removes the stale lock `staleIno` so that the next 'wx' can take it. Renamed aside first: of the processes that
 * found it stale, one rename wins and the others find nothing. A process that looked before the winner made its
 * fresh lock sees another inode there now and leaves it alone; one that still takes a fresh lock aside (the lock
 * replaced between its look and its rename) puts it back (link() refuses to replace a lock made since).
 */
async function takeOverStale(lock: string, staleIno: number): Promise<void> {
  const current = await stat(lock).catch(() => undefined);
  if (current?.ino !== staleIno) return;
  const aside = `${lock}.${process.pid}.${randomUUID()}`;
  try {
    await rename(lock, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw error;
  }
  try {
    const taken = await stat(aside);
    if (taken.ino !== staleIno || !isStale(taken.mtimeMs)) {
      await link(aside, lock).catch((error: NodeJS.ErrnoException) => {
        if (error.code !== 'EEXIST') throw error;
      });
    }
  } finally {
    await rm(aside, { force: true });
  }
}
