-- Capture: INSERT/UPDATE/DELETE on a linked table add the keys of the rows whose synced
-- content changed to the transaction's capture buffer, which is written to the outbox at
-- commit as one row per run of the same operation (origin NULL for user edits); the tests
-- look inside the transaction with syncbridge._flush_capture(). Not enqueued: updates that change nothing synced (same values, unsynced or volatile
-- columns, a value spelled differently), and on a link that watches fields, updates of
-- unwatched fields. An update of the key is a delete of the old key plus an upsert of the new.
-- _sync_last_touch is 'local' after user edits and cannot be forged. Links without tracking
-- columns capture the same way. INSERT ... ON CONFLICT sends new rows and changed conflicting
-- rows; big statements are split into outbox rows of at most 1000 keys. Session display
-- settings (DateStyle, extra_float_digits, IntervalStyle) do not make an unchanged row look
-- changed.
begin;

CREATE FUNCTION pg_temp.drain() RETURNS TABLE (link text, op text, keys text[], origin text)
LANGUAGE sql AS $$
    SELECT syncbridge._flush_capture();
    WITH d AS (DELETE FROM syncbridge.outbox RETURNING *)
    SELECT l.name, d.op, d.keys, d.origin FROM d JOIN syncbridge._link l ON l.id = d.link_id ORDER BY d.id
$$;

CREATE TABLE accounts (id bigint PRIMARY KEY, name text, email text, balance numeric(12,2),
                       notes text, synced_at timestamptz);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;
SELECT syncbridge.set_field('crm', 'notes', synced => false);
SELECT syncbridge.set_field('crm', 'synced_at', volatile => true);

-- Inserts: one outbox row per statement, with all its keys.
INSERT INTO accounts (id, name, email, balance) VALUES (1, 'Ada', 'ada@example.com', 10);
SELECT * FROM pg_temp.drain();
INSERT INTO accounts (id, name, email, balance)
SELECT i, 'user ' || i, 'u' || i || '@example.com', 0 FROM generate_series(2, 5) i;
SELECT * FROM pg_temp.drain();
SELECT id, _sync_last_touch, length(_sync_fingerprint) AS fingerprint_length FROM accounts ORDER BY id;

-- Updates that change a synced field.
UPDATE accounts SET name = 'Ada Lovelace' WHERE id = 1;
SELECT * FROM pg_temp.drain();
-- Multi-row update where only some rows really change: only those are sent.
UPDATE accounts SET name = 'user 2' WHERE id IN (2, 3);
SELECT * FROM pg_temp.drain();

-- Updates that change nothing synced: nothing is sent.
UPDATE accounts SET name = name;
UPDATE accounts SET notes = 'call back' WHERE id = 1;
UPDATE accounts SET synced_at = '2024-05-01 10:00:00+00' WHERE id = 1;
UPDATE accounts SET balance = 10.00 WHERE id = 1;
UPDATE accounts SET id = id;
SELECT * FROM pg_temp.drain();
SELECT id, notes, synced_at IS NOT NULL AS has_synced_at FROM accounts WHERE id = 1;

-- An update of the key: the old key is deleted, the new one upserted.
UPDATE accounts SET id = 50 WHERE id = 5;
SELECT * FROM pg_temp.drain();

-- Deletes.
DELETE FROM accounts WHERE id IN (3, 4);
SELECT * FROM pg_temp.drain();
-- Statements that touch no row enqueue nothing.
DELETE FROM accounts WHERE id = 999;
UPDATE accounts SET name = 'x' WHERE false;
SELECT * FROM pg_temp.drain();

-- _sync_last_touch is 'local' after user edits, and a user cannot forge it (nor the
-- fingerprint): the row trigger stamps both, and as nothing synced changed, nothing is sent.
UPDATE accounts SET _sync_last_touch = 'crm', _sync_fingerprint = 'forged' WHERE id = 1;
SELECT id, _sync_last_touch, _sync_fingerprint <> 'forged' AS fingerprint_restamped FROM accounts WHERE id = 1;
SELECT * FROM pg_temp.drain();

-- A link that watches fields sends an update only when a watched field changed; inserts and
-- deletes always travel.
CREATE TABLE contacts (id int PRIMARY KEY, name text, email text);
SELECT syncbridge.create_link('mailer', 'contacts', 'https://mail.example.com', 'contacts') > 0 AS created;
SELECT syncbridge.set_field('mailer', 'email', watched => true);
INSERT INTO contacts VALUES (1, 'Ada', 'ada@example.com'), (2, 'Grace', 'grace@example.com');
SELECT * FROM pg_temp.drain();
UPDATE contacts SET name = 'Ada L.' WHERE id = 1;
SELECT * FROM pg_temp.drain();
UPDATE contacts SET email = 'ada@lovelace.org' WHERE id = 1;
SELECT * FROM pg_temp.drain();
DELETE FROM contacts WHERE id = 2;
SELECT * FROM pg_temp.drain();

-- Without tracking columns (track_columns => false) the statement triggers still capture,
-- and still skip updates that change nothing synced (or only volatile fields).
CREATE TABLE notes (id int PRIMARY KEY, body text, edited_at timestamptz);
SELECT syncbridge.create_link('notes_link', 'notes', 'https://api.example.com', 'notes', track_columns => false) > 0 AS created;
SELECT syncbridge.set_field('notes_link', 'edited_at', volatile => true);
INSERT INTO notes VALUES (1, 'hello', NULL), (2, 'world', NULL);
UPDATE notes SET body = body;
UPDATE notes SET edited_at = '2024-05-01 10:00:00+00';
UPDATE notes SET body = 'hello!' WHERE id = 1;
DELETE FROM notes WHERE id = 2;
SELECT * FROM pg_temp.drain();

-- Two links on one table capture independently.
SELECT syncbridge.create_link('erp', 'accounts', 'https://erp.example.com', 'accounts', track_columns => false) > 0 AS created;
UPDATE accounts SET email = 'ada@lovelace.org' WHERE id = 1;
SELECT * FROM pg_temp.drain();
-- notes is not synced on crm, but it is on erp.
UPDATE accounts SET notes = 'VIP' WHERE id = 1;
SELECT * FROM pg_temp.drain();

-- INSERT ... ON CONFLICT: the BEFORE INSERT trigger fires before the conflict is found, so a
-- conflicting row's key is enqueued even when it ends unchanged (delivery drops it by its
-- fingerprint); an update that changes it is enqueued as usual.
-- INSERT ... ON CONFLICT DO UPDATE: new rows are sent, conflicting rows only if the update
-- changed them.
CREATE TABLE skus (id int PRIMARY KEY, label text);
SELECT syncbridge.create_link('stock', 'skus', 'https://stock.example.com', 'skus') > 0 AS created;
INSERT INTO skus VALUES (1, 'a'), (2, 'b');
SELECT * FROM pg_temp.drain();
INSERT INTO skus VALUES (1, 'a'), (2, 'B'), (3, 'c') ON CONFLICT (id) DO UPDATE SET label = EXCLUDED.label;
SELECT * FROM pg_temp.drain();
INSERT INTO skus VALUES (1, 'z') ON CONFLICT (id) DO NOTHING;
SELECT * FROM pg_temp.drain();

-- Large statements are split into outbox rows of at most 1000 keys and about 1.8 kB of them,
-- so that no outbox row is compressed and stored out of line (TOAST).
INSERT INTO skus SELECT i, 'bulk' FROM generate_series(100, 2599) i;
SELECT link, op, cardinality(keys) AS n_keys, keys[1] AS first_key, keys[cardinality(keys)] AS last_key
FROM pg_temp.drain();

-- A session with other display settings sees the same content: re-writing the same values
-- sends nothing. One table per setting, each row written first under the defaults.
CREATE TABLE born (id int PRIMARY KEY, v date);
CREATE TABLE ratios (id int PRIMARY KEY, v float8);
CREATE TABLE stays (id int PRIMARY KEY, v interval);
SELECT syncbridge.create_link('hr_born', 'born', 'https://hr.example.com', 'born') > 0 AS created;
SELECT syncbridge.create_link('hr_ratios', 'ratios', 'https://hr.example.com', 'ratios') > 0 AS created;
SELECT syncbridge.create_link('hr_stays', 'stays', 'https://hr.example.com', 'stays') > 0 AS created;
INSERT INTO born VALUES (1, '1815-12-10');
INSERT INTO ratios VALUES (1, 1.0 / 3);
INSERT INTO stays VALUES (1, '1 day 2 hours');
SELECT * FROM pg_temp.drain();
SET LOCAL DateStyle = 'SQL, DMY';
UPDATE born SET v = v;
SELECT * FROM pg_temp.drain();
RESET DateStyle;
SET LOCAL extra_float_digits = 0;
UPDATE ratios SET v = v;
SELECT * FROM pg_temp.drain();
RESET extra_float_digits;
SET LOCAL IntervalStyle = 'iso_8601';
UPDATE stays SET v = v;
SELECT * FROM pg_temp.drain();
RESET IntervalStyle;

rollback;
