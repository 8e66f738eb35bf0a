-- The origin flag syncbridge.origin: set (to a link name) while the link itself writes the
-- table, so that capture tells link writes from user edits.
--  * Only inside a transaction block; a plain SET is cleared at commit, SET LOCAL and
--    rollback revert it as usual; RESET works anywhere. Never from a role, database, function
--    setting. The value must look like a link name.
--  * Rows written under the flag get _sync_last_touch = the link name; with the 'context'
--    loop guard the link's own outbox skips them, other links of the table still send them
--    (with the origin recorded); without the guard they are sent with the origin.
--  * Ordinary roles may not set it (42501), yet their edits are captured even without any
--    right on the syncbridge schema.
-- Parts of this file commit; it drops what it created at the end.
\set ON_ERROR_ROLLBACK on

CREATE FUNCTION pg_temp.drain() RETURNS TABLE (link text, op text, keys text[], origin text)
LANGUAGE sql AS $$
    SELECT syncbridge._flush_capture();
    WITH d AS (DELETE FROM syncbridge.outbox RETURNING *)
    SELECT l.name, d.op, d.keys, d.origin FROM d JOIN syncbridge._link l ON l.id = d.link_id ORDER BY d.id
$$;

-- Outside a transaction block: refused; RESET is fine.
SET syncbridge.origin = 'crm';
\echo :LAST_ERROR_SQLSTATE
SET LOCAL syncbridge.origin = 'crm';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('syncbridge.origin', 'crm', false);
\echo :LAST_ERROR_SQLSTATE
RESET syncbridge.origin;
SHOW syncbridge.origin;

-- A plain SET inside a block does not outlive the commit; rollback reverts it too.
CREATE TABLE accounts (id bigint PRIMARY KEY, name text);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;
BEGIN;
SET syncbridge.origin = 'crm';
SHOW syncbridge.origin;
INSERT INTO accounts VALUES (1, 'Ada');
COMMIT;
SHOW syncbridge.origin;
INSERT INTO accounts VALUES (2, 'Grace');
SELECT id, _sync_last_touch FROM accounts ORDER BY id;
SELECT * FROM pg_temp.drain();
BEGIN;
SET syncbridge.origin = 'crm';
ROLLBACK;
SHOW syncbridge.origin;
BEGIN;
SELECT set_config('syncbridge.origin', 'crm', false);
COMMIT;
SHOW syncbridge.origin;
SELECT syncbridge.drop_link('crm');
DROP TABLE accounts;

begin;
CREATE TABLE accounts (id bigint PRIMARY KEY, name text);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;
SELECT syncbridge.create_link('erp', 'accounts', 'https://erp.example.com', 'accounts', track_columns => false) > 0 AS created;
INSERT INTO accounts VALUES (1, 'Ada'), (2, 'Grace');
SELECT * FROM pg_temp.drain();

-- Writes under crm's flag: last touch 'crm'; crm (context guard) does not send them, erp does.
SET LOCAL syncbridge.origin = 'crm';
SHOW syncbridge.origin;
UPDATE accounts SET name = 'Ada L.' WHERE id = 1;
INSERT INTO accounts VALUES (3, 'Edsger');
DELETE FROM accounts WHERE id = 2;
SELECT id, name, _sync_last_touch FROM accounts ORDER BY id;
SELECT * FROM pg_temp.drain();

-- Under erp's flag it is the other way round (erp has the context guard too).
SET LOCAL syncbridge.origin = 'erp';
UPDATE accounts SET name = 'Edsger D.' WHERE id = 3;
SELECT id, _sync_last_touch FROM accounts WHERE id = 3;
SELECT * FROM pg_temp.drain();

-- RESET inside the block: user edits again.
RESET syncbridge.origin;
SHOW syncbridge.origin;
UPDATE accounts SET name = 'Ada' WHERE id = 1;
SELECT id, _sync_last_touch FROM accounts WHERE id = 1;
SELECT * FROM pg_temp.drain();

-- The value must be a link name (it need not be an existing link).
SET LOCAL syncbridge.origin = 'Bad Name';
\echo :LAST_ERROR_SQLSTATE
SET LOCAL syncbridge.origin = 'local';
\echo :LAST_ERROR_SQLSTATE
SET LOCAL syncbridge.origin = 'no_such_link';
SHOW syncbridge.origin;
RESET syncbridge.origin;

-- Without the context guard, writes under the link's own flag are sent, with the origin.
CREATE TABLE leads (id int PRIMARY KEY, name text);
SELECT syncbridge.create_link('sales', 'leads', 'https://sales.example.com', 'leads', loop_guards => '{echo}') > 0 AS created;
SET LOCAL syncbridge.origin = 'sales';
INSERT INTO leads VALUES (1, 'Acme');
UPDATE leads SET name = 'Acme Inc.';
SELECT id, _sync_last_touch FROM leads;
SELECT * FROM pg_temp.drain();
RESET syncbridge.origin;

-- Not from role, database or function settings.
CREATE ROLE regress_plain;
ALTER ROLE regress_plain SET syncbridge.origin = 'crm';
\echo :LAST_ERROR_SQLSTATE
ALTER DATABASE syncbridge_regress SET syncbridge.origin = 'crm';
\echo :LAST_ERROR_SQLSTATE
CREATE FUNCTION as_crm() RETURNS void LANGUAGE sql SET syncbridge.origin = 'crm' AS 'SELECT';
\echo :LAST_ERROR_SQLSTATE

-- An ordinary role may not set the flag.
SET ROLE regress_plain;
SET LOCAL syncbridge.origin = 'crm';
\echo :LAST_ERROR_SQLSTATE
SELECT set_config('syncbridge.origin', 'crm', true);
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;

-- An ordinary role with rights on the table only (none on the syncbridge schema) still has
-- its edits captured and stamped. A fresh link, so that nothing is cached in this session.
CREATE TABLE orders (id int PRIMARY KEY, item text);
SELECT syncbridge.create_link('shop', 'orders', 'https://shop.example.com', 'orders') > 0 AS created;
GRANT SELECT, INSERT, UPDATE, DELETE ON orders TO regress_plain;
SET ROLE regress_plain;
SELECT has_table_privilege('syncbridge.outbox', 'INSERT') AS may_write_outbox,
       has_table_privilege('syncbridge._link', 'SELECT') AS may_read_links,
       has_function_privilege('syncbridge.create_link(text, regclass, text, text, text, text, text, text[], text, text, boolean)', 'EXECUTE') AS may_create_links;
INSERT INTO orders VALUES (1, 'book'), (2, 'pen');
UPDATE orders SET item = 'fountain pen' WHERE id = 2;
DELETE FROM orders WHERE id = 1;
RESET ROLE;
SELECT id, item, _sync_last_touch FROM orders ORDER BY id;
SELECT * FROM pg_temp.drain();
-- Same for a link without tracking columns (no row trigger).
CREATE TABLE tickets (id int PRIMARY KEY, title text);
SELECT syncbridge.create_link('desk', 'tickets', 'https://desk.example.com', 'tickets', track_columns => false) > 0 AS created;
GRANT SELECT, INSERT, UPDATE ON tickets TO regress_plain;
SET ROLE regress_plain;
INSERT INTO tickets VALUES (1, 'printer on fire');
RESET ROLE;
SELECT * FROM pg_temp.drain();

rollback;
SHOW syncbridge.origin;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname = 'regress_plain';
SELECT count(*) AS links_left FROM syncbridge.links;
