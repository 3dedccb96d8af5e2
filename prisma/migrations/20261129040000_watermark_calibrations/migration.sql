-- CreateTable
CREATE TABLE "watermark_calibrations" (
    "version_id" UUID NOT NULL,
    "samples" INTEGER NOT NULL,
    "inputs" INTEGER NOT NULL,
    "mean" BYTEA NOT NULL,
    "covariance" BYTEA NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "watermark_calibrations_pkey" PRIMARY KEY ("version_id")
);

