-- What the webhook maintenance pass reads (src/webhooks/deliveries.ts): dispatched events by age (retention),
-- undispatched ones (those whose dispatch job gave up get one again), and PENDING deliveries by when their attempt
-- is due (the sweep of deliveries left without a job).
CREATE INDEX "events_dispatched_created_at_idx" ON "events" ("created_at") WHERE "dispatched_at" IS NOT NULL;
CREATE INDEX "events_undispatched_created_at_idx" ON "events" ("created_at") WHERE "dispatched_at" IS NULL;
CREATE INDEX "webhook_deliveries_pending_due_idx" ON "webhook_deliveries" ((coalesce("next_attempt_at", "created_at")))
  WHERE "status" = 'PENDING';
