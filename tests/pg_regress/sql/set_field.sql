-- set_field states the whole rule of one column of a link: remote field name (NULL keeps the
-- column name), owner ('local', 'remote' or NULL), watched, volatile, synced. The rules show
-- in syncbridge.links.field_rules (ordered by column). Errors: unknown column (the hint lists
-- the columns), a tracking column, a bad owner, an empty remote field, two columns mapped to
-- the same remote field (the failed call leaves the rules as they were), no field left to
-- synchronise, unknown link. A rule on a column that is later renamed or dropped does not
-- make the table unwritable.
\set ON_ERROR_ROLLBACK on
begin;

CREATE TABLE accounts (id bigint PRIMARY KEY, name text, email text, phone text, notes text, seen_at timestamptz);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;

CREATE TEMP VIEW rules AS
SELECT r.*
FROM syncbridge.links l,
     jsonb_to_recordset(l.field_rules) AS r("column" text, remote_field text, owner text, watched boolean, volatile boolean, synced boolean)
WHERE l.name = 'crm';

-- No rules yet: every column travels under its own name.
SELECT field_rules FROM syncbridge.links WHERE name = 'crm';

SELECT syncbridge.set_field('crm', 'name', remote_field => 'full_name');
SELECT syncbridge.set_field('crm', 'email', watched => true);
SELECT syncbridge.set_field('crm', 'phone', owner => 'remote');
SELECT syncbridge.set_field('crm', 'seen_at', volatile => true, owner => 'local');
SELECT syncbridge.set_field('crm', 'notes', synced => false);
SELECT * FROM rules;

-- Each call states the whole rule: this one puts name back under its own name.
SELECT syncbridge.set_field('crm', 'name');
SELECT * FROM rules WHERE "column" = 'name';
SELECT syncbridge.set_field('crm', 'name', remote_field => 'full_name');

-- Errors.
SELECT syncbridge.set_field('crm', 'nickname');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.set_field('crm', '_sync_fingerprint', synced => false);
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.set_field('crm', 'phone', owner => 'boss');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.set_field('crm', 'phone', remote_field => '');
\echo :LAST_ERROR_SQLSTATE
-- email may not take the remote name full_name that name already has ...
SELECT syncbridge.set_field('crm', 'email', remote_field => 'full_name');
\echo :LAST_ERROR_SQLSTATE
-- ... nor the name of another column that travels under its own name.
SELECT syncbridge.set_field('crm', 'email', remote_field => 'phone');
\echo :LAST_ERROR_SQLSTATE
-- The failed calls left the rules as they were (email still watched, under its own name).
SELECT * FROM rules;
-- Mapping onto the name of a column that does not travel is fine.
SELECT syncbridge.set_field('crm', 'email', remote_field => 'notes', watched => true);
SELECT * FROM rules WHERE "column" = 'email';
SELECT syncbridge.set_field('nope', 'name');
\echo :LAST_ERROR_SQLSTATE

-- A link must keep at least one field.
CREATE TABLE tags (id int PRIMARY KEY, label text);
SELECT syncbridge.create_link('tag_link', 'tags', 'https://api.example.com', 'tags') > 0 AS created;
SELECT syncbridge.set_field('tag_link', 'label', synced => false);
SELECT syncbridge.set_field('tag_link', 'id', synced => false);
\echo :LAST_ERROR_SQLSTATE
SELECT field_rules FROM syncbridge.links WHERE name = 'tag_link';

-- Renaming or dropping a column that has a rule must not break writes to the table (nor
-- their capture).
CREATE TABLE contacts (id int PRIMARY KEY, name text, notes text);
SELECT syncbridge.create_link('mailer', 'contacts', 'https://mail.example.com', 'contacts') > 0 AS created;
SELECT syncbridge.set_field('mailer', 'notes', synced => false);
INSERT INTO contacts VALUES (1, 'Ada', 'x');
ALTER TABLE contacts RENAME COLUMN notes TO remarks;
INSERT INTO contacts VALUES (2, 'Grace', 'y');
ALTER TABLE contacts DROP COLUMN remarks;
INSERT INTO contacts VALUES (3, 'Edsger');
UPDATE contacts SET name = 'Ada L.' WHERE id = 1;
SELECT syncbridge._flush_capture() >= 0 AS flushed;
SELECT id, name, _sync_last_touch FROM contacts ORDER BY id;
SELECT o.op, o.keys
FROM syncbridge.outbox o JOIN syncbridge.links l ON l.id = o.link_id
WHERE l.name = 'mailer' ORDER BY o.id;

rollback;
