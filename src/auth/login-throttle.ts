// Brute-force protection for log-in, shared by all replicas through PostgreSQL (rate-limiter-flexible):
// an account is locked for a while after N consecutive failures, and one client address may fail at most
// M times an hour across all accounts. A success clears the account's counter.
import type pg from 'pg';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';

export interface LoginThrottleOptions {
  maxFailuresPerAccount: number;
  lockSeconds: number;
  maxFailuresPerIp: number;
}

export class LoginThrottle {
  readonly #byAccount: RateLimiterPostgres;
  readonly #byIp: RateLimiterPostgres;

  constructor(pool: pg.Pool, options: LoginThrottleOptions) {
    const store = { storeClient: pool, storeType: 'pool', tableName: 'rate_limits', tableCreated: true };
    this.#byAccount = new RateLimiterPostgres({
      ...store,
      keyPrefix: 'login_account',
      points: options.maxFailuresPerAccount,
      duration: options.lockSeconds,
      blockDuration: options.lockSeconds,
    });
    this.#byIp = new RateLimiterPostgres({
      ...store,
      keyPrefix: 'login_ip',
      points: options.maxFailuresPerIp,
      duration: 3600,
      blockDuration: 3600,
    });
  }

  /** Seconds until the next attempt is allowed, or 0 when it may go ahead. */
  async retryAfter(email: string, ip: string): Promise<number> {
    const [account, client] = await Promise.all([this.#byAccount.get(email), this.#byIp.get(ip)]);
    const blocked = [
      [account, this.#byAccount.points],
      [client, this.#byIp.points],
    ] as const;
    const waits = blocked
      .filter(([state, points]) => state !== null && state.consumedPoints >= points)
      .map(([state]) => (state as RateLimiterRes).msBeforeNext / 1000);
    return waits.length ? Math.max(...waits) : 0;
  }

  /** Counts a failure; returns seconds until the next try once this failure uses up a limit, else 0. */
  async recordFailure(email: string, ip: string): Promise<number> {
    const results = await Promise.allSettled([this.#byAccount.consume(email), this.#byIp.consume(ip)]);
    const waits = results.map((result) => {
      const state = result.status === 'fulfilled' ? result.value : result.reason;
      if (!(state instanceof RateLimiterRes)) throw state;
      return state.remainingPoints <= 0 ? state.msBeforeNext / 1000 : 0;
    });
    return Math.max(...waits);
  }

  async recordSuccess(email: string): Promise<void> {
    await this.#byAccount.delete(email);
  }
}
