-- Derived artifacts (issue 13): one home for every artifact derived from a version's upload, replacing the slots
-- that fit only watermarking (model_versions.served_sha256 + watermark, licensee_copies, watermark_calibrations).
--   kind         OWNER_MARKED (the owner-marked weights), LICENSEE_COPY (a contract's fingerprinted copy),
--                QUANTIZED / PRUNED (an optimised version's transformed weights)
--   params       what it was derived with (key, mark layout, calibration shape, dtype, sparsity, ...)
--   sha256       its bytes in artifact_blobs; null where the derivation produced none (an owner who opted out of
--                marking keeps an OWNER_MARKED row, so the version still says so)
--   served       the bytes predict serves and owners download (at most one per version; none: the upload)
--   report       what it cost (the watermark report, an optimisation's measurements)
--   calibration  a shaped mark's input statistics (float32 LE: mean, then covariance row-major; their shape in
--                params.calibration), megabytes, so bytea and never read with the row unless asked for
CREATE TYPE "VariantKind" AS ENUM ('OWNER_MARKED', 'LICENSEE_COPY', 'QUANTIZED', 'PRUNED');

CREATE TABLE "artifact_variants" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "version_id" UUID NOT NULL,
    "kind" "VariantKind" NOT NULL,
    "contract_id" UUID,
    "params" JSONB NOT NULL DEFAULT '{}',
    "sha256" TEXT,
    "served" BOOLEAN NOT NULL DEFAULT false,
    "report" JSONB NOT NULL DEFAULT '{}',
    "calibration" BYTEA,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "artifact_variants_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "artifact_variants_contract_check" CHECK (("kind" = 'LICENSEE_COPY') = ("contract_id" IS NOT NULL)),
    CONSTRAINT "artifact_variants_served_check" CHECK (NOT "served" OR ("sha256" IS NOT NULL AND "kind" <> 'LICENSEE_COPY')),
    CONSTRAINT "artifact_variants_version_id_fkey" FOREIGN KEY ("version_id") REFERENCES "model_versions"("id") ON DELETE RESTRICT ON UPDATE CASCADE,
    CONSTRAINT "artifact_variants_sha256_fkey" FOREIGN KEY ("sha256") REFERENCES "artifact_blobs"("sha256") ON DELETE RESTRICT ON UPDATE CASCADE
);

-- One variant of each kind per version, but one licensee copy per (version, contract): contract_id is null for
-- every other kind, and nulls are distinct, so the second index covers licensee copies only.
CREATE UNIQUE INDEX "artifact_variants_version_id_kind_key" ON "artifact_variants"("version_id", "kind") WHERE "kind" <> 'LICENSEE_COPY';
CREATE UNIQUE INDEX "artifact_variants_version_id_contract_id_key" ON "artifact_variants"("version_id", "contract_id");
CREATE UNIQUE INDEX "artifact_variants_served_key" ON "artifact_variants"("version_id") WHERE "served";
CREATE INDEX "artifact_variants_sha256_idx" ON "artifact_variants"("sha256");

-- Lineage: an optimised version names the version it was derived from.
ALTER TABLE "model_versions" ADD COLUMN "derived_from_id" UUID;
ALTER TABLE "model_versions" ADD CONSTRAINT "model_versions_derived_from_id_fkey" FOREIGN KEY ("derived_from_id") REFERENCES "model_versions"("id") ON DELETE RESTRICT ON UPDATE CASCADE;
CREATE INDEX "model_versions_derived_from_id_idx" ON "model_versions"("derived_from_id");

-- Existing data. Versions published before marking existed (watermark null) have no owner-marked variant.
INSERT INTO "artifact_variants" ("version_id", "kind", "params", "sha256", "served", "report", "calibration", "created_at")
SELECT v."id", 'OWNER_MARKED',
       jsonb_build_object('key', 'owner')
         || CASE WHEN v."watermark" ? 'carriers' AND v."watermark" ? 'bits'
                 THEN jsonb_build_object('layout', jsonb_strip_nulls(jsonb_build_object(
                        'carriers', v."watermark"->'carriers', 'bits', v."watermark"->'bits', 'slack', v."watermark"->'slack')))
                 ELSE '{}' END
         || CASE WHEN c."version_id" IS NOT NULL
                 THEN jsonb_build_object('calibration', jsonb_build_object('samples', c."samples", 'inputs', c."inputs"))
                 ELSE '{}' END,
       v."served_sha256", v."served_sha256" IS NOT NULL, v."watermark", c."mean" || c."covariance", v."created_at"
FROM "model_versions" v
LEFT JOIN "watermark_calibrations" c ON c."version_id" = v."id"
WHERE v."watermark" IS NOT NULL;

INSERT INTO "artifact_variants" ("version_id", "kind", "contract_id", "params", "sha256", "report", "created_at")
SELECT l."version_id", 'LICENSEE_COPY', l."contract_id", jsonb_build_object('key', 'licensee'), l."sha256", '{}', l."created_at"
FROM "licensee_copies" l;

DROP TABLE "licensee_copies";
DROP TABLE "watermark_calibrations";
ALTER TABLE "model_versions" DROP COLUMN "served_sha256", DROP COLUMN "watermark";

-- The serving catalog caches each version's served variant (see change_feed): a served variant that is added,
-- changed or removed after its version's own insert notifies like a version. Licensee copies, added at
-- downloads, change nothing predict reads and notify nothing.
CREATE FUNCTION mm_notify_variant_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' OR NEW."served" THEN
    PERFORM pg_notify('mm_changes', 'm:' || v."model_id")
    FROM "model_versions" v WHERE v."id" = CASE WHEN TG_OP = 'DELETE' THEN OLD."version_id" ELSE NEW."version_id" END;
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER artifact_variants_change_feed AFTER INSERT OR UPDATE OR DELETE ON "artifact_variants"
  FOR EACH ROW EXECUTE FUNCTION mm_notify_variant_change();
CREATE TRIGGER artifact_variants_truncate_change_feed AFTER TRUNCATE ON "artifact_variants"
  FOR EACH STATEMENT EXECUTE FUNCTION mm_notify_clear_all();
