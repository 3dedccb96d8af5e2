-- Webhooks: the endpoints an account registers, each delivery of an event to one of them (or to a prediction's
-- own `webhook` URL) with every attempt made, and the account's default signing secret for those own URLs.
CREATE TYPE "WebhookEndpointStatus" AS ENUM ('ACTIVE', 'DISABLED');
CREATE TYPE "WebhookDeliveryStatus" AS ENUM ('PENDING', 'SUCCEEDED', 'FAILED');

CREATE TABLE "webhook_endpoints" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "account_id" UUID NOT NULL,
    "url" TEXT NOT NULL,
    -- Event types (src/events/outbox.ts), at least one.
    "events" TEXT[] NOT NULL,
    "description" TEXT NOT NULL DEFAULT '',
    -- The signing secret (whsec_…), sealed with the application secret.
    "secret_sealed" TEXT NOT NULL,
    "status" "WebhookEndpointStatus" NOT NULL DEFAULT 'ACTIVE',
    "disabled_reason" TEXT,
    -- Failed attempts since the last success, and when the first of them was made (auto-disable).
    "consecutive_failures" INTEGER NOT NULL DEFAULT 0,
    "failing_since" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_endpoints_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "webhook_endpoints_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "users"("id") ON DELETE CASCADE
);
CREATE INDEX "webhook_endpoints_account_id_created_at_idx" ON "webhook_endpoints" ("account_id", "created_at");

CREATE TABLE "webhook_deliveries" (
    "id" UUID NOT NULL DEFAULT gen_random_uuid(),
    "event_id" UUID NOT NULL,
    -- The recipient account (the event's).
    "account_id" UUID NOT NULL,
    -- NULL for a delivery to a prediction's own `webhook` URL.
    "endpoint_id" UUID,
    "url" TEXT NOT NULL,
    "status" "WebhookDeliveryStatus" NOT NULL DEFAULT 'PENDING',
    "attempts" INTEGER NOT NULL DEFAULT 0,
    -- Attempts made before the last redelivery: the retry schedule starts again after it.
    "attempts_before_redelivery" INTEGER NOT NULL DEFAULT 0,
    "last_response_code" INTEGER,
    "last_latency_ms" INTEGER,
    "last_error" TEXT,
    "next_attempt_at" TIMESTAMPTZ(3),
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "updated_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_deliveries_pkey" PRIMARY KEY ("id"),
    CONSTRAINT "webhook_deliveries_event_id_fkey" FOREIGN KEY ("event_id") REFERENCES "events"("id") ON DELETE CASCADE,
    CONSTRAINT "webhook_deliveries_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "users"("id") ON DELETE CASCADE,
    CONSTRAINT "webhook_deliveries_endpoint_id_fkey" FOREIGN KEY ("endpoint_id") REFERENCES "webhook_endpoints"("id") ON DELETE CASCADE
);
-- An event dispatched again makes no second delivery: one per endpoint, one to the prediction's own URL.
CREATE UNIQUE INDEX "webhook_deliveries_event_id_endpoint_id_key" ON "webhook_deliveries" ("event_id", "endpoint_id");
CREATE UNIQUE INDEX "webhook_deliveries_event_id_own_url_key" ON "webhook_deliveries" ("event_id") WHERE "endpoint_id" IS NULL;
CREATE INDEX "webhook_deliveries_endpoint_id_created_at_idx" ON "webhook_deliveries" ("endpoint_id", "created_at" DESC, "id" DESC);
CREATE INDEX "webhook_deliveries_account_id_created_at_idx" ON "webhook_deliveries" ("account_id", "created_at" DESC, "id" DESC);

-- Every attempt of a delivery: the delivery log.
CREATE TABLE "webhook_delivery_attempts" (
    "delivery_id" UUID NOT NULL,
    "number" INTEGER NOT NULL,
    "at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,
    "response_code" INTEGER,
    "latency_ms" INTEGER,
    "error" TEXT,

    CONSTRAINT "webhook_delivery_attempts_pkey" PRIMARY KEY ("delivery_id", "number"),
    CONSTRAINT "webhook_delivery_attempts_delivery_id_fkey" FOREIGN KEY ("delivery_id") REFERENCES "webhook_deliveries"("id") ON DELETE CASCADE
);

-- The secret that signs deliveries to an account's predictions' own `webhook` URLs.
CREATE TABLE "webhook_signing_secrets" (
    "account_id" UUID NOT NULL,
    "secret_sealed" TEXT NOT NULL,
    "created_at" TIMESTAMPTZ(3) NOT NULL DEFAULT CURRENT_TIMESTAMP,

    CONSTRAINT "webhook_signing_secrets_pkey" PRIMARY KEY ("account_id"),
    CONSTRAINT "webhook_signing_secrets_account_id_fkey" FOREIGN KEY ("account_id") REFERENCES "users"("id") ON DELETE CASCADE
);
