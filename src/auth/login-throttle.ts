// Brute-force protection for log-in, shared by all replicas through PostgreSQL (rate-limiter-flexible):
// an account is locked for a while after N attempts without a success, and one client address may fail at
// most M times an hour across all accounts. Sign-ups are capped per client address too: each one costs a
// password hash (~0.35 s of CPU), so unbounded sign-ups would starve everyone's log-ins.
//
// An attempt is taken (one atomic upsert per limit) *before* the password is checked, so under any
// concurrency at most N checks per account and M per address run in a window; a check-then-count design
// let a burst of concurrent guesses all through before the first failure was counted.
import { createHash } from 'node:crypto';
import type pg from 'pg';
import { RateLimiterPostgres, RateLimiterRes } from 'rate-limiter-flexible';

export interface LoginThrottleOptions {
  maxFailuresPerAccount: number;
  lockSeconds: number;
  maxFailuresPerIp: number;
  /** Sign-ups per client address per hour. */
  maxSignUpsPerIp: number;
}

/** A taken attempt, or a refusal with the seconds to wait. */
export type LoginAttempt = { allowed: true; lockSecondsIfFailed: number } | { allowed: false; retryAfter: number };

const TABLE = 'rate_limits';

/** Counted under a digest of the address or client address: fixed length, as rate_limits.key is VARCHAR(255). */
const limitKey = (value: string) => createHash('sha256').update(value).digest('base64url');

export class LoginThrottle {
  readonly #pool: pg.Pool;
  readonly #byAccount: RateLimiterPostgres;
  readonly #byIp: RateLimiterPostgres;
  readonly #signUpsByIp: RateLimiterPostgres;

  constructor(pool: pg.Pool, options: LoginThrottleOptions) {
    this.#pool = pool;
    const store = { storeClient: pool, storeType: 'pool', tableName: TABLE, tableCreated: true };
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
    this.#signUpsByIp = new RateLimiterPostgres({
      ...store,
      keyPrefix: 'signup_ip',
      points: options.maxSignUpsPerIp,
      duration: 3600,
    });
  }

  /** Takes one sign-up from the client address, before its password is hashed: seconds to wait, or 0. */
  async takeSignUp(ip: string): Promise<number> {
    const taken = await settle(this.#signUpsByIp.consume(limitKey(ip)));
    return taken.ok ? 0 : taken.state.msBeforeNext / 1000;
  }

  /**
   * Takes one attempt from the address, then from the account. A refused attempt gives back what it took,
   * so refusals neither use up an address's budget nor lock an account by themselves.
   */
  async take(email: string, ip: string): Promise<LoginAttempt> {
    const client = await settle(this.#byIp.consume(limitKey(ip)));
    if (!client.ok) return { allowed: false, retryAfter: client.state.msBeforeNext / 1000 };
    const account = await settle(this.#byAccount.consume(limitKey(email)));
    if (!account.ok) {
      await this.#byIp.reward(limitKey(ip));
      return { allowed: false, retryAfter: account.state.msBeforeNext / 1000 };
    }
    const lastOf = (state: RateLimiterRes) => (state.remainingPoints <= 0 ? state.msBeforeNext / 1000 : 0);
    return { allowed: true, lockSecondsIfFailed: Math.max(lastOf(account.state), lastOf(client.state)) };
  }

  /**
   * After a correct password: the address gets its attempt back, and the account's count is cleared unless
   * the limit was exceeded meanwhile (a concurrent burst was refused): then the lock stands for its window.
   */
  async succeeded(email: string, ip: string): Promise<void> {
    await Promise.all([
      this.#byIp.reward(limitKey(ip)),
      this.#pool.query({
        name: 'mm_login_throttle_clear',
        text: `DELETE FROM ${TABLE} WHERE key = $1 AND points <= $2`,
        values: [this.#byAccount.getKey(limitKey(email)), this.#byAccount.points],
      }),
    ]);
  }
}

/** rate-limiter-flexible rejects with a RateLimiterRes when over the limit, and with an Error on failure. */
async function settle(consumed: Promise<RateLimiterRes>): Promise<{ ok: boolean; state: RateLimiterRes }> {
  try {
    return { ok: true, state: await consumed };
  } catch (error) {
    if (error instanceof RateLimiterRes) return { ok: false, state: error };
    throw error;
  }
}
