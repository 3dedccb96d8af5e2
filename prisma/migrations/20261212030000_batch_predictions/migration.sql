-- Batch predictions: a version run over one of its requester's uploaded JSONL data sets, a chunk per pg-boss job.
-- The row is the batch's state (progress, where the next chunk starts in the data set); each finished chunk's
-- results are one row, encrypted with the application secret, written in the transaction that bills the chunk.
CREATE TYPE "BatchPredictionStatus" AS ENUM ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELED', 'QUOTA_EXCEEDED');

CREATE TABLE "batch_predictions" (
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "requester_id" UUID NOT NULL,
  "api_key_id" UUID,
  "model_id" UUID NOT NULL,
  "version_id" UUID NOT NULL,
  "dataset_id" UUID,
  "contract_id" UUID,
  "top_k" INTEGER NOT NULL,
  "webhook" TEXT,
  "status" "BatchPredictionStatus" NOT NULL DEFAULT 'QUEUED',
  "total" INTEGER NOT NULL,
  "processed" INTEGER NOT NULL DEFAULT 0,
  "failed_rows" INTEGER NOT NULL DEFAULT 0,
  "billed_units" INTEGER NOT NULL DEFAULT 0,
  "chunks_done" INTEGER NOT NULL DEFAULT 0,
  "next_offset" INTEGER NOT NULL DEFAULT 0,
  "next_line" INTEGER NOT NULL DEFAULT 0,
  -- The job running the next chunk, and its server's instance: a server starting fails the jobs of dead ones.
  "chunk_job_id" UUID,
  "chunk_server_instance" INTEGER,
  "error" JSONB,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "started_at" TIMESTAMPTZ(3),
  "completed_at" TIMESTAMPTZ(3),
  "results_expire_at" TIMESTAMPTZ(3),
  "results_deleted_at" TIMESTAMPTZ(3),
  CONSTRAINT "batch_predictions_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "batch_predictions_requester_id_fkey" FOREIGN KEY ("requester_id") REFERENCES "users"("id") ON DELETE CASCADE,
  CONSTRAINT "batch_predictions_api_key_id_fkey" FOREIGN KEY ("api_key_id") REFERENCES "api_keys"("id") ON DELETE SET NULL,
  CONSTRAINT "batch_predictions_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE RESTRICT,
  CONSTRAINT "batch_predictions_version_id_fkey" FOREIGN KEY ("version_id") REFERENCES "model_versions"("id") ON DELETE RESTRICT,
  CONSTRAINT "batch_predictions_dataset_id_fkey" FOREIGN KEY ("dataset_id") REFERENCES "datasets"("id") ON DELETE SET NULL,
  CONSTRAINT "batch_predictions_contract_id_fkey" FOREIGN KEY ("contract_id") REFERENCES "contracts"("id") ON DELETE SET NULL
);
CREATE INDEX "batch_predictions_requester_id_created_at_idx" ON "batch_predictions" ("requester_id", "created_at" DESC, "id" DESC);

CREATE TABLE "batch_prediction_chunks" (
  "batch_id" UUID NOT NULL,
  "chunk" INTEGER NOT NULL,
  "first_row" INTEGER NOT NULL,
  "rows" INTEGER NOT NULL,
  "results" TEXT NOT NULL,
  CONSTRAINT "batch_prediction_chunks_pkey" PRIMARY KEY ("batch_id", "chunk"),
  CONSTRAINT "batch_prediction_chunks_batch_id_fkey" FOREIGN KEY ("batch_id") REFERENCES "batch_predictions"("id") ON DELETE CASCADE
);
