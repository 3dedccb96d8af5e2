// A plan's terms, validated once, and their frozen copy on a contract with a stable digest.
import { createHash } from 'node:crypto';
import semver from 'semver';
import type { LicensePlan, QuotaPeriod, UpgradePolicy } from '../generated/prisma/client.js';
import { BadUserInputError } from '../server/errors.js';

export interface Terms {
  planName: string;
  planRevision: number;
  versions: string;
  pricePerPrediction: string;
  currency: string;
  predictionQuota: number | null;
  period: QuotaPeriod;
  rateLimitPerMinute: number | null;
  durationDays: number | null;
  commercialUse: boolean;
  downloadAllowed: boolean;
  requiresApproval: boolean;
  explanationsAllowed: boolean;
  pricePerExplanation: string;
  /** Quota units one explained instance takes. */
  explanationQuotaUnits: number;
  /** How the contract takes a new version of the alias it is pinned to. */
  upgradePolicy: UpgradePolicy;
  /** Days an offered upgrade waits before it applies (FOLLOW_ALIAS_AFTER_GRACE), else null. */
  upgradeGraceDays: number | null;
}

/** A contract's explanation terms when its frozen terms predate them: no explanations. */
export const EXPLANATION_TERMS_BEFORE_EXPLANATIONS = {
  explanationsAllowed: false,
  pricePerExplanation: '0',
  explanationQuotaUnits: 10,
} as const;

const PRICE = /^(0|[1-9]\d{0,9})(\.\d{1,10})?$/;
const CURRENCY = /^[A-Z]{3}$/;

/** Throws BAD_USER_INPUT naming `field` for a price that is not a non-negative decimal (≤ 10 decimals). */
export function normalisePrice(value: string, field: string): string {
  const trimmed = value.trim();
  if (!PRICE.test(trimmed)) throw new BadUserInputError('price must be a decimal string such as 0.0010', field);
  return trimmed;
}

export function normaliseCurrency(value: string, field: string): string {
  const code = value.trim().toUpperCase();
  if (!CURRENCY.test(code)) throw new BadUserInputError('currency must be an ISO 4217 code such as EUR', field);
  return code;
}

export function normaliseRange(value: string, field: string): string {
  const range = value.trim();
  if (range.length === 0 || range.length > 200 || semver.validRange(range) === null) {
    throw new BadUserInputError('versions must be a semver range such as ^1.0.0 or *', field);
  }
  return range;
}

export function positiveOrNull(value: number | null | undefined, field: string, max = 2_000_000_000): number | null {
  if (value === null || value === undefined) return null;
  if (!Number.isInteger(value) || value < 1 || value > max)
    throw new BadUserInputError(`${field} must be 1 to ${max}, or null`, field);
  return value;
}

export function termsOf(plan: LicensePlan): Terms {
  return {
    planName: plan.name,
    planRevision: plan.revision,
    versions: plan.versions,
    pricePerPrediction: plan.pricePerPrediction.toString(),
    currency: plan.currency,
    predictionQuota: plan.predictionQuota,
    period: plan.period,
    rateLimitPerMinute: plan.rateLimitPerMinute,
    durationDays: plan.durationDays,
    commercialUse: plan.commercialUse,
    downloadAllowed: plan.downloadAllowed,
    requiresApproval: plan.requiresApproval,
    explanationsAllowed: plan.explanationsAllowed,
    pricePerExplanation: plan.pricePerExplanation.toString(),
    explanationQuotaUnits: plan.explanationQuotaUnits,
    upgradePolicy: plan.upgradePolicy,
    upgradeGraceDays: plan.upgradeGraceDays,
  };
}

/** A contract's upgrade terms when its frozen terms predate them: it followed `latest` as it moved. */
export const UPGRADE_TERMS_BEFORE_UPGRADES = { upgradePolicy: 'FOLLOW_ALIAS', upgradeGraceDays: null } as const;

/** SHA-256 of the terms with keys in a fixed order: what certificates sign. */
export function termsDigest(terms: Terms): string {
  const canonical = JSON.stringify(Object.fromEntries(Object.entries(terms).sort(([a], [b]) => a.localeCompare(b))));
  return createHash('sha256').update(canonical).digest('hex');
}

/** Whether a version number falls in a contract's range (prereleases included when the range names them). */
export function covers(range: string, version: string): boolean {
  return semver.satisfies(version, range, { includePrerelease: true });
}
