-- Privileges: any role may use the syncbridge schema and call syncbridge.fingerprint; managing
-- links (create_link, alter_link, drop_link, pause_link, resume_link, set_field) and reading
-- the catalog (links, events, outbox) is for superusers and the roles they grant it to. A
-- role cannot read the configuration of a link through the capture helper, nor point a link's
-- capture trigger at a table of its own. (Capture of an ordinary role's edits: origin.sql.)
\set ON_ERROR_ROLLBACK on
begin;

CREATE ROLE regress_plain;
CREATE TABLE accounts (id int PRIMARY KEY, name text);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') AS crm_id \gset
CREATE TABLE own_table (id int PRIMARY KEY);
ALTER TABLE own_table OWNER TO regress_plain;

SET ROLE regress_plain;
SELECT syncbridge.fingerprint('{"id": 1}');
SELECT syncbridge.create_link('mine', 'own_table', 'https://api.example.com', 'mine');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"schedule": "10s"}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.set_field('crm', 'name', synced => false);
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.pause_link('crm');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.resume_link('crm');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.drop_link('crm');
\echo :LAST_ERROR_SQLSTATE
SELECT name FROM syncbridge.links;
\echo :LAST_ERROR_SQLSTATE
SELECT link FROM syncbridge.events;
\echo :LAST_ERROR_SQLSTATE
SELECT keys FROM syncbridge.outbox;
\echo :LAST_ERROR_SQLSTATE
-- The helper the capture triggers read their configuration with is not for this role.
SELECT syncbridge._capture_config(:crm_id, 0) IS NULL AS config_hidden;
\echo :LAST_ERROR_SQLSTATE
-- A capture trigger pointed at another table's link refuses to run.
CREATE TRIGGER hijack AFTER INSERT ON own_table REFERENCING NEW TABLE AS syncbridge_new
    FOR EACH STATEMENT EXECUTE FUNCTION syncbridge._capture_statement(:'crm_id');
-- (the message names the link id, which depends on earlier tests: show the SQLSTATE only)
\set VERBOSITY sqlstate
INSERT INTO own_table VALUES (1);
\set VERBOSITY default
\echo :LAST_ERROR_SQLSTATE
-- Nor can the trigger functions be called directly.
SELECT syncbridge._capture_statement();
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT count(*) AS outbox_rows FROM syncbridge.outbox;

-- Managing links is for superusers, even with EXECUTE granted; the error says so.
GRANT EXECUTE ON FUNCTION syncbridge.pause_link(text), syncbridge.resume_link(text) TO regress_plain;
SET ROLE regress_plain;
SELECT syncbridge.pause_link('crm');
RESET ROLE;
SELECT name, state FROM syncbridge.links;

rollback;
SELECT count(*) AS roles_left FROM pg_roles WHERE rolname = 'regress_plain';
