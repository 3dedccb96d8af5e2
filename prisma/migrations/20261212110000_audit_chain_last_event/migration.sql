-- The audit chain's trigger found the last event with ORDER BY chain_seq DESC NULLS LAST, an order the unique index
-- on chain_seq (ascending, nulls last) cannot give backwards: every insert sorted the whole audit table under the
-- chain's global lock, so an insert cost grew with the table and a statement writing n events cost n table scans
-- (an alias move offering an upgrade to 4,000 contracts held the lock for ~10 s). Same event (the highest numbered;
-- rows from before the chain have none), read from the index's end.
CREATE OR REPLACE FUNCTION audit_events_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  last_event record;
BEGIN
  PERFORM pg_advisory_xact_lock(7275001);
  SELECT chain_seq, hash INTO last_event FROM audit_events WHERE chain_seq IS NOT NULL ORDER BY chain_seq DESC LIMIT 1;
  NEW.chain_seq := coalesce(last_event.chain_seq, 0) + 1;
  NEW.prev_hash := coalesce(last_event.hash, 'genesis');
  NEW.hash := mm_audit_event_hash(NEW, NEW.prev_hash);
  RETURN NEW;
END
$$;
