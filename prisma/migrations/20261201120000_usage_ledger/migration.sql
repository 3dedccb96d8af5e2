-- Each usage record names the quota period its reservation was taken from (contracts.period_start at the
-- time), so quota counters and records can be compared exactly, even across a month turn: a call reserved
-- on the last millisecond of a month and recorded in the next still counts for the month it reserved in.
ALTER TABLE "usage_records" ADD COLUMN "quota_period_start" TIMESTAMPTZ(3);

-- Records written before this column: a monthly contract reserved in the calendar month of the record, a
-- TOTAL contract has one period. The append-only trigger is lifted only for this backfill.
ALTER TABLE "usage_records" DISABLE TRIGGER usage_records_no_update_or_delete;
UPDATE "usage_records" u
SET quota_period_start = CASE WHEN c.period = 'MONTH' THEN date_trunc('month', u.at, 'UTC') ELSE c.period_start END
FROM "contracts" c
WHERE c.id = u.contract_id AND u.billable_units > 0;
ALTER TABLE "usage_records" ENABLE TRIGGER usage_records_no_update_or_delete;

-- A billed record was always counted in some quota period.
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_billed_in_a_period"
  CHECK (billable_units = 0 OR quota_period_start IS NOT NULL);

-- The usage ledger: every contract's quota counter equals the billable units of the records counted in its
-- current period. billable_units is `units` for a call that succeeded under a contract and 0 otherwise; a
-- failed call's reservation is given back to the period it came from. Calls in flight hold reservations
-- without records yet, so this holds only when none is in flight. Returns the contracts where it does not.
CREATE FUNCTION mm_usage_ledger_discrepancies()
RETURNS TABLE (contract_id uuid, predictions_used integer, recorded_units integer, period_start timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT c.id, c.predictions_used, coalesce(r.units, 0)::int, c.period_start
  FROM contracts c
  LEFT JOIN LATERAL (
    SELECT sum(u.billable_units) AS units FROM usage_records u
    WHERE u.contract_id = c.id AND u.quota_period_start = c.period_start
  ) r ON true
  WHERE c.predictions_used <> coalesce(r.units, 0)
  ORDER BY c.id
$$;
