// Who may run a model version: its owner and admins freely; anyone else only under an ACTIVE, unexpired
// contract whose version range covers the version. Read on every call (no cache), so suspension, revocation,
// expiry and range changes take effect on the next call.
import type pg from 'pg';
import type { Actor } from '../auth/principal.js';
import type { Model, ModelVersion } from '../generated/prisma/client.js';
import type { BillableContract } from '../metering/metering-service.js';
import { canManage } from '../models/model-policy.js';
import { BadUserInputError, ForbiddenError } from '../server/errors.js';
import { covers } from './terms.js';

export interface PredictGrant {
  /** The contract the call is billed to; null for the model's owner and admins. */
  contract: BillableContract | null;
}

interface ContractRow {
  id: string;
  status: string;
  expired: boolean;
  version_range: string;
  unit_price: string;
  currency: string;
  rate_limit_per_minute: number | null;
  period: 'MONTH' | 'TOTAL';
}

// When no contract can be used, the reason reported is the most useful one the caller holds.
const REASON_ORDER = ['VERSION_NOT_COVERED', 'SUSPENDED', 'PENDING', 'EXPIRED', 'REVOKED'] as const;
const REASON_TEXT: Record<(typeof REASON_ORDER)[number] | 'NO_CONTRACT', string> = {
  VERSION_NOT_COVERED: 'Your contract does not cover this version',
  SUSPENDED: 'Your contract is suspended',
  PENDING: 'Your contract is waiting for the owner’s approval',
  EXPIRED: 'Your contract has expired',
  REVOKED: 'Your contract was revoked',
  NO_CONTRACT: 'You have no licence for this model',
};

export class LicenceAuthorizer {
  constructor(private readonly pool: pg.Pool) {}

  async authorize(
    actor: Actor,
    model: Model,
    version: ModelVersion,
    contractId: string | null | undefined,
  ): Promise<PredictGrant> {
    const principal = actor.principal;
    if (canManage(principal, model)) return { contract: null };
    if (principal.kind === 'anonymous') throw new ForbiddenError(REASON_TEXT.NO_CONTRACT, { reason: 'NO_CONTRACT' });
    const { rows } = await this.pool.query<ContractRow>({
      name: 'mm_predict_contracts',
      text: `SELECT id, status, expires_at IS NOT NULL AND expires_at <= now() AS expired, version_range,
                    price_per_prediction::text AS unit_price, currency, rate_limit_per_minute, period
             FROM contracts WHERE consumer_id = $1 AND model_id = $2 ORDER BY created_at, id`,
      values: [principal.userId, model.id],
    });
    const candidates = contractId ? rows.filter((row) => row.id === contractId) : rows;
    if (contractId && candidates.length === 0) {
      throw new BadUserInputError('contractId is not one of your contracts for this model', 'input.contractId');
    }
    const reasons = new Set<string>();
    for (const row of candidates) {
      const reason =
        row.status === 'ACTIVE'
          ? row.expired
            ? 'EXPIRED'
            : covers(row.version_range, version.version)
              ? null
              : 'VERSION_NOT_COVERED'
          : row.status;
      if (reason === null) {
        return {
          contract: {
            id: row.id,
            unitPrice: row.unit_price,
            currency: row.currency,
            rateLimitPerMinute: row.rate_limit_per_minute,
            period: row.period,
          },
        };
      }
      reasons.add(reason);
    }
    const reason = REASON_ORDER.find((r) => reasons.has(r)) ?? 'NO_CONTRACT';
    throw new ForbiddenError(REASON_TEXT[reason], { reason });
  }
}
