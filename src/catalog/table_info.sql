-- What create_link needs to know of a table: kind, persistence, columns, primary key and the
-- columns that carry a plain unique index on their own.
SELECT jsonb_build_object(
    'relkind', c.relkind::text,
    'persistence', c.relpersistence::text,
    'schema', n.nspname::text,
    'display', c.oid::regclass::text,
    'columns', coalesce((
        SELECT jsonb_agg(jsonb_build_object('name', a.attname::text, 'attnum', a.attnum, 'not_null', a.attnotnull,
                                            'type', format_type(a.atttypid, a.atttypmod))
                         ORDER BY a.attnum)
        FROM pg_catalog.pg_attribute a
        WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]'),
    'primary_key', coalesce((
        SELECT jsonb_agg(a.attname::text ORDER BY k.ord)
        FROM pg_catalog.pg_index i
        CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
        WHERE i.indrelid = c.oid AND i.indisprimary), '[]'),
    'unique_columns', coalesce((
        SELECT jsonb_agg(DISTINCT a.attname::text)
        FROM pg_catalog.pg_index i
        JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
        WHERE i.indrelid = c.oid AND i.indisunique AND i.indnkeyatts = 1
          AND i.indpred IS NULL AND i.indexprs IS NULL AND i.indisvalid), '[]'))
FROM pg_catalog.pg_class c
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid = $1
