-- quota.threshold names the contract's model and plan only while the model is PUBLIC, as every consumer event does
-- (consumerSubject in contracts-service.ts): a PRIVATE model's ids stay its owner's. Replaces the function of
-- 20261212050000_event_sources; the trigger and its WHEN clause (the hot path's whole cost) are unchanged, and the
-- visibility is read only when a threshold is crossed.
CREATE OR REPLACE FUNCTION mm_contract_quota_threshold() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
  told smallint := CASE WHEN NEW.quota_threshold_period IS NOT DISTINCT FROM NEW.period_start
                   THEN NEW.quota_threshold_notified ELSE 0 END;
  threshold smallint;
  subject jsonb;
BEGIN
  FOREACH threshold IN ARRAY ARRAY[80, 100]::smallint[] LOOP
    IF threshold > told AND NEW.predictions_used::bigint * 100 >= NEW.prediction_quota::bigint * threshold THEN
      IF subject IS NULL THEN
        SELECT CASE WHEN m.visibility = 'PUBLIC'
                    THEN jsonb_build_object('modelId', NEW.model_id, 'planId', NEW.plan_id)
                    ELSE '{}'::jsonb END
        INTO subject FROM models m WHERE m.id = NEW.model_id;
      END IF;
      PERFORM mm_emit_event('quota.threshold', NEW.consumer_id, jsonb_build_object(
        'contractId', NEW.id, 'threshold', threshold, 'used', NEW.predictions_used, 'quota', NEW.prediction_quota,
        'period', NEW.period, 'periodStart', NEW.period_start) || coalesce(subject, '{}'::jsonb));
      told := threshold;
    END IF;
  END LOOP;
  NEW.quota_threshold_notified := told;
  NEW.quota_threshold_period := NEW.period_start;
  RETURN NEW;
END
$$;
