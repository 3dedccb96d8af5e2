-- The transactional outbox: an event is written in the transaction of the change that causes it, together with
-- the pg-boss job that dispatches it (to webhook endpoints), so there is no event without its change, and no
-- change without its event. One row per recipient account.
CREATE TABLE "events" (
  "id" UUID NOT NULL DEFAULT gen_random_uuid(),
  "type" TEXT NOT NULL,
  "account_id" UUID NOT NULL,
  "data" JSONB NOT NULL,
  "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
  "dispatched_at" TIMESTAMPTZ(3),
  CONSTRAINT "events_pkey" PRIMARY KEY ("id"),
  CONSTRAINT "events_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "users"("id") ON DELETE CASCADE
);
CREATE INDEX "events_account_id_created_at_idx" ON "events" ("account_id", "created_at" DESC, "id" DESC);
