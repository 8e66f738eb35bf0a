-- Views users read; loaded after the functions.

CREATE VIEW links AS
SELECT l.id,
       l.name,
       l.local_table,
       l.key_column,
       l.remote_base_url,
       l.remote_collection,
       l.remote_key_field,
       l.direction,
       l.loop_guards,
       l.contention,
       l.schedule,
       l.track_columns,
       CASE WHEN l.paused THEN 'paused' ELSE 'active' END AS state,
       l.settings,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                            'column', f.column_name,
                            'remote_field', coalesce(f.remote_field, f.column_name::text),
                            'owner', f.owner,
                            'watched', f.watched,
                            'volatile', f.volatile,
                            'synced', f.synced) ORDER BY f.column_name)
                 FROM @extschema@._field_rule f
                 WHERE f.link_id = l.id), '[]'::jsonb) AS field_rules,
       l.created_at
FROM @extschema@._link l;
COMMENT ON VIEW links IS 'One row per link: what it binds, its guards, contention policy, schedule and field rules.';

CREATE VIEW events AS
SELECT e.id, e.at, l.name AS link, e.direction, e.local_key, e.remote_key, e.status, e.reason,
       e.attempt, e.next_retry, e.fingerprint, e.detail
FROM @extschema@._event e
LEFT JOIN @extschema@._link l ON l.id = e.link_id;
COMMENT ON VIEW events IS 'One row per record and outcome: delivered, ignored (with reason), blocked, failed, conflict, quarantined.';

CREATE VIEW conflicts AS
SELECT c.id, c.at, l.name AS link, c.local_key, c.remote_key, c.field, c.base, c.local, c.remote, c.winner, c.rule
FROM @extschema@._conflict c
LEFT JOIN @extschema@._link l ON l.id = c.link_id;
COMMENT ON VIEW conflicts IS 'One row per contended field of an inbound record: base, local and remote value, the winner and the rule.';

-- Privileges. Any role may use the schema (the capture triggers run in the editing role's
-- session and switch to the extension owner for their few internal reads and writes) and call
-- fingerprint(); it reads nothing else. Managing links is for superusers: the functions
-- check it and say so.
GRANT USAGE ON SCHEMA @extschema@ TO PUBLIC;
DO $$
DECLARE
    f regprocedure;
BEGIN
    FOR f IN SELECT p.oid::regprocedure FROM pg_proc p
             WHERE p.pronamespace = '@extschema@'::regnamespace
               AND p.proname IN ('create_link', 'alter_link', 'drop_link', 'pause_link', 'resume_link', 'set_field',
                                 'apply_inbound', 'explain', '_backfill_keys') LOOP
        EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
    END LOOP;
END
$$;
