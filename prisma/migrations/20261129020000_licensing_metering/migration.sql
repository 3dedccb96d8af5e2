-- CreateEnum
CREATE TYPE "QuotaPeriod" AS ENUM ('MONTH', 'TOTAL');

-- CreateEnum
CREATE TYPE "PlanStatus" AS ENUM ('ACTIVE', 'RETIRED');

-- CreateEnum
CREATE TYPE "ContractStatus" AS ENUM ('PENDING', 'ACTIVE', 'SUSPENDED', 'REVOKED', 'REJECTED', 'CANCELLED');

-- AlterTable
ALTER TABLE "audit_events" ADD COLUMN     "chain_seq" BIGINT,
ADD COLUMN     "hash" TEXT,
ADD COLUMN     "prev_hash" TEXT;

-- CreateTable
CREATE TABLE "license_plans" (
    "id" UUID NOT NULL,
    "model_id" UUID NOT NULL,
    "name" TEXT NOT NULL,
    "description" TEXT NOT NULL DEFAULT '',
    "versions" TEXT NOT NULL DEFAULT '*',
    "price_per_prediction" DECIMAL(20,10) NOT NULL,
    "currency" CHAR(3) NOT NULL,
    "prediction_quota" INTEGER,
    "period" "QuotaPeriod" NOT NULL,
    "rate_limit_per_minute" INTEGER,
    "duration_days" INTEGER,
    "commercial_use" BOOLEAN NOT NULL,
    "download_allowed" BOOLEAN NOT NULL,
    "requires_approval" BOOLEAN NOT NULL,
    "status" "PlanStatus" NOT NULL DEFAULT 'ACTIVE',
    "revision" INTEGER NOT NULL DEFAULT 1,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "license_plans_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "contracts" (
    "id" UUID NOT NULL,
    "plan_id" UUID NOT NULL,
    "model_id" UUID NOT NULL,
    "consumer_id" UUID NOT NULL,
    "status" "ContractStatus" NOT NULL,
    "status_reason" TEXT,
    "terms" JSONB NOT NULL,
    "terms_digest" TEXT NOT NULL,
    "plan_revision" INTEGER NOT NULL,
    "version_range" TEXT NOT NULL,
    "price_per_prediction" DECIMAL(20,10) NOT NULL,
    "currency" CHAR(3) NOT NULL,
    "prediction_quota" INTEGER,
    "period" "QuotaPeriod" NOT NULL,
    "rate_limit_per_minute" INTEGER,
    "download_allowed" BOOLEAN NOT NULL,
    "duration_days" INTEGER,
    "predictions_used" INTEGER NOT NULL DEFAULT 0,
    "period_start" TIMESTAMPTZ(3) NOT NULL,
    "rate_window_start" TIMESTAMPTZ(3),
    "rate_window_count" INTEGER NOT NULL DEFAULT 0,
    "starts_at" TIMESTAMPTZ(3),
    "expires_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL,

    CONSTRAINT "contracts_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "usage_records" (
    "id" BIGSERIAL NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "prediction_id" UUID NOT NULL,
    "contract_id" UUID,
    "model_id" UUID,
    "model_version_id" UUID,
    "consumer_id" UUID NOT NULL,
    "api_key_id" UUID,
    "units" INTEGER NOT NULL,
    "billable_units" INTEGER NOT NULL,
    "unit_price" DECIMAL(20,10) NOT NULL DEFAULT 0,
    "currency" CHAR(3),
    "status" TEXT NOT NULL,
    "latency_ms" DOUBLE PRECISION NOT NULL,
    "request_id" TEXT,

    CONSTRAINT "usage_records_pkey" PRIMARY KEY ("id")
);

-- CreateTable
CREATE TABLE "idempotency_keys" (
    "caller_id" UUID NOT NULL,
    "request_id" TEXT NOT NULL,
    "input_hash" TEXT NOT NULL,
    "response" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "idempotency_keys_pkey" PRIMARY KEY ("caller_id","request_id")
);

-- CreateIndex
CREATE INDEX "license_plans_model_id_idx" ON "license_plans"("model_id");

-- CreateIndex
CREATE INDEX "contracts_consumer_id_idx" ON "contracts"("consumer_id");

-- CreateIndex
CREATE INDEX "contracts_model_id_idx" ON "contracts"("model_id");

-- CreateIndex
CREATE INDEX "contracts_plan_id_idx" ON "contracts"("plan_id");

-- CreateIndex
CREATE INDEX "usage_records_consumer_id_at_idx" ON "usage_records"("consumer_id", "at");

-- CreateIndex
CREATE INDEX "usage_records_contract_id_at_idx" ON "usage_records"("contract_id", "at");

-- CreateIndex
CREATE INDEX "usage_records_model_id_at_idx" ON "usage_records"("model_id", "at");

-- CreateIndex
CREATE INDEX "usage_records_at_idx" ON "usage_records"("at");

-- CreateIndex
CREATE INDEX "idempotency_keys_created_at_idx" ON "idempotency_keys"("created_at");

-- CreateIndex
CREATE UNIQUE INDEX "audit_events_chain_seq_key" ON "audit_events"("chain_seq");

-- AddForeignKey
ALTER TABLE "license_plans" ADD CONSTRAINT "license_plans_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "contracts" ADD CONSTRAINT "contracts_plan_id_fkey" FOREIGN KEY ("plan_id") REFERENCES "license_plans"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "contracts" ADD CONSTRAINT "contracts_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "contracts" ADD CONSTRAINT "contracts_consumer_id_fkey" FOREIGN KEY ("consumer_id") REFERENCES "users"("id") ON DELETE RESTRICT ON UPDATE CASCADE;

-- AddForeignKey
ALTER TABLE "usage_records" ADD CONSTRAINT "usage_records_contract_id_fkey" FOREIGN KEY ("contract_id") REFERENCES "contracts"("id") ON DELETE SET NULL ON UPDATE CASCADE;


-- Usage records are billing evidence: append-only, like audit events.
CREATE TRIGGER usage_records_no_update_or_delete BEFORE UPDATE OR DELETE ON "usage_records"
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER usage_records_no_truncate BEFORE TRUNCATE ON "usage_records"
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The audit hash chain. Each insert takes a transaction-scoped lock, numbers the event after the last one,
-- and hashes it together with the previous event's hash, so an edited, removed or re-ordered event breaks
-- every link after it. mm_audit_event_hash is the one definition used to write and to verify.
CREATE FUNCTION mm_audit_event_hash(e "audit_events", previous text) RETURNS text LANGUAGE sql IMMUTABLE AS $$
  SELECT encode(sha256(convert_to(concat_ws('|',
    e.chain_seq::text, previous, (extract(epoch FROM e.at) * 1000)::bigint::text, coalesce(e.actor_id::text, ''),
    coalesce(e.api_key_id::text, ''), e.action, coalesce(e.target_type, ''), coalesce(e.target_id, ''),
    coalesce(e.ip, ''), coalesce(e.request_id, ''), e.details::text), 'UTF8')), 'hex')
$$;

CREATE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  last_event record;
BEGIN
  PERFORM pg_advisory_xact_lock(7275001);
  SELECT chain_seq, hash INTO last_event FROM audit_events ORDER BY chain_seq DESC NULLS LAST LIMIT 1;
  NEW.chain_seq := coalesce(last_event.chain_seq, 0) + 1;
  NEW.prev_hash := coalesce(last_event.hash, 'genesis');
  NEW.hash := mm_audit_event_hash(NEW, NEW.prev_hash);
  RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_chain BEFORE INSERT ON "audit_events"
  FOR EACH ROW EXECUTE FUNCTION audit_events_chain();

-- Quota and rate limit: check and consume in one statement, under the contract's row lock, so no interleaving
-- of calls or server processes can exceed either. Monthly quotas roll over by themselves (calendar month,
-- UTC): the first reservation of a new month starts the count again, so no scheduled job is needed. The
-- per-minute window starts with the first call after the previous window ended. A refused call changes
-- nothing; `active` and `rate_limited` tell why it was refused.
CREATE FUNCTION mm_reserve_predictions(p_contract uuid, p_units integer)
RETURNS TABLE (reserved boolean, active boolean, rate_limited boolean, retry_after_ms integer, used integer,
               quota integer, period_start timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  month_start timestamptz := date_trunc('month', now(), 'UTC');
BEGIN
  -- The reservation need not wait for its own WAL flush: no answer is sent before the call's usage record
  -- commits synchronously, and that flush covers this earlier commit too. A crash in between loses only
  -- a reservation whose call was never answered.
  PERFORM set_config('synchronous_commit', 'off', true);
  RETURN QUERY
  WITH current AS (
    SELECT c.id,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN 0 ELSE c.predictions_used END AS used_now,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN month_start ELSE c.period_start END AS start_now,
      c.rate_window_start IS NULL OR c.rate_window_start <= now() - interval '1 minute' AS new_window
    FROM contracts c WHERE c.id = p_contract FOR UPDATE
  )
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
  RETURNING true, true, false, 0, c.predictions_used, c.prediction_quota, c.period_start;
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
