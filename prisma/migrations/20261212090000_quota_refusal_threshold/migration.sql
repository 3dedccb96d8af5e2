-- quota.threshold 100% also fires when a reservation is refused for quota: a call that does not fit leaves the
-- counter short of the quota (95 of 100, and a call of 10), so the trigger of 20261212050000_event_sources, which
-- fires on updates of predictions_used, never told the consumer. The refusal tells it once per period, recorded on
-- the contract as the trigger records it (quota_threshold_notified/_period); the event names the model and plan
-- only while the model is PUBLIC (consumerSubject's rule). Only the refusal path changes: a reservation that fits
-- runs the same statements as before.
CREATE OR REPLACE FUNCTION mm_reserve_predictions(p_contract uuid, p_units integer, p_prediction uuid,
                                                  p_instance integer)
RETURNS TABLE (reserved boolean, active boolean, rate_limited boolean, retry_after_ms integer, used integer,
               quota integer, period_start timestamptz)
LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  month_start timestamptz := date_trunc('month', now(), 'UTC');
  refused record;
BEGIN
  -- The reservation need not wait for its own WAL flush: no answer is sent before the call's usage record
  -- commits synchronously, and that flush covers this earlier commit too. A crash of the database in between
  -- loses the reservation and its lease together.
  PERFORM set_config('synchronous_commit', 'off', true);
  RETURN QUERY
  WITH current AS (
    SELECT c.id,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN 0 ELSE c.predictions_used END AS used_now,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN month_start ELSE c.period_start END AS start_now,
      c.rate_window_start IS NULL OR c.rate_window_start <= now() - interval '1 minute' AS new_window
    -- NO KEY UPDATE: usage records' foreign-key checks (KEY SHARE) on the contract never wait for it.
    FROM contracts c WHERE c.id = p_contract FOR NO KEY UPDATE
  ), taken AS (
    UPDATE contracts c SET
      predictions_used = cur.used_now + p_units,
      period_start = cur.start_now,
      rate_window_start = CASE WHEN cur.new_window THEN now() ELSE c.rate_window_start END,
      rate_window_count = CASE WHEN cur.new_window THEN 1 ELSE c.rate_window_count + 1 END
    FROM current cur
    WHERE c.id = cur.id
      AND c.status = 'ACTIVE'
      AND (c.expires_at IS NULL OR c.expires_at > now())
      AND (c.prediction_quota IS NULL OR cur.used_now + p_units <= c.prediction_quota)
      AND (c.rate_limit_per_minute IS NULL OR cur.new_window OR c.rate_window_count < c.rate_limit_per_minute)
    RETURNING c.predictions_used, c.prediction_quota, c.period_start
  ), leased AS (
    INSERT INTO quota_leases (prediction_id, contract_id, units, period_start, server_instance)
    SELECT p_prediction, p_contract, p_units, t.period_start, p_instance FROM taken t
  )
  SELECT true, true, false, 0, t.predictions_used, t.prediction_quota, t.period_start::timestamptz FROM taken t;
  IF NOT FOUND THEN
    -- The row is locked (FOR NO KEY UPDATE above) until the transaction ends, so the 100% is told once.
    SELECT c.*,
      c.status = 'ACTIVE' AND (c.expires_at IS NULL OR c.expires_at > now()) AS active_now,
      c.rate_limit_per_minute IS NOT NULL AND c.rate_window_start > now() - interval '1 minute'
        AND c.rate_window_count >= c.rate_limit_per_minute AS rate_limited_now,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN 0 ELSE c.predictions_used END AS used_now,
      CASE WHEN c.period = 'MONTH' AND c.period_start < month_start THEN month_start ELSE c.period_start END AS start_now,
      m.visibility = 'PUBLIC' AS public_model
    INTO refused
    FROM contracts c JOIN models m ON m.id = c.model_id WHERE c.id = p_contract;
    IF FOUND THEN
      -- Refused for quota (QUOTA_EXCEEDED), and 100% not yet told in this period.
      IF refused.active_now AND NOT refused.rate_limited_now AND refused.prediction_quota IS NOT NULL
         AND refused.used_now + p_units > refused.prediction_quota
         AND (CASE WHEN refused.quota_threshold_period IS NOT DISTINCT FROM refused.start_now
              THEN refused.quota_threshold_notified ELSE 0 END) < 100 THEN
        PERFORM mm_emit_event('quota.threshold', refused.consumer_id, jsonb_build_object(
          'contractId', refused.id, 'threshold', 100, 'used', refused.used_now, 'quota', refused.prediction_quota,
          'period', refused.period, 'periodStart', refused.start_now)
          || CASE WHEN refused.public_model
             THEN jsonb_build_object('modelId', refused.model_id, 'planId', refused.plan_id) ELSE '{}' END);
        -- Not an update of predictions_used: the threshold trigger does not run.
        UPDATE contracts SET quota_threshold_notified = 100, quota_threshold_period = refused.start_now
        WHERE id = refused.id;
      END IF;
      RETURN QUERY SELECT false, refused.active_now, refused.rate_limited_now,
        greatest(0, ceil(extract(epoch FROM refused.rate_window_start + interval '1 minute' - now()) * 1000))::int,
        refused.used_now, refused.prediction_quota, refused.start_now;
    END IF;
  END IF;
END
$$;
