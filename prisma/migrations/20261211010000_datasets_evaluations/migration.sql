-- Labelled data sets uploaded for evaluation (POST /v1/datasets), owned by their uploader and never public.
-- Content-addressed per uploader: the same bytes uploaded again by the same user are the same data set.
CREATE TYPE "DatasetFormat" AS ENUM ('JSONL', 'CSV');

CREATE TABLE "datasets" (
    "id" UUID NOT NULL,
    "owner_id" UUID NOT NULL,
    "name" TEXT NOT NULL DEFAULT '',
    "format" "DatasetFormat" NOT NULL,
    "sha256" TEXT NOT NULL,
    "size_bytes" INTEGER NOT NULL,
    "rows" INTEGER NOT NULL,
    -- CSV: the feature columns, in order (the label column excluded); empty for JSONL.
    "columns" TEXT[] NOT NULL DEFAULT ARRAY[]::TEXT[],
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "datasets_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "datasets_owner_id_fkey" FOREIGN KEY ("owner_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE UNIQUE INDEX "datasets_owner_id_sha256_key" ON "datasets"("owner_id", "sha256");

-- A data set's bytes in parts of at most 1 MiB, so that no statement carries (and no event-loop turn encodes)
-- a whole 50 MB upload.
CREATE TABLE "dataset_parts" (
    "dataset_id" UUID NOT NULL,
    "part" INTEGER NOT NULL,
    "bytes" BYTEA NOT NULL,

    CONSTRAINT "dataset_parts_pkey" PRIMARY KEY ("dataset_id", "part"),
    CONSTRAINT "dataset_parts_dataset_id_fkey" FOREIGN KEY ("dataset_id") REFERENCES "datasets"("id") ON DELETE CASCADE ON UPDATE CASCADE
);

CREATE TYPE "EvaluationStatus" AS ENUM ('QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED');

-- Two evaluations of one data set run together, example by example, to say where two versions disagree.
CREATE TABLE "comparisons" (
    "id" UUID NOT NULL,
    "requester_id" UUID NOT NULL,
    "model_id" UUID NOT NULL,
    -- Where they disagree, written when both finished: counts and a few example indices.
    "disagreement" JSONB,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "comparisons_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "comparisons_requester_id_fkey" FOREIGN KEY ("requester_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "comparisons_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- One run of a version over a data set. `server_instance` is the process running it: when that process dies
-- (mm_live_server_instances), the next sweep marks the run FAILED ("interrupted").
CREATE TABLE "evaluations" (
    "id" UUID NOT NULL,
    "requester_id" UUID NOT NULL,
    "model_id" UUID NOT NULL,
    "version_id" UUID NOT NULL,
    "dataset_id" UUID,
    "dataset_sha256" TEXT NOT NULL,
    "comparison_id" UUID,
    "status" "EvaluationStatus" NOT NULL DEFAULT 'QUEUED',
    "examples_total" INTEGER NOT NULL,
    "examples_evaluated" INTEGER NOT NULL DEFAULT 0,
    "report" JSONB,
    "error" JSONB,
    "server_instance" INTEGER,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "finished_at" TIMESTAMPTZ(3),
    -- Set when the model's owner published the report to the version's card (verifiedMetrics).
    "published_at" TIMESTAMPTZ(3),

    CONSTRAINT "evaluations_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "evaluations_requester_id_fkey" FOREIGN KEY ("requester_id") REFERENCES "users"("id") ON DELETE CASCADE ON UPDATE CASCADE,
    CONSTRAINT "evaluations_model_id_fkey" FOREIGN KEY ("model_id") REFERENCES "models"("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "evaluations_version_id_fkey" FOREIGN KEY ("version_id") REFERENCES "model_versions"("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "evaluations_dataset_id_fkey" FOREIGN KEY ("dataset_id") REFERENCES "datasets"("id") ON DELETE SET NULL ON UPDATE CASCADE,
    CONSTRAINT "evaluations_comparison_id_fkey" FOREIGN KEY ("comparison_id") REFERENCES "comparisons"("id") ON DELETE CASCADE ON UPDATE CASCADE
);
CREATE INDEX "evaluations_requester_id_created_at_idx" ON "evaluations"("requester_id", "created_at");
CREATE INDEX "evaluations_version_id_published_at_idx" ON "evaluations"("version_id", "published_at");
CREATE INDEX "evaluations_comparison_id_idx" ON "evaluations"("comparison_id");
-- The runs still going, for the concurrency limits and the sweep.
CREATE INDEX "evaluations_active_idx" ON "evaluations"("requester_id") WHERE "status" IN ('QUEUED', 'RUNNING');
