// The change feed: one connection per server LISTENing on `mm_changes`, where triggers notify every change that
// the hot-path caches depend on, in the transaction that makes it (migration 20261210000000_change_feed). Caches
// (FeedCache) are trusted only while the feed is confirmed — listening, and a heartbeat answered within
// TRUST_WINDOW_MS — otherwise every request reads the database, as without caches. After a lost connection it
// LISTENs again first, then clears every cache, then trusts again.
//
// The residual window, stated honestly: a change made on another replica reaches this one as fast as PostgreSQL
// delivers the notification (sub-millisecond here); a request this server handles in between still sees the cached
// state. A connection that dies silently (no reset, no error) is noticed within TRUST_WINDOW_MS, and notifications
// sent meanwhile are missed until then: caches may answer from state up to that old before they are bypassed.
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import pg from 'pg';
import { Gauge, type Registry } from 'prom-client';
import type { Logger } from '../server/logger.js';
import { dedicatedClientConfig, endWithin, pingWithin } from './dedicated-connection.js';

export const CHANGE_CHANNEL = 'mm_changes';

/** The notifications the triggers send, `<kind>:<id>`, built the same way here for local invalidation. */
export const Change = {
  session: (sessionId: string) => `s:${sessionId}`,
  user: (userId: string) => `u:${userId}`,
  apiKey: (prefix: string) => `k:${prefix}`,
  contracts: (consumerId: string, modelId: string) => `c:${consumerId}:${modelId}`,
  catalog: (modelId: string) => `m:${modelId}`,
} as const;

/** What the TRUNCATE triggers notify. */
const CLEAR_ALL = '*:';

export type ChangeKind = 's' | 'u' | 'k' | 'c' | 'm';

/** A cache the feed keeps current. */
export interface FeedSubscriber {
  /** The kinds of change it depends on. */
  readonly kinds: readonly ChangeKind[];
  /** Drops what `change` (`<kind>:<id>`) may have made stale. */
  invalidate(change: string): void;
  /** Drops everything (the feed may have missed changes). */
  clear(): void;
}

const HEARTBEAT_INTERVAL_MS = 1_000;
const HEARTBEAT_TIMEOUT_MS = 1_000;
/**
 * Caches are trusted while the last heartbeat answered this recently: a connection that went silent stops being
 * trusted within this, whatever the network does, and is replaced once its heartbeat timed out.
 */
const TRUST_WINDOW_MS = 2_500;
/** The longest a change waits to be heard by its own server; past it the feed is treated as lost. */
const SYNC_TIMEOUT_MS = 1_000;
/** Before each attempt to listen again, the first included: a database that just dropped us may be restarting. */
const RECONNECT_DELAY_MS = 1_000;
/** Within the stop step that closes the services (STOP_STEP_BUDGET_MS in app.ts). */
const CLOSE_TIMEOUT_MS = 1_000;

export class ChangeFeed {
  /** The feed connection's application_name, to find it in pg_stat_activity. */
  readonly applicationName = `modelmarket-feed:${process.pid}:${randomBytes(4).toString('hex')}`;
  readonly #config: pg.ClientConfig;
  readonly #subscribers: FeedSubscriber[] = [];
  readonly #syncPrefix = `sync:${randomBytes(6).toString('hex')}:`;
  readonly #syncs = new Map<string, () => void>();
  #syncCount = 0;
  #client: pg.Client | null = null;
  #listening = false;
  /** performance.now() of the last heartbeat answered on the listening connection. */
  #confirmedAt = -Infinity;
  #beating = false;
  #closed = false;
  #reconnecting: Promise<void> | null = null;
  /** Ends the wait before the next attempt to listen (a close does not wait it out). */
  #wake: (() => void) | null = null;
  readonly #heartbeat: NodeJS.Timeout;

  private constructor(
    private readonly pool: pg.Pool,
    private readonly logger: Logger,
  ) {
    this.#config = dedicatedClientConfig(pool, this.applicationName);
    this.#heartbeat = setInterval(() => void this.#beat(), HEARTBEAT_INTERVAL_MS);
    this.#heartbeat.unref();
  }

  /** Connects and listens; a database that does not answer leaves it retrying in the background (caches bypassed). */
  static async start(pool: pg.Pool, logger: Logger, registry: Registry): Promise<ChangeFeed> {
    const feed = new ChangeFeed(pool, logger);
    new Gauge({
      name: 'mm_change_feed_trusted',
      help: '1 while the change feed is listening and confirmed (hot-path caches in use), 0 while they are bypassed',
      registers: [registry],
      collect() {
        this.set(feed.trusted ? 1 : 0);
      },
    });
    try {
      await feed.#listen();
    } catch (error) {
      logger.warn({ err: error }, 'the change feed could not listen; caches are bypassed until it does');
      feed.#lost();
    }
    return feed;
  }

  /** Whether caches may answer: listening, and the connection answered a heartbeat within TRUST_WINDOW_MS. */
  get trusted(): boolean {
    return this.#listening && performance.now() - this.#confirmedAt < TRUST_WINDOW_MS;
  }

  subscribe(subscriber: FeedSubscriber): void {
    this.#subscribers.push(subscriber);
  }

  /**
   * Called after a change committed: drops it from this server's caches at once, then waits (at most
   * SYNC_TIMEOUT_MS) until this server's listener hears a marker notified after the commit. Notifications arrive in
   * commit order, so by then the change's own notification reached this listener, and, delivered at the same
   * moment, every other replica's: when the caller answers, no replica's cache still holds what it changed (up to
   * the residual window above). A feed that cannot confirm it is treated as lost: caches are bypassed and cleared.
   */
  async published(changes: readonly string[]): Promise<void> {
    for (const change of changes) this.#apply(change);
    // Not listening: caches are bypassed now and cleared before they are trusted again.
    if (!this.#listening) return;
    const marker = `${this.#syncPrefix}${++this.#syncCount}`;
    const heard = new Promise<boolean>((resolve) => this.#syncs.set(marker, () => resolve(true)));
    let timer: NodeJS.Timeout | undefined;
    try {
      await this.pool.query('SELECT pg_notify($1, $2)', [CHANGE_CHANNEL, marker]);
      const timedOut = new Promise<boolean>((resolve) => (timer = setTimeout(resolve, SYNC_TIMEOUT_MS, false)));
      if (!(await Promise.race([heard, timedOut]))) {
        this.logger.warn({ timeoutMs: SYNC_TIMEOUT_MS }, 'the change feed did not hear its own marker; reconnecting');
        this.#lost();
      }
    } catch (error) {
      this.logger.warn({ err: error }, 'the change feed could not send its marker; reconnecting');
      this.#lost();
    } finally {
      clearTimeout(timer);
      this.#syncs.delete(marker);
    }
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#listening = false;
    clearInterval(this.#heartbeat);
    this.#wake?.();
    await this.#reconnecting?.catch(() => undefined);
    if (this.#client) await endWithin(this.#client, CLOSE_TIMEOUT_MS);
  }

  /** Opens a connection and LISTENs, then clears every cache (it may have missed changes), then trusts again. */
  async #listen(): Promise<void> {
    const client = new pg.Client(this.#config);
    client.on('error', () => undefined);
    // Any connection's notifications are applied: one invalidation too many is harmless.
    client.on('notification', (message) => this.#heard(message.payload ?? ''));
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGE_CHANNEL}`);
    } catch (error) {
      await endWithin(client, CLOSE_TIMEOUT_MS);
      throw error;
    }
    if (this.#closed) {
      await endWithin(client, CLOSE_TIMEOUT_MS);
      return;
    }
    this.#client = client;
    client.on('end', () => {
      if (client === this.#client) this.#lost();
    });
    this.#clearAll();
    this.#confirmedAt = performance.now();
    this.#listening = true;
  }

  #heard(payload: string): void {
    if (payload.startsWith(this.#syncPrefix)) {
      this.#syncs.get(payload)?.();
      return;
    }
    // A TRUNCATE names no rows: everything any cache holds may be gone.
    if (payload === CLEAR_ALL) return this.#clearAll();
    this.#apply(payload);
  }

  #apply(change: string): void {
    const kind = change.slice(0, change.indexOf(':'));
    for (const subscriber of this.#subscribers) {
      if (subscriber.kinds.includes(kind as ChangeKind)) subscriber.invalidate(change);
    }
  }

  #clearAll(): void {
    for (const subscriber of this.#subscribers) subscriber.clear();
  }

  async #beat(): Promise<void> {
    const client = this.#client;
    if (!client || !this.#listening || this.#beating) return;
    this.#beating = true;
    try {
      await pingWithin(client, HEARTBEAT_TIMEOUT_MS);
      if (client === this.#client) this.#confirmedAt = performance.now();
    } catch {
      if (client === this.#client) this.#lost();
    } finally {
      this.#beating = false;
    }
  }

  /** Stops trusting the caches at once (and clears them), and reconnects in the background. */
  #lost(): void {
    if (this.#closed) return;
    this.#listening = false;
    this.#clearAll();
    if (this.#reconnecting) return;
    this.logger.warn('lost the change feed connection; caches are bypassed until it is back');
    this.#reconnecting = this.#reconnect().finally(() => {
      this.#reconnecting = null;
    });
  }

  async #reconnect(): Promise<void> {
    const previous = this.#client;
    this.#client = null;
    if (previous) await endWithin(previous, CLOSE_TIMEOUT_MS);
    while (!this.#closed) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, RECONNECT_DELAY_MS).unref();
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
      if (this.#closed) return;
      try {
        await this.#listen();
        if (!this.#closed) this.logger.info('the change feed is listening again; caches were cleared');
        return;
      } catch {
        // Tried again after the delay.
      }
    }
  }
}
