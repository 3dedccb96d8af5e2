// Who may run a model version: its owner and admins freely; anyone else only under an ACTIVE, unexpired
// contract whose version range covers the version (and, to explain it, whose terms allow explanations); and which
// version a licensee's call naming none is served (its contract's pinned version). A caller's contracts for a model are cached until the change
// feed reports a change of them (created, status, expiry, range, terms; on this replica at once, on the others as
// soon as the notification arrives), and read from the database while the feed is not trusted. The quota
// reservation still re-checks status and expiry in the same statement on every call; a refused reservation makes
// the caller choose again from fresh rows (`fresh`), and so does any refusal found in the cache.
import type pg from 'pg';
import type { Actor, Principal } from '../auth/principal.js';
import { Change, type ChangeFeed } from '../db/change-feed.js';
import { FeedCache } from '../db/feed-cache.js';
import type { Contract, Model, ModelVersion } from '../generated/prisma/client.js';
import type { BillableContract } from '../metering/metering-service.js';
import { canManage, type ModelAccess } from '../models/model-policy.js';
import { BadUserInputError, ForbiddenError } from '../server/errors.js';
import { covers } from './terms.js';

/** Quota units one predicted instance takes. */
export const PREDICTION_QUOTA_UNITS = 1;

/** What a call does with the version: each is licensed, priced and counted against the quota by its own terms. */
export type LicensedUse = 'PREDICT' | 'EXPLAIN';

export interface PredictGrant {
  /**
   * The contract the call is billed to, at its price for the use (per prediction or per explanation); null for
   * the model's owner and admins.
   */
  contract: BillableContract | null;
  /** Quota units one instance takes: 1 for predictions, the contract's explanationQuotaUnits for explanations. */
  quotaUnitsPerInstance: number;
}

interface ContractRow {
  id: string;
  status: string;
  /** Epoch milliseconds; expiry is judged when the row is used, not when it was read. */
  expires_at_ms: number | null;
  version_range: string;
  unit_price: string;
  currency: string;
  rate_limit_per_minute: number | null;
  period: 'MONTH' | 'TOTAL';
  explanations_allowed: boolean;
  price_per_explanation: string;
  explanation_quota_units: number;
  /** The alias the contract follows; null when pinned to an exact version. */
  pinned_alias: string | null;
  /** The number of the version the contract is served (calls naming no version, or its alias); null for none. */
  pinned_version: string | null;
}

// When no contract can be used, the reason reported is the most useful one the caller holds.
const REASON_ORDER = [
  'EXPLANATIONS_NOT_ALLOWED',
  'VERSION_NOT_COVERED',
  'SUSPENDED',
  'PENDING',
  'EXPIRED',
  'REVOKED',
] as const;
const REASON_TEXT: Record<(typeof REASON_ORDER)[number] | 'NO_CONTRACT', string> = {
  EXPLANATIONS_NOT_ALLOWED: 'Your contract does not allow explanations',
  VERSION_NOT_COVERED: 'Your contract does not cover this version',
  SUSPENDED: 'Your contract is suspended',
  PENDING: 'Your contract is waiting for the owner’s approval',
  EXPIRED: 'Your contract has expired',
  REVOKED: 'Your contract was revoked',
  NO_CONTRACT: 'You have no licence for this model',
};

export class LicenceAuthorizer {
  /** A caller's contracts for a model, by the change that makes them stale (Change.contracts). */
  readonly #contracts: FeedCache<ContractRow[]>;

  constructor(
    private readonly pool: pg.Pool,
    changes: ChangeFeed,
  ) {
    this.#contracts = new FeedCache(changes, {
      max: 50_000,
      kinds: ['c'],
      dependsOn: (_rows, key) => [key],
    });
  }

  async authorize(
    actor: Actor,
    model: Model,
    version: ModelVersion,
    contractId: string | null | undefined,
    options: { fresh?: boolean; use?: LicensedUse } = {},
  ): Promise<PredictGrant> {
    const principal = actor.principal;
    const use = options.use ?? 'PREDICT';
    if (canManage(principal, model)) return { contract: null, quotaUnitsPerInstance: PREDICTION_QUOTA_UNITS };
    if (principal.kind === 'anonymous') throw new ForbiddenError(REASON_TEXT.NO_CONTRACT, { reason: 'NO_CONTRACT' });
    const key = Change.contracts(principal.userId, model.id);
    const cached = options.fresh ? undefined : this.#contracts.get(key);
    const fromCache = cached && choose(cached, version, contractId, use);
    if (fromCache && !(fromCache instanceof Error)) return fromCache;
    const rows = (await this.#contracts.load(key, () => this.#read(principal.userId, model.id)))!;
    const chosen = choose(rows, version, contractId, use);
    if (chosen instanceof Error) throw chosen;
    return chosen;
  }

  /**
   * The version a licensee's call is served instead of what `ref` resolves to (`requested`), and the contract that
   * pins it: the contract `authorize` would choose (the named one, else the oldest usable one, by the same rules,
   * judged against the version each contract would serve), when the call names no version or names the alias that
   * contract is pinned to (upgrades-service.ts). Null when the reference is served as it resolves: owners and
   * admins, an explicit version number ("try it"), another alias, or a chosen contract without a pinned version.
   * Read from the same cached rows as `authorize`.
   */
  async pinnedVersion(
    actor: Actor,
    model: Model,
    ref: string | null | undefined,
    requested: ModelVersion | null,
    contractId: string | null | undefined,
    use: LicensedUse = 'PREDICT',
  ): Promise<{ version: string; contractId: string } | null> {
    const principal = actor.principal;
    if (principal.kind === 'anonymous' || canManage(principal, model)) return null;
    const key = Change.contracts(principal.userId, model.id);
    const rows =
      this.#contracts.get(key) ?? (await this.#contracts.load(key, () => this.#read(principal.userId, model.id)))!;
    const wanted = ref?.trim().toLowerCase();
    const now = Date.now();
    for (const row of contractId ? rows.filter((r) => r.id === contractId) : rows) {
      const pin = wanted === undefined || wanted === row.pinned_alias ? row.pinned_version : null;
      const serves = pin ?? requested?.version;
      if (serves === undefined || refusal(row, serves, use, now) !== null) continue;
      return pin === null ? null : { version: pin, contractId: row.id };
    }
    return null;
  }

  async #read(consumerId: string, modelId: string): Promise<ContractRow[]> {
    const { rows } = await this.pool.query<ContractRow>({
      name: 'mm_predict_contracts',
      text: `SELECT c.id, c.status, (extract(epoch FROM c.expires_at) * 1000)::float8 AS expires_at_ms,
                    c.version_range, c.price_per_prediction::text AS unit_price, c.currency, c.rate_limit_per_minute,
                    c.period, c.explanations_allowed, c.price_per_explanation::text AS price_per_explanation,
                    c.explanation_quota_units, c.pinned_alias, pinned.version AS pinned_version
             FROM contracts c LEFT JOIN model_versions pinned ON pinned.id = c.pinned_version_id
             WHERE c.consumer_id = $1 AND c.model_id = $2 ORDER BY c.created_at, c.id`,
      values: [consumerId, modelId],
    });
    return rows;
  }
}

/** The first usable contract (oldest first, so the choice is deterministic), or the most useful refusal. */
function choose(
  rows: ContractRow[],
  version: ModelVersion,
  contractId: string | null | undefined,
  use: LicensedUse,
): PredictGrant | Error {
  const candidates = contractId ? rows.filter((row) => row.id === contractId) : rows;
  if (contractId && candidates.length === 0) {
    return new BadUserInputError('contractId is not one of your contracts for this model', 'input.contractId');
  }
  const reasons = new Set<string>();
  const now = Date.now();
  for (const row of candidates) {
    const reason = refusal(row, version.version, use, now);
    if (reason === null) {
      const explain = use === 'EXPLAIN';
      return {
        contract: {
          id: row.id,
          unitPrice: explain ? row.price_per_explanation : row.unit_price,
          currency: row.currency,
          rateLimitPerMinute: row.rate_limit_per_minute,
          period: row.period,
        },
        quotaUnitsPerInstance: explain ? row.explanation_quota_units : PREDICTION_QUOTA_UNITS,
      };
    }
    reasons.add(reason);
  }
  return licenceRefusal(REASON_ORDER.find((r) => reasons.has(r)) ?? 'NO_CONTRACT');
}

/** FORBIDDEN for a call no contract pays for, naming why (`reason`: a contract's status, EXPIRED, NO_CONTRACT…). */
export function licenceRefusal(reason: keyof typeof REASON_TEXT): ForbiddenError {
  return new ForbiddenError(REASON_TEXT[reason], { reason });
}

/** Why a contract cannot pay for `use` of a version now, or null when it can. */
function refusal(row: ContractRow, version: string, use: LicensedUse, now: number): string | null {
  return usageRefusal(
    {
      status: row.status,
      expiresAtMs: row.expires_at_ms,
      versionRange: row.version_range,
      explanationsAllowed: row.explanations_allowed,
    },
    version,
    use,
    now,
  );
}

/** What decides whether a contract can pay for a call. */
export interface UsableContract {
  status: string;
  /** Epoch milliseconds, or null for no expiry. */
  expiresAtMs: number | null;
  versionRange: string;
  explanationsAllowed: boolean;
}

/**
 * The one rule of contract usability: why `contract` cannot pay for `use` of `version` now, or null when it can.
 * Calls are authorized by it, and capability fields (Model.viewerCanPredict) answer by it.
 */
export function usageRefusal(contract: UsableContract, version: string, use: LicensedUse, now: number): string | null {
  return contract.status !== 'ACTIVE'
    ? contract.status
    : contract.expiresAtMs !== null && contract.expiresAtMs <= now
      ? 'EXPIRED'
      : !covers(contract.versionRange, version)
        ? 'VERSION_NOT_COVERED'
        : use === 'EXPLAIN' && !contract.explanationsAllowed
          ? 'EXPLANATIONS_NOT_ALLOWED'
          : null;
}

/** Whether the caller may predict with some serving version of `model`: a capability, by authorize's rules. */
export function canPredictAny(
  principal: Principal,
  model: ModelAccess,
  servingVersions: readonly string[],
  contracts: readonly Pick<Contract, 'status' | 'expiresAt' | 'versionRange' | 'explanationsAllowed'>[],
  now = Date.now(),
): boolean {
  if (canManage(principal, model)) return true;
  if (principal.kind === 'anonymous') return false;
  return contracts.some((contract) =>
    servingVersions.some(
      (version) =>
        usageRefusal(
          {
            status: contract.status,
            expiresAtMs: contract.expiresAt?.getTime() ?? null,
            versionRange: contract.versionRange,
            explanationsAllowed: contract.explanationsAllowed,
          },
          version,
          'PREDICT',
          now,
        ) === null,
    ),
  );
}
