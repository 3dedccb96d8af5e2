-- Asynchronous predictions (src/predictions/async-predictions-service.ts): predict's call, queued and run by a
-- pg-boss job on any replica. The row is the record of the work; its job is only the wake-up.
CREATE TYPE "AsyncPredictionStatus" AS ENUM ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELED');

CREATE TABLE "async_predictions" (
    "id" UUID NOT NULL,
    "consumer_id" UUID NOT NULL,
    "api_key_id" UUID,
    "model_id" UUID NOT NULL,
    -- Resolved at creation: an alias that moves while the prediction is queued does not change what it runs.
    "model_version_id" UUID NOT NULL,
    "contract_id" UUID,
    -- The contract's price when the units were reserved: the usage record bills at it.
    "unit_price" DECIMAL(20,10) NOT NULL DEFAULT 0,
    "currency" CHAR(3),
    "request_id" TEXT,
    -- SHA-256 of the call (predict's input hash and the webhook): the same requestId with another input is a CONFLICT.
    "input_hash" TEXT NOT NULL,
    "status" "AsyncPredictionStatus" NOT NULL DEFAULT 'QUEUED',
    "top_k" INTEGER NOT NULL,
    -- Instances: the units reserved at creation and billed on success.
    "units" INTEGER NOT NULL,
    -- The instances as JSON, sealed with the application secret; deleted once the prediction ends.
    "input" TEXT,
    -- The outputs as JSON, sealed; wiped at data_expires_at (PREDICTION_OUTPUT_TTL_HOURS after the end).
    "output" TEXT,
    "error_code" TEXT,
    "error_message" TEXT,
    "latency_ms" DOUBLE PRECISION,
    "webhook" TEXT,
    -- Event types sent to `webhook` (prediction.completed, prediction.failed).
    "webhook_events" TEXT[],
    -- The pg-boss job that runs it (cancelled with it).
    "job_id" UUID,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "started_at" TIMESTAMPTZ(3),
    "completed_at" TIMESTAMPTZ(3),
    "data_expires_at" TIMESTAMPTZ(3),

    CONSTRAINT "async_predictions_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "async_predictions_contract_id_fkey" FOREIGN KEY ("contract_id") REFERENCES "contracts"("id")
);
CREATE UNIQUE INDEX "async_predictions_consumer_id_request_id_key" ON "async_predictions"("consumer_id", "request_id");
CREATE INDEX "async_predictions_consumer_id_created_at_idx" ON "async_predictions"("consumer_id", "created_at" DESC, "id" DESC);
-- The per-user bound on queued work, and the sweep of predictions whose job ended without them.
CREATE INDEX "async_predictions_unfinished_idx" ON "async_predictions"("consumer_id") WHERE "status" IN ('QUEUED', 'RUNNING');
CREATE INDEX "async_predictions_data_expires_at_idx" ON "async_predictions"("data_expires_at") WHERE "output" IS NOT NULL;

-- A queued prediction keeps its reserved units across restarts and replicas: its lease has no server instance
-- (it is owned by the async_predictions row of the same id), so the metering sweep, which gives back the leases of
-- dead servers, leaves it alone. The statement that ends the prediction ends the lease (billed or given back).
ALTER TABLE "quota_leases" ALTER COLUMN "server_instance" DROP NOT NULL;
