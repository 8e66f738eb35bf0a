-- create_link refuses what it cannot link, each time with a message that names the
-- problem, a HINT that says what to do instead, and a specific SQLSTATE (printed after each
-- failing call). ON_ERROR_ROLLBACK keeps the surrounding transaction usable after each error.
\set ON_ERROR_ROLLBACK on
begin;

CREATE TABLE accounts (id bigint PRIMARY KEY, email text, code text NOT NULL, name text);
CREATE UNIQUE INDEX accounts_email ON accounts (email);

-- An unknown table fails already in the regclass cast, before create_link runs.
SELECT syncbridge.create_link('crm', 'nope', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
-- A table OID that does not exist: 42P01 with a hint (the argument is taken as the OID it is,
-- not opened while it is read, which made this an internal error, XX000).
SELECT syncbridge.create_link('crm', 4000000000::oid::regclass, 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE

-- Not a table: a view, a temporary table, a table of the extension itself.
CREATE VIEW accounts_view AS SELECT * FROM accounts;
SELECT syncbridge.create_link('crm', 'accounts_view', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
CREATE TEMP TABLE scratch (id int PRIMARY KEY);
SELECT syncbridge.create_link('crm', 'scratch', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'syncbridge.outbox', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE

-- No usable key.
CREATE TABLE no_pk (id int, name text);
SELECT syncbridge.create_link('crm', 'no_pk', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE two_col_pk (region text, id int, name text, PRIMARY KEY (region, id));
SELECT syncbridge.create_link('crm', 'two_col_pk', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
-- key_column that does not exist (the hint lists the columns), is nullable (email: unique
-- but NULL allowed), or is not unique (code: NOT NULL without a unique index).
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', key_column => 'mail');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', key_column => 'email');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', key_column => 'code');
\echo :LAST_ERROR_SQLSTATE

-- Remote base URL: not http(s), no host, credentials in it, a query string.
SELECT syncbridge.create_link('crm', 'accounts', 'ftp://files.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https:///v1', 'customers');
\echo :LAST_ERROR_SQLSTATE
-- Credentials are refused, and the error (which also goes to the server log) must not
-- repeat the password.
DO $$
BEGIN
    PERFORM syncbridge.create_link('crm', 'accounts', 'https://admin:s3cret@api.example.com', 'customers');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'refused with %; password in the message: %', SQLSTATE, strpos(SQLERRM, 's3cret') > 0;
END
$$;
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com:99999', 'customers');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com/?key=1', 'customers');
\echo :LAST_ERROR_SQLSTATE

-- Remote collection and key field.
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', '../admin');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'a//b');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', '');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', remote_key_field => ' ');
\echo :LAST_ERROR_SQLSTATE

-- Unknown loop guard, contention policy, direction; bad schedules.
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', loop_guards => '{echo,magic}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', contention => 'first_write_wins');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', direction => 'sideways');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', schedule => 'soon');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', schedule => 'every 0 seconds');
\echo :LAST_ERROR_SQLSTATE

-- Link names: plain lower-case identifiers of 1 to 40 characters; "local" is reserved.
SELECT syncbridge.create_link('Bad Name', 'accounts', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('1crm', 'accounts', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link(repeat('x', 41), 'accounts', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('local', 'accounts', 'https://api.example.com', 'customers');
\echo :LAST_ERROR_SQLSTATE

-- A name already taken, and a second link that would keep the tracking columns of a table
-- that already has a tracking link (fine with track_columns => false).
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;
CREATE TABLE leads (id int PRIMARY KEY, name text);
SELECT syncbridge.create_link('crm', 'leads', 'https://api.example.com', 'leads');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('erp', 'accounts', 'https://erp.example.com', 'accounts');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('erp', 'accounts', 'https://erp.example.com', 'accounts', track_columns => false) > 0 AS created;

-- Columns named like the tracking columns must be text.
CREATE TABLE clashing (id int PRIMARY KEY, _sync_fingerprint bytea);
SELECT syncbridge.create_link('clash', 'clashing', 'https://api.example.com', 'things');
\echo :LAST_ERROR_SQLSTATE
-- ... and can never be the key.
CREATE TABLE keyed_on_touch (id int, _sync_last_touch text PRIMARY KEY);
SELECT syncbridge.create_link('touchy', 'keyed_on_touch', 'https://api.example.com', 'things', key_column => '_sync_last_touch');
\echo :LAST_ERROR_SQLSTATE

-- The failed calls left nothing behind: only the two links created above exist, and the
-- tables that failed have no capture triggers and no added columns.
SELECT name, local_table, track_columns FROM syncbridge.links ORDER BY name;
SELECT tgrelid::regclass AS rel, count(*) AS triggers
FROM pg_trigger WHERE tgname LIKE '%syncbridge%'
GROUP BY 1 ORDER BY 1;
SELECT attrelid::regclass AS rel, attname
FROM pg_attribute
WHERE attname LIKE '\_sync\_%' AND attnum > 0 AND NOT attisdropped
  AND attrelid IN (SELECT oid FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p'))
ORDER BY 1, 2;

-- A partitioned table needs tracking columns: statement triggers on the parent do not see
-- writes made directly into a partition.
CREATE TABLE parted (id int PRIMARY KEY, v text) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
SELECT syncbridge.create_link('parted_link', 'parted', 'https://api.example.com', 'parted', track_columns => false);
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.create_link('parted_link', 'parted', 'https://api.example.com', 'parted') > 0 AS created;
SELECT syncbridge.alter_link('parted_link', '{"track_columns": false}');
\echo :LAST_ERROR_SQLSTATE
INSERT INTO parted_1 VALUES (1, 'straight into the partition');
SELECT syncbridge._flush_capture() AS keys_captured;

rollback;
