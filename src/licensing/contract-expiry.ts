// contract.expiring: the consumer is told 7 days before a contract expires, once per expiry date. The transaction
// that sets an expiry (activation) sends a job for expiry − 7 days; when it runs it emits only if the contract is
// still live with that same expiry and was not told yet, so a late, repeated or stale job emits nothing. A contract
// that expires in less than 7 days from its activation is told at once (its job is due already): the consumer
// learns its date while there is still time to act.
import { consumerSubject } from './contracts-service.js';
import type { Prisma } from '../db/database.js';
import { Prisma as Sql } from '../generated/prisma/client.js';
import { EventType, type EventOutbox } from '../events/outbox.js';
import type { JobKind, JobQueue, Transaction } from '../jobs/job-queue.js';

export const EXPIRY_NOTICE_DAYS = 7;

export const CONTRACT_EXPIRING_JOB: JobKind = {
  name: 'contract-expiring',
  retryLimit: 10,
  retryDelaySeconds: 30,
  retryBackoff: true,
  expireInSeconds: 60,
};

const DAY_MS = 86_400_000;

interface ExpiringJob {
  contractId: string;
  /** The expiry the notice is for (ISO 8601). */
  expiresAt: string;
}

export class ContractExpiryNotices {
  constructor(
    private readonly prisma: Prisma,
    private readonly jobs: JobQueue,
    private readonly events: EventOutbox,
  ) {}

  async start(): Promise<void> {
    await this.jobs.define(CONTRACT_EXPIRING_JOB);
    await this.jobs.work<ExpiringJob>(CONTRACT_EXPIRING_JOB.name, 1, (job) => this.#notify(job));
  }

  /** In the transaction that sets `expiresAt`: the notice's job, due 7 days before. */
  async schedule(tx: Transaction, contractId: string, expiresAt: Date): Promise<void> {
    const job: ExpiringJob = { contractId, expiresAt: expiresAt.toISOString() };
    await this.jobs.send(CONTRACT_EXPIRING_JOB.name, job, {
      client: tx,
      startAfter: new Date(expiresAt.getTime() - EXPIRY_NOTICE_DAYS * DAY_MS),
    });
  }

  /** After the scheduling transaction committed: a notice already due goes out now rather than at the next poll. */
  wake(): void {
    this.jobs.wake(CONTRACT_EXPIRING_JOB.name);
  }

  async #notify({ contractId, expiresAt }: ExpiringJob): Promise<void> {
    const told = await this.#tell(Sql.sql`c.id = ${contractId}::uuid AND c.expires_at = ${expiresAt}::timestamptz`);
    if (told > 0) this.events.wake();
  }

  /**
   * Tells every contract whose notice is due and was not sent (activated before notices existed, or its job gave
   * up): the job's own guard, so a sweep racing a job or another replica's sweep tells each expiry once.
   */
  async sweep(): Promise<number> {
    const told = await this.#tell(Sql.sql`c.expires_at <= now() + ${EXPIRY_NOTICE_DAYS} * interval '1 day'`);
    if (told > 0) this.events.wake();
    return told;
  }

  async #tell(which: Sql.Sql): Promise<number> {
    return this.prisma.$transaction(async (tx) => {
      const contracts = await tx.$queryRaw<
        {
          id: string;
          consumer_id: string;
          model_id: string;
          plan_id: string;
          status: string;
          visibility: string;
          expires_at: Date;
        }[]
      >`UPDATE contracts c SET expiry_notified_for = c.expires_at
        FROM models m
        WHERE ${which} AND m.id = c.model_id
          AND c.expires_at > now() AND c.status IN ('ACTIVE', 'SUSPENDED')
          AND c.expiry_notified_for IS DISTINCT FROM c.expires_at
        RETURNING c.id, c.consumer_id, c.model_id, c.plan_id, c.status::text, m.visibility::text, c.expires_at`;
      await this.events.emit(
        tx,
        contracts.map((contract) => ({
          type: EventType.CONTRACT_EXPIRING,
          accountId: contract.consumer_id,
          data: {
            contractId: contract.id,
            ...consumerSubject(contract.visibility, contract.model_id, contract.plan_id),
            status: contract.status,
            expiresAt: contract.expires_at.toISOString(),
          },
        })),
      );
      return contracts.length;
    });
  }
}
