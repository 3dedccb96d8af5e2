-- Explanations (the `explain` mutation): a plan may allow them, at its own price, and each explained instance
-- counts against the contract's quota by a flat weight the plan sets (explanation_quota_units), whatever the
-- method costs inside, so a buyer can predict it. Contracts freeze these terms like the others; contracts made
-- before this migration do not allow explanations.
ALTER TABLE "license_plans"
  ADD COLUMN "explanations_allowed" BOOLEAN NOT NULL DEFAULT false,
  ADD COLUMN "price_per_explanation" DECIMAL(20,10) NOT NULL DEFAULT 0,
  ADD COLUMN "explanation_quota_units" INTEGER NOT NULL DEFAULT 10;
ALTER TABLE "contracts"
  ADD COLUMN "explanations_allowed" BOOLEAN NOT NULL DEFAULT false,
  ADD COLUMN "price_per_explanation" DECIMAL(20,10) NOT NULL DEFAULT 0,
  ADD COLUMN "explanation_quota_units" INTEGER NOT NULL DEFAULT 10;
ALTER TABLE "license_plans" ADD CONSTRAINT "license_plans_explanation_quota_units_positive"
  CHECK ("explanation_quota_units" BETWEEN 1 AND 1000000);

-- What a usage record meters. An explanation's `units` are its explained instances, billed at the contract's
-- price per explanation; its `quota_units` (instances × the contract's explanation_quota_units) are what it
-- took from the quota. For predictions the two are equal.
CREATE TYPE "UsageKind" AS ENUM ('PREDICTION', 'EVALUATION', 'EXPLANATION');
ALTER TABLE "usage_records"
  ADD COLUMN "kind" "UsageKind" NOT NULL DEFAULT 'PREDICTION',
  ADD COLUMN "quota_units" INTEGER NOT NULL DEFAULT 0;

-- Records written before this column took from the quota exactly what they billed. The append-only trigger is
-- lifted only for this backfill.
ALTER TABLE "usage_records" DISABLE TRIGGER usage_records_no_update_or_delete;
UPDATE "usage_records" SET quota_units = billable_units WHERE billable_units > 0;
ALTER TABLE "usage_records" ENABLE TRIGGER usage_records_no_update_or_delete;

-- A record takes from the quota exactly when it bills.
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_quota_units_when_billed"
  CHECK ((billable_units = 0) = (quota_units = 0));

-- The usage ledger, as in 20261204000000_call_leases, now counting the quota units of the records (what their
-- leases took), which for explanations differ from their billed units.
DROP FUNCTION mm_usage_ledger_discrepancies();
CREATE FUNCTION mm_usage_ledger_discrepancies()
RETURNS TABLE (contract_id uuid, predictions_used integer, recorded_units integer, leased_units integer,
               period_start timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT c.id, c.predictions_used, coalesce(r.units, 0)::int, coalesce(l.units, 0)::int, c.period_start
  FROM contracts c
  LEFT JOIN LATERAL (
    SELECT sum(u.quota_units) AS units FROM usage_records u
    WHERE u.contract_id = c.id AND u.quota_period_start = c.period_start
  ) r ON true
  LEFT JOIN LATERAL (
    SELECT sum(q.units) AS units FROM quota_leases q WHERE q.contract_id = c.id AND q.period_start = c.period_start
  ) l ON true
  WHERE c.predictions_used <> coalesce(r.units, 0) + coalesce(l.units, 0)
  ORDER BY c.id
$$;
