// This server process's liveness as the database sees it: a session advisory lock held on a connection of its
// own, keyed by an instance number. What the process holds on behalf of running calls (quota leases,
// idempotency keys) carries that number; when the lock is gone — the process died, or lost its connection — any
// server may take them back (mm_live_server_instances). PostgreSQL drops the lock as soon as the connection ends,
// so a killed process is seen dead at once, with no heartbeat timeout to wait for.
import pg from 'pg';
import type { Logger } from '../server/logger.js';
import { dedicatedClientConfig, endWithin, pingWithin } from './dedicated-connection.js';

/** The advisory lock class of server instances (the audit chain uses 7275001). */
const LIVENESS_LOCK_CLASS = 7275002;
const PING_INTERVAL_MS = 5_000;
/** Well under the database's keepalive bound: a broken connection is noticed (and re-opened) before its lock drops. */
const PING_TIMEOUT_MS = 3_000;
/** Closing the lock connection of a database that does not answer: past this, its socket is destroyed. */
const CLOSE_TIMEOUT_MS = 2_000;
const RECONNECT_DELAY_MS = 1_000;
/**
 * The database's side of the lock connection: a peer that vanished without closing (host down, network cut) is
 * detected by TCP keepalive after about idle + interval × count = 20 s, and its lock dropped.
 */
const KEEPALIVE_SETTINGS = `SET tcp_keepalives_idle = 5; SET tcp_keepalives_interval = 5; SET tcp_keepalives_count = 3`;

export class ServerInstance {
  #id: number;
  #client: pg.Client;
  readonly #ping: NodeJS.Timeout;
  #closed = false;
  #reconnecting: Promise<void> | null = null;

  private constructor(
    private readonly config: pg.ClientConfig,
    private readonly logger: Logger,
    id: number,
    client: pg.Client,
  ) {
    this.#id = id;
    this.#client = client;
    this.#watch(client);
    // Queries on the lock connection notice a silently broken connection (and then reconnect).
    this.#ping = setInterval(() => void this.#pingOnce(), PING_INTERVAL_MS);
    this.#ping.unref();
  }

  /** Takes a new instance number and its liveness lock, on a connection opened with the pool's settings. */
  static async register(pool: pg.Pool, logger: Logger): Promise<ServerInstance> {
    const config = dedicatedClientConfig(pool);
    const { id, client } = await ServerInstance.#lock(config, null);
    logger.debug({ serverInstance: id }, 'server instance registered');
    return new ServerInstance(config, logger, id, client);
  }

  /** The number that marks what this process holds; it changes only if the lock was lost and not regained. */
  get id(): number {
    return this.#id;
  }

  /** Releases the lock: whatever this process still holds is then free for any server to take back. */
  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#ping);
    await this.#reconnecting?.catch(() => undefined);
    await endWithin(this.#client, CLOSE_TIMEOUT_MS);
  }

  async #pingOnce(): Promise<void> {
    await pingWithin(this.#client, PING_TIMEOUT_MS).catch(() => this.#lost());
  }

  /**
   * Opens a lock connection and takes `wanted`'s lock (the same number as before a lost connection, so the
   * process's calls keep their leases), or a new number when that one is not free: the old connection may still
   * hold it until the database notices it is gone.
   */
  static async #lock(config: pg.ClientConfig, wanted: number | null): Promise<{ id: number; client: pg.Client }> {
    const client = new pg.Client(config);
    client.on('error', () => undefined);
    try {
      await client.connect();
      await client.query(KEEPALIVE_SETTINGS);
      if (wanted !== null) {
        const { rows } = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1, $2) AS locked', [
          LIVENESS_LOCK_CLASS,
          wanted,
        ]);
        if (rows[0]!.locked) return { id: wanted, client };
      }
      const { rows } = await client.query<{ id: number; locked: boolean }>(
        `SELECT id, pg_try_advisory_lock($1, id) AS locked FROM (SELECT nextval('mm_server_instance_seq')::int AS id) n`,
        [LIVENESS_LOCK_CLASS],
      );
      if (!rows[0]!.locked) throw new Error(`the liveness lock of new server instance ${rows[0]!.id} is taken`);
      return { id: rows[0]!.id, client };
    } catch (error) {
      await client.end().catch(() => undefined);
      throw error;
    }
  }

  #watch(client: pg.Client): void {
    client.on('end', () => {
      if (client === this.#client) this.#lost();
    });
  }

  #lost(): void {
    if (this.#closed || this.#reconnecting) return;
    this.logger.warn({ serverInstance: this.#id }, 'lost the server-instance lock connection; reconnecting');
    this.#reconnecting = this.#reconnect().finally(() => {
      this.#reconnecting = null;
    });
  }

  async #reconnect(): Promise<void> {
    await endWithin(this.#client, CLOSE_TIMEOUT_MS);
    while (!this.#closed) {
      try {
        const { id, client } = await ServerInstance.#lock(this.config, this.#id);
        if (this.#closed) {
          await client.end().catch(() => undefined);
          return;
        }
        if (id !== this.#id) {
          this.logger.warn({ previous: this.#id, serverInstance: id }, 'server instance renumbered after reconnecting');
        }
        this.#id = id;
        this.#client = client;
        this.#watch(client);
        return;
      } catch {
        await new Promise((resolve) => setTimeout(resolve, RECONNECT_DELAY_MS).unref());
      }
    }
  }
}
