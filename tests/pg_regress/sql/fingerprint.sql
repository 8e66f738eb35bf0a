-- syncbridge.fingerprint(record jsonb, volatile text[] default '{}'): 32 hex characters of
-- blake3 over the record's canonical JSON. Equal content gives equal fingerprints whatever
-- the key order, number spelling (1, 1.0, 1.00, 1e0) or UTC offset of a timestamp; the
-- volatile top-level fields are left out. The capture trigger's _sync_fingerprint of a row
-- equals syncbridge.fingerprint of that row as JSON (to_jsonb), for every common column type,
-- whatever the session's DateStyle / IntervalStyle / extra_float_digits.
begin;

SELECT syncbridge.fingerprint('{"id": 7, "name": "Ada"}') AS fp,
       syncbridge.fingerprint('{"id": 7, "name": "Ada"}') ~ '^[0-9a-f]{32}$' AS is_32_hex;
SELECT syncbridge.fingerprint('{}') AS empty_object, syncbridge.fingerprint('null') AS json_null;

-- Key order, also nested.
SELECT syncbridge.fingerprint('{"a": 1, "b": {"y": 2, "x": [3, {"q": 1, "p": 2}]}}')
     = syncbridge.fingerprint(jsonb_build_object('b', jsonb_build_object('x', '[3, {"p": 2, "q": 1}]'::jsonb, 'y', 2), 'a', 1)) AS key_order_ignored;

-- Numbers.
SELECT v, syncbridge.fingerprint(jsonb_build_object('amount', v::jsonb)) AS fp
FROM (VALUES ('1'), ('1.0'), ('1.00'), ('1e0'), ('10e-1'), ('1.5'), ('"1"')) AS t(v)
ORDER BY v;
SELECT syncbridge.fingerprint('{"n": 123456789012345678901234567890.10}')
     = syncbridge.fingerprint('{"n": 123456789012345678901234567890.1}') AS big_numbers_exact,
       syncbridge.fingerprint('{"n": 123456789012345678901234567890.1}')
     = syncbridge.fingerprint('{"n": 123456789012345678901234567890.2}') AS big_numbers_differ;

-- Timestamps with a UTC offset are compared as instants; without an offset, as written.
SELECT v, syncbridge.fingerprint(jsonb_build_object('at', v)) AS fp
FROM (VALUES ('2024-05-01T12:00:00+02:00'), ('2024-05-01 10:00:00+00'), ('2024-05-01T10:00:00Z'),
             ('2024-05-01T05:30:00-0430'), ('2024-05-01T10:00:00'), ('2024-05-01 10:00:00')) AS t(v)
ORDER BY v;

-- null is not the same as absent; "1" is not 1; strings are compared exactly.
SELECT syncbridge.fingerprint('{"id": 1, "x": null}') = syncbridge.fingerprint('{"id": 1}') AS null_is_absent,
       syncbridge.fingerprint('{"x": "1"}') = syncbridge.fingerprint('{"x": 1}') AS string_is_number,
       syncbridge.fingerprint('{"x": "Ada"}') = syncbridge.fingerprint('{"x": "ada"}') AS case_ignored;

-- Volatile fields: left out at the top level only.
SELECT syncbridge.fingerprint('{"id": 1, "synced_at": "2024-01-01"}', '{synced_at}')
     = syncbridge.fingerprint('{"id": 1, "synced_at": "2025-06-30"}', '{synced_at}') AS volatile_ignored,
       syncbridge.fingerprint('{"id": 1, "synced_at": "2024-01-01"}', '{synced_at}')
     = syncbridge.fingerprint('{"id": 1}') AS same_as_without,
       syncbridge.fingerprint('{"id": 1, "meta": {"synced_at": 1}}', '{synced_at}')
     = syncbridge.fingerprint('{"id": 1, "meta": {"synced_at": 2}}', '{synced_at}') AS nested_not_volatile,
       syncbridge.fingerprint('{"id": 1}', '{nothing_here}') = syncbridge.fingerprint('{"id": 1}') AS unknown_volatile_harmless;

-- The capture trigger agrees with syncbridge.fingerprint: for each type, link a one-column
-- table, insert a value and compare _sync_fingerprint with the fingerprint of the row as
-- JSON. Run under two sets of display settings; the result must not change.
CREATE FUNCTION fp_probe(typ text, literal text) RETURNS boolean LANGUAGE plpgsql AS $$
DECLARE
    same boolean;
BEGIN
    EXECUTE format('CREATE TABLE fp_probe (id int PRIMARY KEY, v %s)', typ);
    PERFORM syncbridge.create_link('probe', 'fp_probe', 'https://api.example.com', 'probe');
    EXECUTE format('INSERT INTO fp_probe VALUES (1, %L::%s)', literal, typ);
    SELECT p._sync_fingerprint = syncbridge.fingerprint(to_jsonb(p) - '_sync_last_touch' - '_sync_fingerprint')
      INTO same FROM fp_probe p;
    PERFORM syncbridge.drop_link('probe');
    DROP TABLE fp_probe;
    RETURN same;
END
$$;
CREATE TEMP TABLE probes (typ text, literal text);
INSERT INTO probes VALUES
    ('int', '42'), ('bigint', '-9000000000'), ('smallint', '7'), ('text', 'Ada "the first"'),
    ('varchar(20)', 'x'), ('boolean', 'true'), ('numeric(12,2)', '12.50'), ('numeric', 'NaN'),
    ('float8', '0.1'), ('float8', '1e300'), ('float4', '2.5'), ('jsonb', '{"b": [1.0, 2], "a": null}'),
    ('json', '{"b": 1, "a": 2}'), ('timestamptz', '2024-05-01 12:00:00+02'), ('uuid', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'),
    ('date', '2024-05-01'), ('timestamp', '2024-05-01 12:00:00');
SELECT current_setting('DateStyle') AS datestyle, current_setting('IntervalStyle') AS intervalstyle;
SELECT typ, literal, fp_probe(typ, literal) AS trigger_agrees FROM probes;
SET LOCAL DateStyle = 'ISO, YMD';
SET LOCAL extra_float_digits = 0;
SET LOCAL TimeZone = 'Asia/Kolkata';
SELECT typ, literal, fp_probe(typ, literal) AS trigger_agrees FROM probes;

rollback;
