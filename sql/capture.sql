-- Capture: the trigger functions (C, in src/capture) and the DDL that installs them on a
-- linked table. Identifiers are quoted with %I; a regclass prints already quoted.

-- BEFORE INSERT OR UPDATE OR DELETE, FOR EACH ROW, on links that track columns: maintains
-- _sync_last_touch and _sync_fingerprint and adds the keys of changed rows to the capture
-- buffer. Named "zz_..." on the table so it fires after the user's own BEFORE triggers and
-- sees the row as it will be stored.
CREATE FUNCTION _capture_row() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'syncbridge_capture_row';

-- AFTER INSERT / UPDATE / DELETE, FOR EACH STATEMENT with transition tables, on links that
-- do not track columns: the same decision from the old and new rows. The buffer is written to
-- syncbridge.outbox at pre-commit as the outbox's owner, so a role that may edit the table
-- but has no rights on syncbridge is still captured.
CREATE FUNCTION _capture_statement() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'syncbridge_capture_statement';

-- What the triggers need to know of a link for one table (or one of its partitions, whose
-- trigger copies carry the same link id). The triggers read it as the extension's owner.
CREATE FUNCTION _capture_config(p_link bigint, p_relid oid) RETURNS jsonb
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT jsonb_build_object(
               'id', l.id,
               'name', l.name,
               'relid', l.local_table::oid::bigint,
               'key_column', l.key_column,
               'loop_guards', to_jsonb(l.loop_guards),
               'track_columns', l.track_columns,
               'rules', coalesce((SELECT jsonb_agg(to_jsonb(f) - 'link_id')
                                  FROM @extschema@._field_rule f WHERE f.link_id = l.id), '[]'))
    FROM @extschema@._link l
    WHERE l.id = p_link
      AND p_relid IN (SELECT l.local_table::oid UNION ALL SELECT relid FROM pg_partition_tree(l.local_table))
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
        IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = l.local_table AND attname = '_sync_last_touch' AND NOT attisdropped) THEN
            EXECUTE format('ALTER TABLE %s ADD COLUMN %I text', l.local_table, '_sync_last_touch');
            -- Defaults for new rows only (existing rows stay NULL: never touched since): with
            -- them in place, the row trigger fills a user's insert without copying the row.
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %L', l.local_table, '_sync_last_touch', 'local');
        END IF;
        IF NOT EXISTS (SELECT FROM pg_attribute WHERE attrelid = l.local_table AND attname = '_sync_fingerprint' AND NOT attisdropped) THEN
            EXECUTE format('ALTER TABLE %s ADD COLUMN %I text', l.local_table, '_sync_fingerprint');
            EXECUTE format('ALTER TABLE %s ALTER COLUMN %I SET DEFAULT %L', l.local_table, '_sync_fingerprint', repeat('0', 32));
        END IF;
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE OR DELETE ON %s FOR EACH ROW EXECUTE FUNCTION @extschema@._capture_row(%L)',
                       @extschema@._trigger_name(l.name, 'row'), l.local_table, p_link);
        RETURN;
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
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = l.local_table) THEN
        RETURN;  -- the table is gone, and its triggers with it
    END IF;
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
    IF NOT EXISTS (SELECT FROM pg_class WHERE oid = l.local_table) THEN
        RETURN;
    END IF;
    -- Not tracking any more first, so the sql_drop guard lets these columns go.
    UPDATE @extschema@._link SET track_columns = false WHERE id = p_link;
    IF l.track_columns AND NOT EXISTS (SELECT FROM @extschema@._link o
                                       WHERE o.local_table = l.local_table AND o.id <> l.id AND o.track_columns) THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I, DROP COLUMN IF EXISTS %I',
                       l.local_table, '_sync_last_touch', '_sync_fingerprint');
    END IF;
END
$$;

-- The schema-qualified name under which record state is kept for a table.
CREATE FUNCTION _table_identity(p_table oid) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('%I.%I', n.nspname, c.relname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = p_table
$$;

-- Keeps linked tables and their links consistent when DDL drops things:
-- * dropping a linked table drops its links, keeping their record state (id map) so that a
--   link re-created with the same name on a table of the same name pairs records again;
-- * dropping a link's key column, or a tracking column, or the column its local_time_column
--   or soft_delete_column setting names, is refused: drop the link first, turn tracking off,
--   or unset the setting;
-- * dropping a synced column drops its field rule, with a warning and an event ('ignored',
--   with the field's name): the remote keeps the field's last value. Dropping the
--   remote_id_column unsets that setting, also with a warning and an event.
-- SECURITY DEFINER: it fires for every role's DROP, and an ordinary role may not read the
-- catalog of links (without it, any DROP TABLE by such a role failed on _link).
CREATE FUNCTION _on_sql_drop() RETURNS event_trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    obj record;
    l @extschema@._link;
BEGIN
    FOR obj IN SELECT * FROM pg_event_trigger_dropped_objects()
               WHERE classid = 'pg_class'::regclass AND object_type IN ('table', 'table column') LOOP
        FOR l IN SELECT * FROM @extschema@._link WHERE local_table = obj.objid LOOP
            IF obj.objsubid = 0 THEN
                INSERT INTO @extschema@._kept_record (link_name, table_name, record)
                SELECT l.name, obj.object_identity, to_jsonb(r) - 'link_id'
                FROM @extschema@._record r WHERE r.link_id = l.id;
                DELETE FROM @extschema@.outbox WHERE link_id = l.id;
                DELETE FROM @extschema@._event WHERE link_id = l.id;
                DELETE FROM @extschema@._link WHERE id = l.id;
                RAISE WARNING 'pg_syncbridge: link "%" was dropped with its table %', l.name, obj.object_identity
                    USING HINT = 'Its record state is kept: a link of the same name created on a table of this name takes it up again.';
            ELSIF obj.address_names[3] = l.key_column THEN
                RAISE EXCEPTION 'cannot drop column "%": it is the key of link "%"', l.key_column, l.name
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Drop the link first: SELECT syncbridge.drop_link(%L);', l.name);
            ELSIF l.track_columns AND obj.address_names[3] IN ('_sync_last_touch', '_sync_fingerprint') THEN
                RAISE EXCEPTION 'cannot drop column "%": link "%" keeps it', obj.address_names[3], l.name
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Turn tracking off first: SELECT syncbridge.alter_link(%L, ''{"track_columns": false}'');', l.name);
            ELSE
                PERFORM @extschema@._column_dropped(l, obj.address_names[3]);
            END IF;
        END LOOP;
    END LOOP;
END
$$;
CREATE EVENT TRIGGER syncbridge_sql_drop ON sql_drop EXECUTE FUNCTION _on_sql_drop();

-- A column of link l's table was dropped (not its key, not a tracking column): see
-- _on_sql_drop. Never silent when something that travelled stops travelling.
CREATE FUNCTION _column_dropped(l _link, p_column name) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    f @extschema@._field;
    setting text;
    dir text := CASE l.direction WHEN 'inbound' THEN 'inbound' ELSE 'outbound' END;
BEGIN
    FOREACH setting IN ARRAY ARRAY['local_time_column', 'soft_delete_column'] LOOP
        IF l.settings ->> setting = p_column THEN
            RAISE EXCEPTION 'cannot drop column "%": it is the % of link "%"', p_column, setting, l.name
                USING ERRCODE = 'dependent_objects_still_exist',
                      HINT = format('Unset it first: SELECT syncbridge.alter_link(%L, %L);', l.name,
                                    jsonb_build_object(setting, NULL));
        END IF;
    END LOOP;
    IF l.settings ->> 'remote_id_column' = p_column THEN
        UPDATE @extschema@._link SET settings = settings - 'remote_id_column' WHERE id = l.id;
        INSERT INTO @extschema@._event (link_id, direction, status, reason, detail)
        VALUES (l.id, dir, 'ignored',
                format('column "%s" was dropped: it was the remote_id_column, which is unset now (the id map keeps the remote ids)', p_column),
                jsonb_build_object('ddl', 'drop column', 'column', p_column));
        RAISE WARNING 'pg_syncbridge: column "%" was the remote_id_column of link "%"; the setting is unset', p_column, l.name
            USING HINT = 'The id map keeps the remote ids; name another column with alter_link to store them in the table again.';
    END IF;
    DELETE FROM @extschema@._field WHERE link_id = l.id AND column_name = p_column RETURNING * INTO f;
    -- Did it travel? A rule says so; without one, every column but the extension's own, the
    -- remote-id column and one named like the remote's key field travels under its name.
    IF coalesce(f.synced, p_column NOT IN ('_sync_last_touch', '_sync_fingerprint')
                          AND p_column <> l.remote_key_field
                          AND p_column IS DISTINCT FROM l.settings ->> 'remote_id_column') THEN
        INSERT INTO @extschema@._event (link_id, direction, status, reason, detail)
        VALUES (l.id, dir, 'ignored',
                format('column "%s" was dropped: field "%s" no longer travels; the remote keeps its last value',
                       p_column, coalesce(f.remote_field, p_column)),
                jsonb_build_object('ddl', 'drop column', 'column', p_column, 'remote_field', coalesce(f.remote_field, p_column)));
        RAISE WARNING 'pg_syncbridge: column "%" of link "%" was dropped; field "%" no longer travels', p_column, l.name,
                      coalesce(f.remote_field, p_column)
            USING HINT = 'The remote keeps the field''s last value. Add the column again and backfill to send it, or clear the field on the remote.';
    END IF;
END
$$;

-- Follows a column rename on a linked table (ALTER TABLE ... RENAME COLUMN p_old TO p_new; the
-- C event trigger below reads both names from the statement, the table from
-- pg_event_trigger_ddl_commands()), for every link of the table or of a partitioned table
-- it belongs to:
-- * the key column, and columns named by settings (remote_id_column, local_time_column,
--   soft_delete_column), are renamed in the link;
-- * the column's field rule follows it, and its remote field stays what it was: a column that
--   travelled under its own name gets a rule with remote_field = the old name (one named like
--   the remote's key field, which did not travel, gets synced => false);
-- * renaming a tracking column is refused: the triggers find them by name.
-- Returns the tables whose links changed (their capture caches are invalidated).
CREATE FUNCTION _column_renamed(p_old name, p_new name) RETURNS SETOF oid
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t oid;
    l @extschema@._link;
    travelled boolean;
BEGIN
    FOR t IN SELECT DISTINCT c.objid FROM pg_event_trigger_ddl_commands() c
             WHERE c.classid = 'pg_class'::regclass AND c.objsubid > 0 LOOP
        FOR l IN SELECT * FROM @extschema@._link
                 WHERE local_table = t OR local_table IN (SELECT relid FROM pg_partition_tree(t)) FOR UPDATE LOOP
            IF l.track_columns AND p_old IN ('_sync_last_touch', '_sync_fingerprint') THEN
                RAISE EXCEPTION 'cannot rename column "%": link "%" keeps it under this name', p_old, l.name
                    USING ERRCODE = 'dependent_objects_still_exist',
                          HINT = format('Leave it as it is, or turn tracking off first: SELECT syncbridge.alter_link(%L, ''{"track_columns": false}'');', l.name);
            END IF;
            -- A rule left over for a column of the new name that no longer exists.
            DELETE FROM @extschema@._field WHERE link_id = l.id AND column_name = p_new;
            travelled := p_old NOT IN ('_sync_last_touch', '_sync_fingerprint') AND p_old <> l.remote_key_field;
            UPDATE @extschema@._field
            SET column_name = p_new,
                remote_field = coalesce(remote_field, CASE WHEN travelled THEN p_old::text END),
                synced = synced AND (remote_field IS NOT NULL OR travelled)
            WHERE link_id = l.id AND column_name = p_old;
            IF NOT FOUND AND p_old IS DISTINCT FROM l.settings ->> 'remote_id_column' THEN
                INSERT INTO @extschema@._field (link_id, column_name, remote_field, synced)
                VALUES (l.id, p_new, CASE WHEN travelled THEN p_old::text END, travelled);
            END IF;
            UPDATE @extschema@._link
            SET key_column = CASE WHEN key_column = p_old THEN p_new ELSE key_column END,
                settings = settings || coalesce((SELECT jsonb_object_agg(s.key, p_new) FROM jsonb_each_text(settings) s
                                                 WHERE s.key IN ('remote_id_column', 'local_time_column', 'soft_delete_column')
                                                   AND s.value = p_old), '{}')
            WHERE id = l.id;
            RETURN NEXT l.local_table::oid;
        END LOOP;
    END LOOP;
END
$$;

-- ddl_command_end of ALTER TABLE: a column rename calls _column_renamed (src/capture/ddl.rs),
-- as the extension's owner.
CREATE FUNCTION _on_ddl_end() RETURNS event_trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'syncbridge_on_ddl_end';
CREATE EVENT TRIGGER syncbridge_ddl_end ON ddl_command_end WHEN TAG IN ('ALTER TABLE') EXECUTE FUNCTION _on_ddl_end();

REVOKE ALL ON FUNCTION _install_capture(bigint), _remove_triggers(bigint), _remove_columns(bigint),
                       _capture_config(bigint, oid), _column_dropped(_link, name), _column_renamed(name, name) FROM PUBLIC;
