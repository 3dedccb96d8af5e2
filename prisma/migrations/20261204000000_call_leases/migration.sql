-- Crash safety for metering: everything a call holds while it runs — the quota units it reserved and its
-- idempotency key — is a lease owned by the server process running it. A process that dies leaves leases
-- whose owner is gone; any server gives them back (src/metering/metering-service.ts, the sweep).
--
-- A server process is alive while it holds a session advisory lock (class 7275002, key: its instance number
-- from mm_server_instance_seq) on a connection of its own (src/db/server-instance.ts). PostgreSQL drops the lock
-- the moment that connection ends: at once when the process dies, within its TCP keepalive bound when the
-- network does.
CREATE SEQUENCE "mm_server_instance_seq" AS integer;

-- The instance numbers of the live server processes of this database.
CREATE FUNCTION mm_live_server_instances() RETURNS TABLE (instance integer) LANGUAGE sql STABLE AS $$
  SELECT l.objid::bigint::integer FROM pg_locks l
  WHERE l.locktype = 'advisory' AND l.classid = 7275002 AND l.objsubid = 2 AND l.granted
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
$$;

-- Quota units reserved by a call that has not finished: given back when it fails, kept (deleted in the same
-- statement as its billed usage record) when it succeeds, given back by the sweep when its owner died. A usage
-- record bills only by deleting its call's lease, so a lease is either billed or given back, never both.
CREATE TABLE "quota_leases" (
    "prediction_id" UUID NOT NULL,
    "contract_id" UUID NOT NULL,
    "units" INTEGER NOT NULL,
    -- The quota period the units were taken from: they are only ever given back to it.
    "period_start" TIMESTAMPTZ(3) NOT NULL,
    "server_instance" INTEGER NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "quota_leases_pkey" PRIMARY KEY ("prediction_id")
);
-- No other index: the table holds only calls in flight (a row lives for one call), so the ledger and the sweep
-- read it whole, and each call saves an index insert and delete on the hot path.

-- The call that holds an idempotency key and its server process; keys claimed before this migration have
-- neither and count as held by a dead process.
ALTER TABLE "idempotency_keys" ADD COLUMN "prediction_id" UUID, ADD COLUMN "server_instance" INTEGER;
CREATE INDEX "idempotency_keys_unanswered_idx" ON "idempotency_keys"("server_instance") WHERE "response" IS NULL;

-- Whether a server process still holds its liveness lock.
CREATE FUNCTION mm_server_instance_alive(p_instance integer) RETURNS boolean LANGUAGE sql STABLE AS $$
  SELECT EXISTS (SELECT 1 FROM mm_live_server_instances() l WHERE l.instance = p_instance)
$$;

-- Gives reserved units back to the quota periods they were taken from (after a month turn the new period never
-- had them). Rows are locked in contract-id order, as batches of mm_reserve_predictions lock them: the statements
-- that reserve, record and sweep never deadlock one another.
CREATE FUNCTION mm_give_back_units(p_contracts uuid[], p_periods timestamptz[], p_units integer[])
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  given record;
  total integer := 0;
BEGIN
  FOR given IN
    SELECT t.contract_id, t.period_start, sum(t.units)::int AS units
    FROM unnest(p_contracts, p_periods, p_units) AS t(contract_id, period_start, units)
    WHERE t.contract_id IS NOT NULL
    GROUP BY t.contract_id, t.period_start
    ORDER BY t.contract_id, t.period_start
  LOOP
    UPDATE contracts SET predictions_used = greatest(0, predictions_used - given.units)
    WHERE id = given.contract_id AND period_start = given.period_start;
    IF FOUND THEN total := total + given.units; END IF;
  END LOOP;
  RETURN total;
END
$$;

-- mm_reserve_predictions now takes the call's lease in the same statement as its units: the same rules as
-- before (see 20261129020000_licensing_metering), plus the lease row when the call fits.
DROP FUNCTION mm_reserve_predictions(uuid, integer);
CREATE FUNCTION mm_reserve_predictions(p_contract uuid, p_units integer, p_prediction uuid, p_instance integer)
RETURNS TABLE (reserved boolean, active boolean, rate_limited boolean, retry_after_ms integer, used integer,
               quota integer, period_start timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  month_start timestamptz := date_trunc('month', now(), 'UTC');
BEGIN
  -- The reservation need not wait for its own WAL flush: no answer is sent before the call's usage record
  -- commits synchronously, and that flush covers this earlier commit too. A crash of the database in between
  -- loses the reservation and its lease together.
  PERFORM set_config('synchronous_commit', 'off', true);
  RETURN QUERY
  WITH current AS (
    SELECT c.id,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN 0 ELSE c.predictions_used END AS used_now,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN month_start ELSE c.period_start END AS start_now,
      c.rate_window_start IS NULL OR c.rate_window_start <= now() - interval '1 minute' AS new_window
    -- NO KEY UPDATE: usage records' foreign-key checks (KEY SHARE) on the contract never wait for it.
    FROM contracts c WHERE c.id = p_contract FOR NO KEY UPDATE
  ), taken AS (
    UPDATE contracts c SET
      predictions_used = cur.used_now + p_units,
      period_start = cur.start_now,
      rate_window_start = CASE WHEN cur.new_window THEN now() ELSE c.rate_window_start END,
      rate_window_count = CASE WHEN cur.new_window THEN 1 ELSE c.rate_window_count + 1 END
    FROM current cur
    WHERE c.id = cur.id
      AND c.status = 'ACTIVE'
      AND (c.expires_at IS NULL OR c.expires_at > now())
      AND (c.prediction_quota IS NULL OR cur.used_now + p_units <= c.prediction_quota)
      AND (c.rate_limit_per_minute IS NULL OR cur.new_window OR c.rate_window_count < c.rate_limit_per_minute)
    RETURNING c.predictions_used, c.prediction_quota, c.period_start
  ), leased AS (
    INSERT INTO quota_leases (prediction_id, contract_id, units, period_start, server_instance)
    SELECT p_prediction, p_contract, p_units, t.period_start, p_instance FROM taken t
  )
  SELECT true, true, false, 0, t.predictions_used, t.prediction_quota, t.period_start::timestamptz FROM taken t;
  IF NOT FOUND THEN
    RETURN QUERY
    SELECT false,
      c.status = 'ACTIVE' AND (c.expires_at IS NULL OR c.expires_at > now()),
      c.rate_limit_per_minute IS NOT NULL AND c.rate_window_start > now() - interval '1 minute'
        AND c.rate_window_count >= c.rate_limit_per_minute,
      greatest(0, ceil(extract(epoch FROM c.rate_window_start + interval '1 minute' - now()) * 1000))::int,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN 0 ELSE c.predictions_used END,
      c.prediction_quota,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN month_start ELSE c.period_start END
    FROM contracts c WHERE c.id = p_contract;
  END IF;
END
$$;

-- The usage ledger, now exact at every moment: a contract's quota counter equals the billable units of the
-- records counted in its current period plus the units its running calls hold as leases in that period.
DROP FUNCTION mm_usage_ledger_discrepancies();
CREATE FUNCTION mm_usage_ledger_discrepancies()
RETURNS TABLE (contract_id uuid, predictions_used integer, recorded_units integer, leased_units integer,
               period_start timestamptz)
LANGUAGE sql STABLE AS $$
  SELECT c.id, c.predictions_used, coalesce(r.units, 0)::int, coalesce(l.units, 0)::int, c.period_start
  FROM contracts c
  LEFT JOIN LATERAL (
    SELECT sum(u.billable_units) AS units FROM usage_records u
    WHERE u.contract_id = c.id AND u.quota_period_start = c.period_start
  ) r ON true
  LEFT JOIN LATERAL (
    SELECT sum(q.units) AS units FROM quota_leases q WHERE q.contract_id = c.id AND q.period_start = c.period_start
  ) l ON true
  WHERE c.predictions_used <> coalesce(r.units, 0) + coalesce(l.units, 0)
  ORDER BY c.id
$$;
