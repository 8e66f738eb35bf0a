-- Renames and drops of a linked table's columns. Field rules follow a renamed column, and
-- the remote field stays what it was: a renamed synced column keeps travelling under its old
-- name (set_field's remote_field records it). A renamed key column stays the link's key, so
-- writes go on and are captured; a column named by a setting (remote_id_column) is followed
-- too. Renaming a tracking column is refused with a hint. Dropping a synced column removes
-- its rule, with a warning and an event: the remote keeps the field's last value. Links
-- without tracking columns follow renames alike, and so does a table owner without rights
-- on the syncbridge schema.
\set ON_ERROR_ROLLBACK on
begin;

CREATE FUNCTION pg_temp.drain() RETURNS TABLE (link text, op text, keys text[], origin text)
LANGUAGE sql AS $$
    SELECT syncbridge._flush_capture();
    WITH d AS (DELETE FROM syncbridge.outbox RETURNING *)
    SELECT l.name, d.op, d.keys, d.origin FROM d JOIN syncbridge._link l ON l.id = d.link_id ORDER BY d.id
$$;

CREATE TABLE people (id bigint PRIMARY KEY, name text, email text, remote_ref text);
SELECT syncbridge.create_link('crm', 'people', 'https://api.example.com', 'people') > 0 AS created;
SELECT syncbridge.set_field('crm', 'email', remote_field => 'mail', owner => 'local');
SELECT syncbridge.alter_link('crm', '{"remote_id_column": "remote_ref"}');
INSERT INTO people VALUES (1, 'Ada', 'ada@example.com');
SELECT * FROM pg_temp.drain();

-- The key column: the link follows it; inserts and updates go on and are captured.
ALTER TABLE people RENAME COLUMN id TO person_id;
SELECT key_column, field_rules FROM syncbridge.links;
INSERT INTO people (person_id, name, email) VALUES (2, 'Grace', 'grace@example.com');
UPDATE people SET name = 'Ada L.' WHERE person_id = 1;
SELECT * FROM pg_temp.drain();
-- The key is still not sent under the remote's own key field.
SELECT syncbridge.explain('crm', '2') -> 'payload' AS payload;

-- A synced column: it keeps travelling as "name", with its new value.
ALTER TABLE people RENAME COLUMN name TO full_name;
UPDATE people SET full_name = 'Grace Hopper' WHERE person_id = 2;
SELECT * FROM pg_temp.drain();
SELECT syncbridge.explain('crm', '2') -> 'payload' AS payload;

-- A column with a rule: the rule (remote name, owner) follows it.
ALTER TABLE people RENAME COLUMN email TO email_address;
UPDATE people SET email_address = 'grace@navy.mil' WHERE person_id = 2;
SELECT * FROM pg_temp.drain();
SELECT syncbridge.explain('crm', '2') -> 'payload' AS payload;

-- The remote-id column: the setting follows it.
ALTER TABLE people RENAME COLUMN remote_ref TO crm_id;
SELECT settings, field_rules FROM syncbridge.links;

-- Tracking columns cannot be renamed; the table stays writable.
ALTER TABLE people RENAME COLUMN _sync_last_touch TO touched;
ALTER TABLE people RENAME COLUMN _sync_fingerprint TO fp;
UPDATE people SET full_name = 'Ada Lovelace' WHERE person_id = 1;
SELECT * FROM pg_temp.drain();

-- Dropping a synced column: its rule goes, with a warning and an event.
ALTER TABLE people DROP COLUMN email_address;
SELECT field_rules FROM syncbridge.links;
SELECT link, direction, local_key, status, reason FROM syncbridge.events;
UPDATE people SET full_name = 'Ada' WHERE person_id = 1;
SELECT * FROM pg_temp.drain();
SELECT syncbridge.explain('crm', '1') -> 'payload' AS payload;
-- A column that does not travel goes quietly.
ALTER TABLE people ADD COLUMN notes text;
SELECT syncbridge.set_field('crm', 'notes', synced => false);
ALTER TABLE people DROP COLUMN notes;
SELECT count(*) AS events FROM syncbridge.events;

-- A link without tracking columns follows renames alike.
CREATE TABLE orders (id int PRIMARY KEY, total numeric);
SELECT syncbridge.create_link('shop', 'orders', 'https://api.example.com', 'orders', track_columns => false) > 0 AS created;
ALTER TABLE orders RENAME COLUMN id TO order_id;
ALTER TABLE orders RENAME COLUMN total TO amount;
INSERT INTO orders VALUES (7, 12.5);
SELECT * FROM pg_temp.drain();
SELECT syncbridge.explain('shop', '7') -> 'payload' AS payload;
SELECT name, key_column, field_rules FROM syncbridge.links WHERE name = 'shop';

-- An owner without rights on syncbridge renames and drops columns of its linked table alike.
CREATE ROLE regress_ddl_owner;
GRANT CREATE ON SCHEMA public TO regress_ddl_owner;
CREATE TABLE notes (id int PRIMARY KEY, body text, tag text);
SELECT syncbridge.create_link('memo', 'notes', 'https://api.example.com', 'notes') > 0 AS created;
ALTER TABLE notes OWNER TO regress_ddl_owner;
SET ROLE regress_ddl_owner;
ALTER TABLE notes RENAME COLUMN body TO text_body;
ALTER TABLE notes DROP COLUMN tag;
INSERT INTO notes VALUES (1, 'hello');
RESET ROLE;
SELECT * FROM pg_temp.drain();
SELECT syncbridge.explain('memo', '1') -> 'payload' AS payload;
SELECT link, reason FROM syncbridge.events WHERE link = 'memo';

rollback;
