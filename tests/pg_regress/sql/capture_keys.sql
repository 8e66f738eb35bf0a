-- Key text does not depend on the writer's session settings: keys of type timestamptz, date
-- and timestamp are captured in one canonical form (a timestamptz in UTC ISO 8601 with a Z,
-- a date or timestamp in ISO form) whatever TimeZone and DateStyle say; numeric, uuid and
-- text keys keep their text output (extra_float_digits does not touch a numeric). The worker
-- reads each back (explain finds the row under any settings), and backfill reads the same
-- key text as capture writes. A key that does not parse is an error of its row, not a
-- missing row.
begin;

CREATE FUNCTION pg_temp.drain() RETURNS TABLE (link text, keys text[])
LANGUAGE sql AS $$
    SELECT syncbridge._flush_capture();
    WITH d AS (DELETE FROM syncbridge.outbox RETURNING *)
    SELECT l.name, d.keys FROM d JOIN syncbridge._link l ON l.id = d.link_id ORDER BY d.id
$$;

CREATE TABLE at_tz (k timestamptz PRIMARY KEY, v text);
CREATE TABLE on_day (k date PRIMARY KEY, v text);
CREATE TABLE at_local (k timestamp PRIMARY KEY, v text);
CREATE TABLE by_num (k numeric PRIMARY KEY, v text);
CREATE TABLE by_uuid (k uuid PRIMARY KEY, v text);
CREATE TABLE by_text (k text PRIMARY KEY, v text);
SELECT count(syncbridge.create_link(t, t::regclass, 'https://api.example.com', t))
FROM unnest(ARRAY['at_tz', 'on_day', 'at_local', 'by_num', 'by_uuid', 'by_text']) t;

SET TimeZone = 'Asia/Tokyo';
SET DateStyle = 'SQL, DMY';
SET extra_float_digits = 3;
INSERT INTO at_tz VALUES ('2024-03-01 09:00:00+09', 'tokyo'), ('2024-07-04 12:30:00.25+00', 'fraction'),
                         ('infinity', 'forever');
INSERT INTO on_day VALUES ('2024-01-31', 'day > 12'), ('2024-02-03', 'ambiguous');
INSERT INTO at_local VALUES ('2024-02-03 04:05:06.5', 'local');
INSERT INTO by_num VALUES (1.50), (10), (-0.001);
INSERT INTO by_uuid VALUES ('A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11');
INSERT INTO by_text VALUES ('31/01/2024'), ('2024-03-01 09:00:00+09');
SELECT * FROM pg_temp.drain();

-- Under other settings, the same rows give the same keys.
SET TimeZone = 'America/St_Johns';
SET DateStyle = 'German';
SET extra_float_digits = -3;
UPDATE at_tz SET v = v || '.';
UPDATE on_day SET v = v || '.';
UPDATE at_local SET v = v || '.';
UPDATE by_num SET v = 'x';
SELECT * FROM pg_temp.drain();

-- explain finds each row by its captured key, under these settings too.
SELECT k AS key, syncbridge.explain('at_tz', k)->>'row_exists' AS found
FROM unnest(ARRAY['2024-03-01T00:00:00Z', '2024-07-04T12:30:00.25Z', 'infinity']) k;
SELECT k AS key, syncbridge.explain('on_day', k)->>'row_exists' AS found
FROM unnest(ARRAY['2024-01-31', '2024-02-03']) k;
SELECT syncbridge.explain('at_local', '2024-02-03T04:05:06.5')->>'row_exists' AS found;

-- A key its column does not accept is an error reading that row (the worker fails the
-- record and tries again), never a missing row.
SELECT e->>'row_exists' AS row_exists, e->>'row_error' AS row_error
FROM syncbridge.explain('on_day', '31/02/2024') e;

-- Backfill reads the keys as capture writes them.
SELECT syncbridge.backfill(t) FROM unnest(ARRAY['at_tz', 'on_day', 'at_local', 'by_num']) t;
SELECT l.name AS link, x.keys FROM syncbridge.outbox x JOIN syncbridge._link l ON l.id = x.link_id ORDER BY x.id;

rollback;
