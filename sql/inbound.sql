-- Inbound writes into a linked table. Identifiers are quoted with %I (a regclass prints
-- quoted already); values travel as parameters through jsonb_populate_record, so each column
-- gets its own type's input function.

-- The row with this key as jsonb, or NULL.
CREATE FUNCTION _row_json(p_table regclass, p_key_column name, p_key text) RETURNS jsonb
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r jsonb;
BEGIN
    EXECUTE format('SELECT to_jsonb(t) FROM %s t WHERE t.%I = CAST($1 AS %s)',
                   p_table, p_key_column, @extschema@._column_type(p_table, p_key_column))
        INTO r USING p_key;
    RETURN r;
END
$$;

CREATE FUNCTION _column_type(p_table regclass, p_column name) RETURNS text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format_type(atttypid, atttypmod) FROM pg_attribute
    WHERE attrelid = p_table AND attname = p_column AND NOT attisdropped
$$;

-- Writes the columns named in p_values (local column names) into the row with key p_key, or
-- inserts a row when p_key is NULL (columns not given take their defaults). Returns the row
-- as stored, after defaults and the table's own triggers.
CREATE FUNCTION _write_row(p_table regclass, p_key_column name, p_key text, p_values jsonb) RETURNS jsonb
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols text;
    r jsonb;
BEGIN
    IF p_key IS NULL THEN
        SELECT string_agg(quote_ident(k), ', ') INTO cols FROM jsonb_object_keys(p_values) k;
        IF cols IS NULL THEN
            EXECUTE format('INSERT INTO %s AS t DEFAULT VALUES RETURNING to_jsonb(t)', p_table) INTO r;
        ELSE
            EXECUTE format('INSERT INTO %1$s AS t (%2$s) SELECT %2$s FROM jsonb_populate_record(NULL::%1$s, $1) RETURNING to_jsonb(t)',
                           p_table, cols) INTO r USING p_values;
        END IF;
    ELSE
        SELECT string_agg(format('%I = j.%I', k, k), ', ') INTO cols FROM jsonb_object_keys(p_values) k;
        EXECUTE format('UPDATE %1$s AS t SET %2$s FROM jsonb_populate_record(NULL::%1$s, $1) j WHERE t.%3$I = CAST($2 AS %4$s) RETURNING to_jsonb(t)',
                       p_table, cols, p_key_column, @extschema@._column_type(p_table, p_key_column)) INTO r USING p_values, p_key;
    END IF;
    RETURN r;
END
$$;

-- The first field of p_values whose value the column's type does not accept, with the
-- reason; NULL when every value fits. Used to name the field in a failed record's reason.
CREATE FUNCTION _misfit_field(p_table regclass, p_values jsonb) RETURNS text
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    k text;
    ignored text;
BEGIN
    FOR k IN SELECT jsonb_object_keys(p_values) LOOP
        BEGIN
            EXECUTE format('SELECT (jsonb_populate_record(NULL::%s, $1)).%I::text', p_table, k)
                INTO ignored USING jsonb_build_object(k, p_values -> k);
        EXCEPTION WHEN OTHERS THEN
            RETURN format('field "%s": %s', k, SQLERRM);
        END;
    END LOOP;
    RETURN NULL;
END
$$;

REVOKE ALL ON FUNCTION _row_json(regclass, name, text), _write_row(regclass, name, text, jsonb),
                       _misfit_field(regclass, jsonb) FROM PUBLIC;

-- Deletes arriving from the remote: the row itself, or a soft-delete mark (true for a boolean
-- column, now() for a time column).
CREATE FUNCTION _delete_row(p_table regclass, p_key_column name, p_key text) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('DELETE FROM %s t WHERE t.%I = CAST($1 AS %s)',
                   p_table, p_key_column, @extschema@._column_type(p_table, p_key_column)) USING p_key;
END
$$;

CREATE FUNCTION _soft_delete(p_table regclass, p_key_column name, p_key text, p_column name) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coltype text := @extschema@._column_type(p_table, p_column);
BEGIN
    IF coltype IS NULL THEN
        RAISE EXCEPTION 'soft_delete_column "%" does not exist in %', p_column, p_table
            USING ERRCODE = 'undefined_column',
                  HINT = 'Add the column, or set another with syncbridge.alter_link(..., ''{"soft_delete_column": ...}'').';
    END IF;
    EXECUTE format('UPDATE %s t SET %I = %s WHERE t.%I = CAST($1 AS %s)',
                   p_table, p_column, CASE WHEN coltype = 'boolean' THEN 'true' ELSE 'now()' END,
                   p_key_column, @extschema@._column_type(p_table, p_key_column)) USING p_key;
END
$$;

REVOKE ALL ON FUNCTION _delete_row(regclass, name, text), _soft_delete(regclass, name, text, name) FROM PUBLIC;
