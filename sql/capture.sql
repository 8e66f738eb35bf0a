-- Capture: the trigger functions (C, in src/capture) and the DDL that installs them on a
-- linked table. Identifiers are quoted with %I; a regclass prints already quoted.

-- BEFORE INSERT OR UPDATE, FOR EACH ROW: maintains _sync_last_touch and _sync_fingerprint.
-- Named "zz_..." on the table so it fires after the user's own BEFORE triggers and sees the
-- row as it will be stored.
CREATE FUNCTION _capture_row() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'syncbridge_capture_row';

-- AFTER INSERT / UPDATE / DELETE, FOR EACH STATEMENT with transition tables: decides which
-- rows changed and writes their keys to the outbox in one insert per statement. SECURITY
-- DEFINER so that a role that may edit the table, but has no rights on syncbridge, is still
-- captured.
CREATE FUNCTION _capture_statement() RETURNS trigger
    LANGUAGE c SECURITY DEFINER AS 'MODULE_PATHNAME', 'syncbridge_capture_statement';

-- What the triggers need to know of a link, read on a cache miss by any role that may write
-- the table.
CREATE FUNCTION _capture_config(p_link bigint) RETURNS jsonb
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
               'id', l.id,
               'name', l.name,
               'relid', l.local_table::oid::bigint,
               'key_column', l.key_column,
               'loop_guards', to_jsonb(l.loop_guards),
               'track_columns', l.track_columns,
               'rules', coalesce((SELECT jsonb_agg(to_jsonb(f) - 'link_id')
                                  FROM @extschema@._field f WHERE f.link_id = l.id), '[]'))
    FROM @extschema@._link l
    WHERE l.id = p_link
      AND has_table_privilege(l.local_table, 'INSERT, UPDATE, DELETE')
$$;

CREATE FUNCTION _trigger_name(p_link text, p_kind text) RETURNS name
    LANGUAGE sql IMMUTABLE AS $$
    SELECT (CASE p_kind WHEN 'row' THEN 'zz_syncbridge_' ELSE 'syncbridge_' END || p_link || '_' || p_kind)::name
$$;

-- Installs the capture triggers (and tracking columns) of a link. Idempotent.
CREATE FUNCTION _install_capture(p_link bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l @extschema@._link;
BEGIN
    SELECT * INTO STRICT l FROM @extschema@._link WHERE id = p_link;
    PERFORM @extschema@._remove_triggers(p_link);
    IF l.direction NOT IN ('outbound', 'both') THEN
        RETURN;
    END IF;
    IF l.track_columns THEN
        EXECUTE format('ALTER TABLE %s ADD COLUMN IF NOT EXISTS %I text, ADD COLUMN IF NOT EXISTS %I text',
                       l.local_table, '_sync_last_touch', '_sync_fingerprint');
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %s FOR EACH ROW EXECUTE FUNCTION @extschema@._capture_row(%L)',
                       @extschema@._trigger_name(l.name, 'row'), l.local_table, p_link);
    END IF;
    EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON %s REFERENCING NEW TABLE AS syncbridge_new FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._capture_statement(%L)',
                   @extschema@._trigger_name(l.name, 'insert'), l.local_table, p_link);
    EXECUTE format('CREATE TRIGGER %I AFTER UPDATE ON %s REFERENCING OLD TABLE AS syncbridge_old NEW TABLE AS syncbridge_new FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._capture_statement(%L)',
                   @extschema@._trigger_name(l.name, 'update'), l.local_table, p_link);
    EXECUTE format('CREATE TRIGGER %I AFTER DELETE ON %s REFERENCING OLD TABLE AS syncbridge_old FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._capture_statement(%L)',
                   @extschema@._trigger_name(l.name, 'delete'), l.local_table, p_link);
END
$$;

-- Drops the capture triggers of a link (not its columns).
CREATE FUNCTION _remove_triggers(p_link bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l @extschema@._link;
    trig name;
BEGIN
    SELECT * INTO STRICT l FROM @extschema@._link WHERE id = p_link;
    FOR trig IN SELECT t.tgname FROM pg_trigger t
                WHERE t.tgrelid = l.local_table
                  AND t.tgname IN (SELECT @extschema@._trigger_name(l.name, k)
                                   FROM unnest(ARRAY['row', 'insert', 'update', 'delete']) k) LOOP
        EXECUTE format('DROP TRIGGER %I ON %s', trig, l.local_table);
    END LOOP;
END
$$;

-- Drops the tracking columns unless another link on the table still tracks.
CREATE FUNCTION _remove_columns(p_link bigint) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    l @extschema@._link;
BEGIN
    SELECT * INTO STRICT l FROM @extschema@._link WHERE id = p_link;
    IF l.track_columns AND NOT EXISTS (SELECT FROM @extschema@._link o
                                       WHERE o.local_table = l.local_table AND o.id <> l.id AND o.track_columns) THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I, DROP COLUMN IF EXISTS %I',
                       l.local_table, '_sync_last_touch', '_sync_fingerprint');
    END IF;
END
$$;

REVOKE ALL ON FUNCTION _install_capture(bigint), _remove_triggers(bigint), _remove_columns(bigint) FROM PUBLIC;
