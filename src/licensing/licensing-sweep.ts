// contract.expiring notices and grace-period upgrades run as one-off jobs sent by the change that makes them due.
// This pass catches up what those jobs miss (contracts activated before the jobs existed, a job that exhausted its
// retries): every LICENSING_SWEEP_INTERVAL_SECONDS each replica tells the due notices and applies the due
// upgrades itself, through the same guarded statements as the jobs, so a repeat changes nothing.
import type { Logger } from '../server/logger.js';
import type { ContractExpiryNotices } from './contract-expiry.js';
import type { UpgradesService } from './upgrades-service.js';

export class LicensingSweep {
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;

  constructor(
    private readonly expiry: ContractExpiryNotices,
    private readonly upgrades: UpgradesService,
    private readonly intervalSeconds: number,
    private readonly logger: Logger,
  ) {}

  start(): void {
    this.#timer = setInterval(() => {
      // A pass still running is not joined by another.
      this.#running ??= this.run()
        .catch((error: unknown) => this.logger.error({ err: error }, 'licensing sweep failed'))
        .finally(() => (this.#running = undefined));
    }, this.intervalSeconds * 1000);
  }

  /** Stops the timer and waits for a pass in progress (before the database closes under it). */
  async close(): Promise<void> {
    clearInterval(this.#timer);
    await this.#running;
  }

  async run(): Promise<void> {
    await this.expiry.sweep();
    await this.upgrades.applyDue();
  }
}
