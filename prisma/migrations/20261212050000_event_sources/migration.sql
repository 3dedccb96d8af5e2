-- Events that come from SQL itself, and what makes each one fire once.
--
-- mm_emit_event writes an event and its dispatch job (pg-boss queue 'event-dispatch') in the caller's transaction,
-- one round trip: EventOutbox.emit calls it, and so does the quota trigger below, so there is one definition of an
-- outbox row. The job row is the one pg-boss's own insert (plans.js insertJob) writes for a send without options:
-- every setting comes from the queue's row, which the server's start defines (EVENT_DISPATCH_JOB).
-- A pg-boss upgrade that changes pgboss.job must revisit it: test/events/events.test.ts compares its job with
-- JobQueue.send's, column by column.
CREATE FUNCTION mm_emit_event(p_type text, p_account uuid, p_data jsonb) RETURNS uuid
LANGUAGE plpgsql AS $$
DECLARE
  event_id uuid;
BEGIN
  INSERT INTO events (type, account_id, data) VALUES (p_type, p_account, p_data) RETURNING id INTO event_id;
  INSERT INTO pgboss.job (id, name, data, priority, start_after, dead_letter, expire_in, keep_until, retry_limit,
                          retry_delay, retry_backoff, policy)
  SELECT gen_random_uuid(), q.name, jsonb_build_object('eventId', event_id), 0, now(), q.dead_letter,
    coalesce(q.expire_seconds * interval '1s', interval '15 minutes'),
    now() + CAST(coalesce((q.retention_minutes * 60)::text, '14 days') AS interval),
    coalesce(q.retry_limit, 2),
    CASE WHEN coalesce(q.retry_backoff, false) THEN greatest(q.retry_delay, 1) ELSE coalesce(q.retry_delay, 0) END,
    coalesce(q.retry_backoff, false), q.policy
  FROM pgboss.queue q WHERE q.name = 'event-dispatch';
  -- No event without its job: a database no server has started on yet has no queue, and takes no event.
  IF NOT FOUND THEN
    RAISE EXCEPTION 'the event-dispatch queue does not exist (a server defines it when it starts)';
  END IF;
  RETURN event_id;
END
$$;

-- quota.threshold fires once per quota period for each of 80% and 100% of a contract's prediction quota. The
-- highest threshold told, and the period it was told in, live on the contract row; a new period (period_start
-- moves, in mm_reserve_predictions or at approval) starts from none told. Units given back never re-arm a
-- threshold within the period.
ALTER TABLE "contracts"
  ADD COLUMN "quota_threshold_notified" SMALLINT NOT NULL DEFAULT 0,
  ADD COLUMN "quota_threshold_period" TIMESTAMPTZ(3),
  -- contract.expiring was sent for this expiry (once per expiry date).
  ADD COLUMN "expiry_notified_for" TIMESTAMPTZ(3);

-- BEFORE, so that what was told is written in the same row version as the usage that crossed the threshold: the
-- row lock that serialises reservations also makes each threshold fire once, however many calls run at once.
CREATE FUNCTION mm_contract_quota_threshold() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  told smallint := CASE WHEN NEW.quota_threshold_period IS NOT DISTINCT FROM NEW.period_start
                   THEN NEW.quota_threshold_notified ELSE 0 END;
  threshold smallint;
BEGIN
  FOREACH threshold IN ARRAY ARRAY[80, 100]::smallint[] LOOP
    IF threshold > told AND NEW.predictions_used::bigint * 100 >= NEW.prediction_quota::bigint * threshold THEN
      PERFORM mm_emit_event('quota.threshold', NEW.consumer_id, jsonb_build_object(
        'contractId', NEW.id, 'modelId', NEW.model_id, 'planId', NEW.plan_id, 'threshold', threshold,
        'used', NEW.predictions_used, 'quota', NEW.prediction_quota, 'period', NEW.period,
        'periodStart', NEW.period_start));
      told := threshold;
    END IF;
  END LOOP;
  NEW.quota_threshold_notified := told;
  NEW.quota_threshold_period := NEW.period_start;
  RETURN NEW;
END
$$;

-- The WHEN clause is the whole cost on the hot path: the function runs only for an update that crosses a
-- threshold not yet told in the row's period.
CREATE TRIGGER contracts_quota_threshold
BEFORE UPDATE OF predictions_used ON contracts
FOR EACH ROW
WHEN (NEW.prediction_quota IS NOT NULL AND
  (CASE WHEN NEW.predictions_used >= NEW.prediction_quota THEN 100
        WHEN NEW.predictions_used::bigint * 100 >= NEW.prediction_quota::bigint * 80 THEN 80
        ELSE 0 END)
  > (CASE WHEN NEW.quota_threshold_period IS NOT DISTINCT FROM NEW.period_start
          THEN NEW.quota_threshold_notified ELSE 0 END))
EXECUTE FUNCTION mm_contract_quota_threshold();
