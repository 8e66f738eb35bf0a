-- drop_link removes a link's capture triggers, its tracking columns, its outbox rows and its
-- record state. With keep_state => true the tracking columns and the record state (id map)
-- stay, and a link created later with the same name on the same table takes the state up
-- again (a link of another name does not). pause_link/resume_link switch links.state; a
-- paused link still captures. Each of these fails on an unknown link. A link whose table was
-- dropped can still be dropped.
\set ON_ERROR_ROLLBACK on
begin;

CREATE TABLE accounts (id bigint PRIMARY KEY, name text);
INSERT INTO accounts VALUES (1, 'Ada'), (2, 'Grace');
CREATE TEMP VIEW capture AS
SELECT (SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger
        WHERE tgrelid = 'accounts'::regclass AND NOT tgisinternal) AS triggers,
       (SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
        WHERE attrelid = 'accounts'::regclass AND attnum > 0 AND NOT attisdropped) AS columns;
CREATE TEMP VIEW state AS
SELECT (SELECT count(*) FROM syncbridge.links) AS links,
       (SELECT count(*) FROM syncbridge.outbox) AS outbox_rows,
       (SELECT count(*) FROM syncbridge._field) AS field_rules,
       (SELECT count(*) FROM syncbridge._record) AS records,
       (SELECT count(*) FROM syncbridge._kept_record) AS kept_records;

-- pause and resume; a paused link still captures.
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;
SELECT syncbridge.pause_link('crm');
SELECT name, state FROM syncbridge.links;
UPDATE accounts SET name = 'Ada L.' WHERE id = 1;
SELECT syncbridge._flush_capture() >= 0 AS flushed;
SELECT o.op, o.keys FROM syncbridge.outbox o ORDER BY o.id;
SELECT syncbridge.resume_link('crm');
SELECT name, state FROM syncbridge.links;
SELECT syncbridge.pause_link('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.resume_link('nope');
\echo :LAST_ERROR_SQLSTATE

-- Plain drop: everything goes.
SELECT syncbridge.set_field('crm', 'name', remote_field => 'full_name');
INSERT INTO syncbridge._record (link_id, local_key, remote_key, created_by)
SELECT id, '1', 'c-1', 'local' FROM syncbridge.links WHERE name = 'crm';
\x on
SELECT * FROM capture;
SELECT * FROM state;
SELECT syncbridge.drop_link('crm');
SELECT * FROM capture;
SELECT * FROM state;
\x off
-- The table works as before.
UPDATE accounts SET name = 'Ada' WHERE id = 1;
SELECT * FROM accounts ORDER BY id;

-- keep_state: columns and record state stay; the triggers, the outbox rows and the field
-- rules go.
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;
SELECT syncbridge.set_field('crm', 'name', remote_field => 'full_name');
UPDATE accounts SET name = 'Grace H.' WHERE id = 2;
INSERT INTO syncbridge._record (link_id, local_key, remote_key, created_by, base, out_fingerprint)
SELECT id, '1', 'c-1', 'local', '{"id": 1, "full_name": "Ada"}', 'f0f0' FROM syncbridge.links WHERE name = 'crm';
SELECT syncbridge.drop_link('crm', keep_state => true);
\x on
SELECT * FROM capture;
SELECT * FROM state;
\x off
SELECT link_name, table_name, record - 'updated_at' AS record FROM syncbridge._kept_record;

-- A link of another name does not take the state.
SELECT syncbridge.create_link('erp', 'accounts', 'https://erp.example.com', 'accounts') > 0 AS created;
SELECT * FROM state;
SELECT syncbridge.drop_link('erp', keep_state => true);

-- The same name on the same table takes it up again, under the new link id.
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;
SELECT * FROM state;
SELECT r.link_id = l.id AS attached_to_new_link, r.local_key, r.remote_key, r.created_by, r.base, r.out_fingerprint
FROM syncbridge._record r JOIN syncbridge.links l ON l.name = 'crm';
SELECT * FROM capture;

-- Unknown link.
SELECT syncbridge.drop_link('nope');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.drop_link('nope', keep_state => true);
\echo :LAST_ERROR_SQLSTATE

-- Dropping one of two links of a table keeps the columns the other one tracks.
SELECT syncbridge.create_link('erp', 'accounts', 'https://erp.example.com', 'accounts', track_columns => false) > 0 AS created;
SELECT syncbridge.drop_link('erp');
SELECT * FROM capture;
SELECT syncbridge.drop_link('crm');
SELECT * FROM capture;
SELECT * FROM state;

-- Dropping a linked table drops its links with a warning and keeps their record state for a
-- table of the same name; a link of the same name on the re-created table takes it up again.
CREATE TABLE scratch (id int PRIMARY KEY, v text);
SELECT syncbridge.create_link('scratch_link', 'scratch', 'https://api.example.com', 'scratch') > 0 AS created;
INSERT INTO syncbridge._record (link_id, local_key, remote_key, created_by)
SELECT id, '7', 's-7', 'remote' FROM syncbridge.links WHERE name = 'scratch_link';
DROP TABLE scratch;
SELECT count(*) AS links_named_scratch_link FROM syncbridge.links WHERE name = 'scratch_link';
SELECT link_name, table_name, record->>'remote_key' AS remote_key FROM syncbridge._kept_record WHERE link_name = 'scratch_link';
CREATE TABLE scratch (id int PRIMARY KEY, v text);
SELECT syncbridge.create_link('scratch_link', 'scratch', 'https://api.example.com', 'scratch') > 0 AS created;
SELECT r.local_key, r.remote_key FROM syncbridge._record r JOIN syncbridge.links l ON l.id = r.link_id WHERE l.name = 'scratch_link';
-- The key column and the tracking columns cannot be dropped from under a link.
ALTER TABLE scratch DROP COLUMN id;
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE scratch DROP COLUMN _sync_fingerprint;
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('scratch_link', '{"track_columns": false}');
SELECT attname FROM pg_attribute WHERE attrelid = 'scratch'::regclass AND attnum > 0 AND NOT attisdropped ORDER BY attnum;

rollback;
