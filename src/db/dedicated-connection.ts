// A connection of a server's own beside its pool, for what must stay on one connection: the liveness lock
// (server-instance.ts), the change feed's LISTEN (change-feed.ts). Opened with the pool's settings, watched by
// pings, ended within a bound.
import type pg from 'pg';

/** The pool's settings with TCP keepalive, named `applicationName` when given (to find it in pg_stat_activity). */
export function dedicatedClientConfig(pool: pg.Pool, applicationName?: string): pg.ClientConfig {
  const config: pg.ClientConfig = {
    ...(pool.options as pg.ClientConfig),
    keepAlive: true,
    keepAliveInitialDelayMillis: 10_000,
  };
  if (applicationName === undefined) return config;
  // The pool's URL names its own application, and pg lets the URL's parameters override the options.
  const url = new URL(config.connectionString!);
  url.searchParams.set('application_name', applicationName);
  return { ...config, connectionString: url.href };
}

/** `SELECT 1` answered within `timeoutMs`; rejects otherwise. */
export async function pingWithin(client: pg.Client, timeoutMs: number): Promise<void> {
  // pg reads query_timeout from a query's config too; its types do not declare it.
  await client.query({ text: 'SELECT 1', query_timeout: timeoutMs } as pg.QueryConfig);
}

/** Ends a connection, destroying its socket if the server does not answer the goodbye (a frozen database). */
export async function endWithin(client: pg.Client, ms: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const ended = client.end().catch(() => undefined);
  const timedOut = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), ms)));
  if ((await Promise.race([ended, timedOut])) === 'timeout') {
    // pg has no public way to drop a connection without the server's answer.
    (client as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
  }
  clearTimeout(timer);
}
