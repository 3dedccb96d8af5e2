-- AlterTable
ALTER TABLE "model_versions" ADD COLUMN     "served_sha256" TEXT,
ADD COLUMN     "watermark" JSONB;

-- CreateTable
CREATE TABLE "licensee_copies" (
    "contract_id" UUID NOT NULL,
    "version_id" UUID NOT NULL,
    "sha256" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "licensee_copies_pkey" PRIMARY KEY ("contract_id","version_id")
);

-- CreateIndex
CREATE INDEX "licensee_copies_version_id_idx" ON "licensee_copies"("version_id");

