-- The change feed (src/db/change-feed.ts): every change that a server's hot-path caches depend on sends a small
-- notification on the channel `mm_changes`, `<kind>:<id>`, from a trigger, so it is sent by every path that
-- writes (services, operator scripts, raw SQL) and in the same transaction as the change: listeners hear it only
-- once it committed, in commit order, and never for a change that rolled back.
--   s:<session id>            a session changed (revoked) or was deleted
--   u:<user id>               an account changed (role, e-mail, name, ...) or was deleted
--   k:<API key prefix>        an API key was revoked, re-scoped, moved or deleted
--   c:<consumer id>:<model>   a contract of this consumer for this model was created, changed in what decides
--                             whether it may be used, or deleted
--   m:<model id>              the serving catalog changed: a model, one of its versions or aliases
-- Writes on the hot path itself (quota counters, rate windows, API keys' last use) notify nothing.

CREATE FUNCTION mm_notify_session_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mm_changes', 's:' || OLD.id);
  RETURN NULL;
END
$$;
CREATE TRIGGER sessions_change_feed AFTER UPDATE OR DELETE ON sessions
  FOR EACH ROW EXECUTE FUNCTION mm_notify_session_change();

CREATE FUNCTION mm_notify_user_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mm_changes', 'u:' || OLD.id);
  RETURN NULL;
END
$$;
CREATE TRIGGER users_change_feed AFTER UPDATE OR DELETE ON users
  FOR EACH ROW EXECUTE FUNCTION mm_notify_user_change();

CREATE FUNCTION mm_notify_api_key_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mm_changes', 'k:' || OLD.prefix);
  IF TG_OP = 'UPDATE' AND NEW.prefix <> OLD.prefix THEN
    PERFORM pg_notify('mm_changes', 'k:' || NEW.prefix);
  END IF;
  RETURN NULL;
END
$$;
-- Not on last_used_at, which is written every flush for every key in use.
CREATE TRIGGER api_keys_change_feed AFTER UPDATE ON api_keys
  FOR EACH ROW WHEN (
    OLD.revoked_at IS DISTINCT FROM NEW.revoked_at OR OLD.scopes IS DISTINCT FROM NEW.scopes
    OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash OR OLD.user_id IS DISTINCT FROM NEW.user_id
    OR OLD.prefix IS DISTINCT FROM NEW.prefix)
  EXECUTE FUNCTION mm_notify_api_key_change();
CREATE TRIGGER api_keys_delete_change_feed AFTER DELETE ON api_keys
  FOR EACH ROW EXECUTE FUNCTION mm_notify_api_key_change();

CREATE FUNCTION mm_notify_contract_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP <> 'INSERT' THEN
    PERFORM pg_notify('mm_changes', 'c:' || OLD.consumer_id || ':' || OLD.model_id);
  END IF;
  IF TG_OP <> 'DELETE' THEN
    PERFORM pg_notify('mm_changes', 'c:' || NEW.consumer_id || ':' || NEW.model_id);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER contracts_insert_delete_change_feed AFTER INSERT OR DELETE ON contracts
  FOR EACH ROW EXECUTE FUNCTION mm_notify_contract_change();
-- Only what decides whether and how a contract may be used (src/licensing/predict-authorizer.ts); every
-- metered call updates the quota counter and the rate window, which notify nothing.
CREATE TRIGGER contracts_update_change_feed AFTER UPDATE ON contracts
  FOR EACH ROW WHEN (
    OLD.status IS DISTINCT FROM NEW.status OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
    OR OLD.version_range IS DISTINCT FROM NEW.version_range
    OR OLD.price_per_prediction IS DISTINCT FROM NEW.price_per_prediction OR OLD.currency IS DISTINCT FROM NEW.currency
    OR OLD.rate_limit_per_minute IS DISTINCT FROM NEW.rate_limit_per_minute OR OLD.period IS DISTINCT FROM NEW.period
    OR OLD.consumer_id IS DISTINCT FROM NEW.consumer_id OR OLD.model_id IS DISTINCT FROM NEW.model_id)
  EXECUTE FUNCTION mm_notify_contract_change();

CREATE FUNCTION mm_notify_catalog_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  -- Each statement is planned when it runs: the other table's column is never looked up.
  IF TG_TABLE_NAME = 'models' THEN
    PERFORM pg_notify('mm_changes', 'm:' || CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
  ELSE
    PERFORM pg_notify('mm_changes', 'm:' || CASE WHEN TG_OP = 'DELETE' THEN OLD.model_id ELSE NEW.model_id END);
  END IF;
  RETURN NULL;
END
$$;
CREATE TRIGGER models_change_feed AFTER INSERT OR UPDATE OR DELETE ON models
  FOR EACH ROW EXECUTE FUNCTION mm_notify_catalog_change();
CREATE TRIGGER model_versions_change_feed AFTER INSERT OR UPDATE OR DELETE ON model_versions
  FOR EACH ROW EXECUTE FUNCTION mm_notify_catalog_change();
CREATE TRIGGER model_aliases_change_feed AFTER INSERT OR UPDATE OR DELETE ON model_aliases
  FOR EACH ROW EXECUTE FUNCTION mm_notify_catalog_change();

-- A TRUNCATE names no rows: every replica drops every cache ('*:', see change-feed.ts).
CREATE FUNCTION mm_notify_clear_all() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('mm_changes', '*:');
  RETURN NULL;
END
$$;
CREATE TRIGGER sessions_truncate_change_feed AFTER TRUNCATE ON sessions
  FOR EACH STATEMENT EXECUTE FUNCTION mm_notify_clear_all();
CREATE TRIGGER users_truncate_change_feed AFTER TRUNCATE ON users
  FOR EACH STATEMENT EXECUTE FUNCTION mm_notify_clear_all();
CREATE TRIGGER api_keys_truncate_change_feed AFTER TRUNCATE ON api_keys
  FOR EACH STATEMENT EXECUTE FUNCTION mm_notify_clear_all();
CREATE TRIGGER contracts_truncate_change_feed AFTER TRUNCATE ON contracts
  FOR EACH STATEMENT EXECUTE FUNCTION mm_notify_clear_all();
CREATE TRIGGER models_truncate_change_feed AFTER TRUNCATE ON models
  FOR EACH STATEMENT EXECUTE FUNCTION mm_notify_clear_all();
CREATE TRIGGER model_versions_truncate_change_feed AFTER TRUNCATE ON model_versions
  FOR EACH STATEMENT EXECUTE FUNCTION mm_notify_clear_all();
CREATE TRIGGER model_aliases_truncate_change_feed AFTER TRUNCATE ON model_aliases
  FOR EACH STATEMENT EXECUTE FUNCTION mm_notify_clear_all();
