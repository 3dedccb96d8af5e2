-- Consumer-accepted version upgrades (src/licensing/upgrades-service.ts). A plan says how its contracts take a new
-- version when the alias they are pinned to moves; a contract records what it is pinned to (an alias, or an exact
-- version when pinned_alias is null), the version it is served, and the upgrade it was offered and has not taken.
CREATE TYPE "UpgradePolicy" AS ENUM ('PINNED', 'FOLLOW_ALIAS', 'FOLLOW_ALIAS_AFTER_GRACE');

ALTER TABLE "license_plans"
  ADD COLUMN "upgrade_policy" "UpgradePolicy" NOT NULL DEFAULT 'PINNED',
  ADD COLUMN "upgrade_grace_days" INTEGER;
ALTER TABLE "license_plans" ADD CONSTRAINT "license_plans_upgrade_grace_days"
  CHECK (("upgrade_policy" = 'FOLLOW_ALIAS_AFTER_GRACE') = ("upgrade_grace_days" IS NOT NULL)
         AND ("upgrade_grace_days" IS NULL OR "upgrade_grace_days" BETWEEN 1 AND 90));

-- Contracts made before this migration kept being served `latest` as it moved: they follow it.
ALTER TABLE "contracts"
  ADD COLUMN "upgrade_policy" "UpgradePolicy" NOT NULL DEFAULT 'FOLLOW_ALIAS',
  ADD COLUMN "upgrade_grace_days" INTEGER,
  ADD COLUMN "pinned_alias" TEXT DEFAULT 'latest',
  ADD COLUMN "pinned_version_id" UUID,
  ADD COLUMN "pending_version_id" UUID,
  ADD COLUMN "pending_since" TIMESTAMPTZ(3),
  ADD COLUMN "pending_applies_at" TIMESTAMPTZ(3);
ALTER TABLE "contracts" ALTER COLUMN "pinned_alias" DROP DEFAULT;
ALTER TABLE "contracts"
  ADD CONSTRAINT "contracts_pinned_version_id_fkey" FOREIGN KEY ("pinned_version_id") REFERENCES "model_versions"("id"),
  ADD CONSTRAINT "contracts_pending_version_id_fkey" FOREIGN KEY ("pending_version_id") REFERENCES "model_versions"("id"),
  ADD CONSTRAINT "contracts_pending_consistent"
    CHECK (("pending_version_id" IS NULL) = ("pending_since" IS NULL)
           AND ("pending_applies_at" IS NULL OR "pending_version_id" IS NOT NULL));
-- Alias moves find the contracts pinned to the alias.
CREATE INDEX "contracts_model_id_pinned_alias_idx" ON "contracts" ("model_id", "pinned_alias");

-- What the authorizer caches now includes the pinned version (served to calls that name no version): a change of
-- it notifies like the other columns that decide how a contract is used.
DROP TRIGGER contracts_update_change_feed ON contracts;
CREATE TRIGGER contracts_update_change_feed AFTER UPDATE ON contracts
  FOR EACH ROW WHEN (
    OLD.status IS DISTINCT FROM NEW.status OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
    OR OLD.version_range IS DISTINCT FROM NEW.version_range
    OR OLD.price_per_prediction IS DISTINCT FROM NEW.price_per_prediction OR OLD.currency IS DISTINCT FROM NEW.currency
    OR OLD.rate_limit_per_minute IS DISTINCT FROM NEW.rate_limit_per_minute OR OLD.period IS DISTINCT FROM NEW.period
    OR OLD.consumer_id IS DISTINCT FROM NEW.consumer_id OR OLD.model_id IS DISTINCT FROM NEW.model_id
    OR OLD.pinned_alias IS DISTINCT FROM NEW.pinned_alias OR OLD.pinned_version_id IS DISTINCT FROM NEW.pinned_version_id)
  EXECUTE FUNCTION mm_notify_contract_change();
