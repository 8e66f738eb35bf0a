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

-- Reads and writes for a set of records, one statement each (src/table/mod.rs): the only
-- statements pg_syncbridge runs on a linked table, inbound and outbound. _statement writes
-- the statement for one kind of access to a linked table as text; Rust prepares it once per
-- session and runs it as the table's owner (security-restricted unless the owner is a
-- superuser, so the owner's triggers, defaults and domain checks never run with more rights
-- than the owner has) with search_path = pg_catalog, pg_temp, as a function with that SET
-- clause would (so the table's own triggers see what they saw when
-- the writes ran inside helper functions). Keys travel as text[] and are cast to the key
-- column's type; values as a jsonb array of objects by local column name, each through
-- jsonb_populate_record(set), so every column gets its own type's input function.

-- The keys and values of a set of records, numbered. Declared to return one row, so that
-- the statements that join it to a linked table take it as the outer side of a nested loop:
-- each key is looked up through the key column's index, and the rows are written in the
-- order of the records. With a true estimate the default costs (a cached index probe priced
-- like a disk read) make the planner hash the whole table for a few hundred keys, at a cost
-- that grows with the table, and write the rows in table order. (PL/pgSQL is never inlined:
-- the estimate holds.)
CREATE FUNCTION _numbered(p_keys text[], p_values jsonb DEFAULT NULL)
    RETURNS TABLE (k text, v jsonb, o bigint)
    LANGUAGE plpgsql IMMUTABLE ROWS 1 SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN QUERY SELECT u.k, u.v, u.o
                 FROM ROWS FROM (unnest(p_keys), jsonb_array_elements(p_values)) WITH ORDINALITY AS u(k, v, o);
END
$$;

-- The statement of kind p_kind on p_table, whose key column is p_key_column:
-- * rows ($1 keys): each key with its row as jsonb, keys without a row left out; each key is
--   looked up on its own (LATERAL ... LIMIT 1: the first row, as SELECT ... INTO took it).
-- * update ($1 keys, $2 values): writes the columns p_columns of each value into the row of
--   its key, in order; returns each row as stored with the number of its key.
-- * insert ($1 values): one row per value with the columns p_columns, the others take their
--   defaults; returns the rows as stored in the order of the values (RETURNING yields each
--   row as it is inserted, and they are inserted in array order).
-- * delete ($1 keys): deletes the rows.
-- * soft_delete ($1 keys): marks the rows deleted in the column p_columns[1]: true for a
--   boolean column, now() for a time column.
-- * check ($1 values): raises the error of the first value its column's type (or domain)
--   does not accept; writes nothing.
-- * keys (no arguments): the keys of all rows as text, in arrays of up to 1,000 in key order.
-- * store_ids ($1 local keys, $2 remote keys): writes each remote key into the remote-id
--   column p_columns[1] of the row of its local key, where it differs.
CREATE FUNCTION _statement(p_table regclass, p_key_column name, p_kind text, p_columns name[] DEFAULT '{}')
    RETURNS text
    LANGUAGE plpgsql STABLE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    key_type text := @extschema@._column_type(p_table, p_key_column);
    cols text := (SELECT string_agg(quote_ident(c), ', ') FROM unnest(p_columns) c);
    col_type text;
BEGIN
    CASE p_kind
    WHEN 'rows' THEN
        RETURN format('SELECT k.k, r.j FROM unnest($1::text[]) AS k(k)
                       CROSS JOIN LATERAL (SELECT to_jsonb(t) AS j FROM %s t WHERE t.%I = CAST(k.k AS %s) LIMIT 1) AS r',
                      p_table, p_key_column, key_type);
    WHEN 'update' THEN
        -- OFFSET 0 keeps jsonb_populate_record to one call per row (not one per column).
        RETURN format('UPDATE %1$s AS t SET %2$s
                       FROM (SELECT u.k, u.o, jsonb_populate_record(NULL::%1$s, u.v) AS r
                             FROM @extschema@._numbered($1::text[], $2::jsonb) AS u OFFSET 0) AS j
                       WHERE t.%3$I = CAST(j.k AS %4$s)
                       RETURNING j.o, to_jsonb(t)',
                      p_table, (SELECT string_agg(format('%I = (j.r).%I', c, c), ', ') FROM unnest(p_columns) c),
                      p_key_column, key_type);
    WHEN 'insert' THEN
        IF cols IS NULL THEN
            RETURN format('INSERT INTO %s AS t SELECT FROM jsonb_array_elements($1::jsonb) RETURNING 0::bigint, to_jsonb(t)',
                          p_table);
        END IF;
        RETURN format('INSERT INTO %1$s AS t (%2$s) SELECT %2$s FROM jsonb_populate_recordset(NULL::%1$s, $1::jsonb)
                       RETURNING 0::bigint, to_jsonb(t)', p_table, cols);
    WHEN 'delete' THEN
        RETURN format('DELETE FROM %s t USING @extschema@._numbered($1::text[]) AS k WHERE t.%I = CAST(k.k AS %s)',
                      p_table, p_key_column, key_type);
    WHEN 'soft_delete' THEN
        col_type := @extschema@._column_type(p_table, p_columns[1]);
        IF col_type IS NULL THEN
            RAISE EXCEPTION 'soft_delete_column "%" does not exist in %', p_columns[1], p_table
                USING ERRCODE = 'undefined_column',
                      HINT = 'Add the column, or set another with syncbridge.alter_link(..., ''{"soft_delete_column": ...}'').';
        END IF;
        RETURN format('UPDATE %s t SET %I = %s FROM @extschema@._numbered($1::text[]) AS k WHERE t.%I = CAST(k.k AS %s)',
                      p_table, p_columns[1], CASE WHEN col_type = 'boolean' THEN 'true' ELSE 'now()' END,
                      p_key_column, key_type);
    WHEN 'check' THEN
        RETURN format('SELECT count(*) FROM jsonb_populate_recordset(NULL::%s, $1::jsonb)', p_table);
    WHEN 'keys' THEN
        -- Key text as capture writes it (src/capture/values.rs, Codec::write_key), whatever
        -- the session's TimeZone and DateStyle: a timestamptz in UTC ISO 8601 with a Z, a
        -- date or timestamp as to_jsonb writes it (ISO); any other type's text output.
        RETURN format('SELECT array_agg(k.key ORDER BY k.key) FROM (SELECT %3$s AS key, (row_number() OVER (ORDER BY t.%1$I) - 1) / 1000 AS chunk FROM %2$s t) k
                       GROUP BY k.chunk ORDER BY k.chunk', p_key_column, p_table,
                      CASE (SELECT (CASE WHEN b.typtype = 'd' THEN b.typbasetype ELSE b.oid END)::regtype::text
                            FROM pg_type b WHERE b.oid = key_type::regtype)
                      WHEN 'timestamp with time zone' THEN
                          format('CASE WHEN t.%1$I BETWEEN ''0001-01-01 00:00:00Z'' AND ''9999-12-31 23:59:59.999999Z''
                                  THEN (to_jsonb(t.%1$I AT TIME ZONE ''UTC'') #>> ''{}'') || ''Z'' ELSE t.%1$I::text END', p_key_column)
                      WHEN 'date' THEN
                          format('CASE WHEN t.%1$I BETWEEN ''0001-01-01'' AND ''9999-12-31'' THEN to_jsonb(t.%1$I) #>> ''{}'' ELSE t.%1$I::text END', p_key_column)
                      WHEN 'timestamp without time zone' THEN
                          format('CASE WHEN t.%1$I BETWEEN ''0001-01-01'' AND ''9999-12-31 23:59:59.999999'' THEN to_jsonb(t.%1$I) #>> ''{}'' ELSE t.%1$I::text END', p_key_column)
                      ELSE format('t.%I::text', p_key_column) END);
    WHEN 'store_ids' THEN
        col_type := @extschema@._column_type(p_table, p_columns[1]);
        IF col_type IS NULL THEN
            RAISE EXCEPTION 'remote_id_column "%" does not exist in %', p_columns[1], p_table
                USING ERRCODE = 'undefined_column',
                      HINT = 'Add the column, or unset it: syncbridge.alter_link(..., ''{"remote_id_column": null}'').';
        END IF;
        RETURN format('UPDATE %1$s t SET %2$I = CAST(x.r AS %3$s) FROM unnest($1::text[], $2::text[]) AS x(k, r)
                       WHERE t.%4$I = CAST(x.k AS %5$s) AND t.%2$I IS DISTINCT FROM CAST(x.r AS %3$s)',
                      p_table, p_columns[1], col_type, p_key_column, key_type);
    END CASE;
END
$$;

REVOKE ALL ON FUNCTION _statement(regclass, name, text, name[]) FROM PUBLIC;
-- The statements run as the table's owner, who may have no other right in this schema.
-- _numbered only numbers its arguments.
GRANT EXECUTE ON FUNCTION _numbered(text[], jsonb) TO PUBLIC;

-- Pulled records that failed to apply (a user trigger or constraint refused them, say): the
-- pull's cursor moves past them, so the worker remembers them here by remote key and fetches
-- each again (GET {collection}/{id}, its current version) on later pulls when next_try comes,
-- with backoff, up to the link's max_attempts; then next_try is NULL (given up: shown in
-- link_status.inbound_failed, tried again by retry_failed() or when a pull brings the record
-- again). A record that applies, from a retry or any pull, is forgotten. A cancel or a lock
-- timeout is no record's failure: the pull fails and its cursor stays.
CREATE TABLE _inbound_retry (
    link_id    bigint NOT NULL,
    remote_key text COLLATE "C" NOT NULL,
    attempts   integer NOT NULL,
    next_try   timestamptz,
    last_error text,
    failed_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (link_id, remote_key)
);
REVOKE ALL ON _inbound_retry FROM PUBLIC;
SELECT pg_catalog.pg_extension_config_dump('_inbound_retry', '');

-- The remote keys whose retry is due, at most p_limit, the longest waiting first.
CREATE FUNCTION _inbound_retry_due(p_link bigint, p_limit integer) RETURNS SETOF text
    LANGUAGE sql STABLE SET search_path = pg_catalog, pg_temp AS $$
    SELECT remote_key FROM @extschema@._inbound_retry
    WHERE link_id = p_link AND next_try <= now() ORDER BY next_try LIMIT p_limit
$$;

-- After a pull: forgets the records that applied (p_ok) and the refetched ones the remote no
-- longer has (p_gone), counts a failed attempt for each of p_failed (with its error), and
-- returns each failed key with its attempts so far, for the worker to schedule the next try
-- (_inbound_retry_at).
CREATE FUNCTION _inbound_pulled(p_link bigint, p_ok text[], p_gone text[], p_failed text[], p_errors text[])
    RETURNS TABLE (remote_key text, attempts integer)
    LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_column
BEGIN
    -- (Most pulls have nothing to forget: no look at their keys then.)
    IF EXISTS (SELECT FROM @extschema@._inbound_retry r WHERE r.link_id = p_link) THEN
        DELETE FROM @extschema@._inbound_retry r
        WHERE r.link_id = p_link AND r.remote_key = ANY (p_ok || p_gone);
    END IF;
    RETURN QUERY
    INSERT INTO @extschema@._inbound_retry AS r (link_id, remote_key, attempts, last_error)
    SELECT p_link, f.k, 1, f.e FROM unnest(p_failed, p_errors) AS f(k, e)
    ON CONFLICT (link_id, remote_key) DO UPDATE
        SET attempts = r.attempts + 1, last_error = EXCLUDED.last_error, failed_at = now()
    RETURNING r.remote_key::text, r.attempts;
END
$$;

-- Sets when each failed record is tried next (NULL: given up).
CREATE FUNCTION _inbound_retry_at(p_link bigint, p_keys text[], p_next timestamptz[]) RETURNS void
    LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
    UPDATE @extschema@._inbound_retry r SET next_try = x.t
    FROM unnest(p_keys, p_next) AS x(k, t)
    WHERE r.link_id = p_link AND r.remote_key = x.k
$$;
