-- Inbound writes into a linked table. Identifiers are quoted with %I (a regclass prints
-- quoted already); values travel as parameters through jsonb_populate_record(set), so each
-- column gets its own type's input function.

-- The type of a column as SQL writes it, for casts of key texts. (PL/pgSQL, so that its
-- query is planned once per session, not at every call as a SQL function with SET would be.)
CREATE FUNCTION _column_type(p_table regclass, p_column name) RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN (SELECT format_type(atttypid, atttypmod) FROM pg_attribute
            WHERE attrelid = p_table AND attname = p_column AND NOT attisdropped);
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

REVOKE ALL ON FUNCTION _misfit_field(regclass, jsonb) FROM PUBLIC;

-- Writes for a set of records, one statement each (src/inbound/write.rs). Keys travel as
-- text[] and are cast to the key column's type; values as a jsonb array of objects (local
-- column names), each through jsonb_populate_record(set).

-- The rows with these keys as jsonb, each with the key it was asked for; keys without a row
-- are left out. Each key is looked up on its own (LATERAL ... LIMIT 1, the first row as
-- SELECT ... INTO takes it), so the key column's index serves whatever the table's size:
-- left to join the key list, the planner may hash the whole table instead.
CREATE FUNCTION _rows_json(p_table regclass, p_key_column name, p_keys text[])
    RETURNS TABLE (asked text, local_row jsonb)
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY EXECUTE format(
        'SELECT k.k, r.j FROM unnest($1) AS k(k)
         CROSS JOIN LATERAL (SELECT to_jsonb(t) AS j FROM %s t WHERE t.%I = CAST(k.k AS %s) LIMIT 1) AS r',
        p_table, p_key_column, @extschema@._column_type(p_table, p_key_column)) USING p_keys;
END
$$;

-- The keys and values of a set of records, numbered. Declared to return one row, so that
-- the statements that join it to a linked table (_update_rows, _delete_rows,
-- _soft_delete_rows) take it as the outer side of a nested loop: each key is looked up
-- through the key column's index, and the rows are written in the order of the records.
-- With a true estimate the default costs (a cached index probe priced like a disk read) make
-- the planner hash the whole table for a few hundred keys, at a cost that grows with the
-- table, and write the rows in table order. (PL/pgSQL is never inlined: the estimate holds.)
CREATE FUNCTION _numbered(p_keys text[], p_values jsonb DEFAULT NULL)
    RETURNS TABLE (k text, v jsonb, o bigint)
    LANGUAGE plpgsql IMMUTABLE ROWS 1 SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT u.k, u.v, u.o
                 FROM ROWS FROM (unnest(p_keys), jsonb_array_elements(p_values)) WITH ORDINALITY AS u(k, v, o);
END
$$;

-- Raises the error of the first value in p_values (objects by local column name) that its
-- column's type (or domain) does not accept; writes nothing.
CREATE FUNCTION _check_values(p_table regclass, p_values jsonb) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('SELECT count(*) FROM jsonb_populate_recordset(NULL::%s, $1)', p_table) USING p_values;
END
$$;

-- Writes the columns p_columns of p_values[i] into the row with key p_keys[i], for every i in
-- order, in one UPDATE. Returns each updated row as stored with its i (ord).
CREATE FUNCTION _update_rows(p_table regclass, p_key_column name, p_columns name[], p_keys text[], p_values jsonb)
    RETURNS TABLE (ord bigint, stored jsonb)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    sets text;
BEGIN
    SELECT string_agg(format('%I = (j.r).%I', c, c), ', ') INTO sets FROM unnest(p_columns) c;
    -- OFFSET 0 keeps jsonb_populate_record to one call per row (not one per column).
    RETURN QUERY EXECUTE format(
        'UPDATE %1$s AS t SET %2$s
         FROM (SELECT u.k, u.o, jsonb_populate_record(NULL::%1$s, u.v) AS r
               FROM @extschema@._numbered($1, $2) AS u OFFSET 0) AS j
         WHERE t.%3$I = CAST(j.k AS %4$s)
         RETURNING j.o, to_jsonb(t)',
        p_table, sets, p_key_column, @extschema@._column_type(p_table, p_key_column)) USING p_keys, p_values;
END
$$;

-- Inserts one row per element of p_values with the columns p_columns (the others take their
-- defaults), in one INSERT. Returns the rows as stored, in the order of p_values: RETURNING
-- yields each row as it is inserted, and the rows are inserted in array order.
CREATE FUNCTION _insert_rows(p_table regclass, p_columns name[], p_values jsonb) RETURNS SETOF jsonb
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cols text;
BEGIN
    SELECT string_agg(quote_ident(c), ', ') INTO cols FROM unnest(p_columns) c;
    IF cols IS NULL THEN
        RETURN QUERY EXECUTE format('INSERT INTO %s AS t SELECT FROM jsonb_array_elements($1) RETURNING to_jsonb(t)', p_table)
            USING p_values;
    ELSE
        RETURN QUERY EXECUTE format('INSERT INTO %1$s AS t (%2$s) SELECT %2$s FROM jsonb_populate_recordset(NULL::%1$s, $1) RETURNING to_jsonb(t)',
                                    p_table, cols) USING p_values;
    END IF;
END
$$;

-- Deletes arriving from the remote: the rows themselves, or a soft-delete mark (true for a
-- boolean column, now() for a time column).
CREATE FUNCTION _delete_rows(p_table regclass, p_key_column name, p_keys text[]) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('DELETE FROM %s t USING @extschema@._numbered($1) AS k WHERE t.%I = CAST(k.k AS %s)',
                   p_table, p_key_column, @extschema@._column_type(p_table, p_key_column)) USING p_keys;
END
$$;

CREATE FUNCTION _soft_delete_rows(p_table regclass, p_key_column name, p_keys text[], p_column name) RETURNS void
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    coltype text := @extschema@._column_type(p_table, p_column);
BEGIN
    IF coltype IS NULL THEN
        RAISE EXCEPTION 'soft_delete_column "%" does not exist in %', p_column, p_table
            USING ERRCODE = 'undefined_column',
                  HINT = 'Add the column, or set another with syncbridge.alter_link(..., ''{"soft_delete_column": ...}'').';
    END IF;
    EXECUTE format('UPDATE %s t SET %I = %s FROM @extschema@._numbered($1) AS k WHERE t.%I = CAST(k.k AS %s)',
                   p_table, p_column, CASE WHEN coltype = 'boolean' THEN 'true' ELSE 'now()' END,
                   p_key_column, @extschema@._column_type(p_table, p_key_column)) USING p_keys;
END
$$;

REVOKE ALL ON FUNCTION _rows_json(regclass, name, text[]), _numbered(text[], jsonb), _check_values(regclass, jsonb),
                       _update_rows(regclass, name, name[], text[], jsonb),
                       _insert_rows(regclass, name[], jsonb), _delete_rows(regclass, name, text[]),
                       _soft_delete_rows(regclass, name, text[], name) FROM PUBLIC;
