-- alter_link changes a link's settings: schedule, contention and loop_guards (normalised as
-- in create_link), direction (to 'inbound' drops the capture triggers, back to 'both'
-- re-installs them), the transport/policy settings kept in links.settings (null removes
-- one), and track_columns (false drops the tracking columns and the row trigger, true brings
-- them back). Errors: unknown key (the hint lists the valid keys), wrong value type, settings
-- that are not a JSON object, unknown link; a failed call changes nothing.
\set ON_ERROR_ROLLBACK on
begin;

CREATE TABLE accounts (id bigint PRIMARY KEY, name text);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') > 0 AS created;

CREATE TEMP VIEW link_row AS
SELECT name, remote_base_url, remote_collection, remote_key_field, direction, loop_guards,
       contention, schedule, track_columns, settings
FROM syncbridge.links WHERE name = 'crm';
CREATE TEMP VIEW capture AS
SELECT (SELECT string_agg(tgname, ', ' ORDER BY tgname) FROM pg_trigger
        WHERE tgrelid = 'accounts'::regclass AND NOT tgisinternal) AS triggers,
       (SELECT string_agg(attname, ', ' ORDER BY attnum) FROM pg_attribute
        WHERE attrelid = 'accounts'::regclass AND attnum > 0 AND NOT attisdropped) AS columns;

\x on
SELECT * FROM link_row;
SELECT * FROM capture;

-- Core settings, normalised.
SELECT syncbridge.alter_link('crm', '{"schedule": "45s", "contention": "newer_wins", "loop_guards": ["context", "echo", "context"]}');
SELECT * FROM link_row;
SELECT syncbridge.alter_link('crm', '{"remote_base_url": "http://10.0.0.5:8080/api/", "remote_collection": "/v2/clients/", "remote_key_field": "uuid", "schedule": "realtime"}');
SELECT * FROM link_row;
SELECT syncbridge.alter_link('crm', '{"loop_guards": []}');
SELECT loop_guards FROM link_row;
SELECT syncbridge.alter_link('crm', '{"loop_guards": ["echo", "fingerprint", "context", "last_touch"]}');
SELECT loop_guards FROM link_row;

-- direction: inbound drops the capture triggers (the columns stay); both re-installs them.
SELECT syncbridge.alter_link('crm', '{"direction": "inbound"}');
SELECT direction FROM link_row;
SELECT * FROM capture;
SELECT syncbridge.alter_link('crm', '{"direction": "both"}');
SELECT direction FROM link_row;
SELECT * FROM capture;
SELECT syncbridge.alter_link('crm', '{"direction": "outbound"}');
SELECT direction FROM link_row;
SELECT * FROM capture;

-- Transport and policy settings; null removes one, the others stay.
SELECT syncbridge.alter_link('crm', '{"timeout_ms": 5000, "batch_size": 100, "deletes": "soft_delete", "soft_delete_column": "deleted_at"}');
SELECT settings FROM link_row;
SELECT syncbridge.alter_link('crm', '{"timeout_ms": null, "batch_size": 50}');
SELECT settings FROM link_row;
-- Removing a setting that is not set is fine.
SELECT syncbridge.alter_link('crm', '{"auth_header": null}');
SELECT settings FROM link_row;
-- An empty object changes nothing.
SELECT syncbridge.alter_link('crm', '{}');
SELECT * FROM link_row;

-- track_columns false drops the tracking columns and the row trigger; true restores them.
SELECT syncbridge.alter_link('crm', '{"track_columns": false}');
SELECT track_columns FROM link_row;
SELECT * FROM capture;
SELECT syncbridge.alter_link('crm', '{"track_columns": true}');
SELECT track_columns FROM link_row;
SELECT * FROM capture;
\x off

-- Errors.
SELECT syncbridge.alter_link('crm', '{"timeout": 5000}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"timeout_ms": "5s"}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"timeout_ms": 0}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"deletes": "purge"}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"auth_header": ""}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"schedule": 30}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"schedule": "every 100000 seconds"}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"direction": "sideways"}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"contention": "loudest_wins"}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"loop_guards": "echo"}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"loop_guards": ["echo", "magic"]}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '{"track_columns": "no"}');
\echo :LAST_ERROR_SQLSTATE
-- Credentials in the URL are refused, without repeating the password in the error.
DO $$
BEGIN
    PERFORM syncbridge.alter_link('crm', '{"remote_base_url": "https://user:s3cret@api.example.com"}');
EXCEPTION WHEN OTHERS THEN
    RAISE NOTICE 'refused with %; password in the message: %', SQLSTATE, strpos(SQLERRM, 's3cret') > 0;
END
$$;
SELECT syncbridge.alter_link('crm', '{"remote_key_field": ""}');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '[{"schedule": "10s"}]');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('crm', '"every 10 seconds"');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.alter_link('nope', '{"schedule": "10s"}');
\echo :LAST_ERROR_SQLSTATE
-- A call with one bad key changes nothing, not even its valid keys.
SELECT syncbridge.alter_link('crm', '{"schedule": "every 10 seconds", "timeout": 1}');
\echo :LAST_ERROR_SQLSTATE
\x on
SELECT * FROM link_row;
\x off

-- Turning tracking on for a second link of the same table is refused like in create_link.
SELECT syncbridge.create_link('erp', 'accounts', 'https://erp.example.com', 'accounts', track_columns => false) > 0 AS created;
SELECT syncbridge.alter_link('erp', '{"track_columns": true}');
\echo :LAST_ERROR_SQLSTATE
SELECT name, track_columns FROM syncbridge.links ORDER BY name;

-- The remote-id column holds the remote's own id: it is not a synced field (field_rules shows
-- it), unless set_field says otherwise; a setting that would leave no field to synchronise is
-- refused.
CREATE TABLE contacts (id int PRIMARY KEY, crm_id text);
SELECT syncbridge.create_link('contacts', 'contacts', 'https://api.example.com', 'contacts') > 0 AS created;
SELECT syncbridge.set_field('contacts', 'id', synced => false);
SELECT syncbridge.alter_link('contacts', '{"remote_id_column": "crm_id"}');
\echo :LAST_ERROR_SQLSTATE
ALTER TABLE contacts ADD COLUMN name text;
SELECT syncbridge.alter_link('contacts', '{"remote_id_column": "crm_id"}');
SELECT jsonb_pretty(field_rules) FROM syncbridge.links WHERE name = 'contacts';
SELECT syncbridge.set_field('contacts', 'crm_id', remote_field => 'crmId');
SELECT jsonb_pretty(field_rules) FROM syncbridge.links WHERE name = 'contacts';

rollback;
