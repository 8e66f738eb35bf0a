-- A link whose capture triggers were disabled or dropped says so: link_status.state is
-- capture_off and explain names the trigger, instead of claiming the link is healthy.
\set ON_ERROR_ROLLBACK on
begin;

CREATE TABLE accounts (id int PRIMARY KEY, name text);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers', direction => 'outbound') AS crm \gset
CREATE TABLE plain (id int PRIMARY KEY, name text);
SELECT syncbridge.create_link('plain', 'plain', 'https://api.example.com', 'plain', direction => 'outbound', track_columns => false) AS plain \gset
CREATE TABLE incoming (id int PRIMARY KEY, name text);
SELECT syncbridge.create_link('incoming', 'incoming', 'https://api.example.com', 'in', direction => 'inbound') AS incoming \gset
SELECT link, state FROM syncbridge.link_status ORDER BY link;

ALTER TABLE accounts DISABLE TRIGGER zz_syncbridge_crm_row;
SELECT link, state FROM syncbridge.link_status ORDER BY link;
SELECT syncbridge.explain('crm', '1') -> 'state', syncbridge.explain('crm', '1') -> 'capture';
INSERT INTO accounts VALUES (1, 'Ada');
SELECT syncbridge.explain('crm', '1') -> 'outbound' ->> 'verdict', syncbridge.explain('crm', '1') -> 'outbound' ->> 'why';

-- Replica-only triggers do not fire in ordinary sessions either.
ALTER TABLE accounts ENABLE REPLICA TRIGGER zz_syncbridge_crm_row;
SELECT state FROM syncbridge.link_status WHERE link = 'crm';
ALTER TABLE accounts ENABLE TRIGGER zz_syncbridge_crm_row;
SELECT state FROM syncbridge.link_status WHERE link = 'crm';

-- DISABLE TRIGGER ALL, and a dropped statement trigger.
ALTER TABLE plain DISABLE TRIGGER ALL;
SELECT syncbridge._capture_problem(:plain);
ALTER TABLE plain ENABLE TRIGGER ALL;
DROP TRIGGER syncbridge_plain_update ON plain;
SELECT link, state FROM syncbridge.link_status ORDER BY link;
SELECT syncbridge.explain('plain', '1') ->> 'capture';
-- alter_link with the same direction installs the triggers again.
SELECT syncbridge.alter_link('plain', '{"direction": "outbound"}');
SELECT link, state FROM syncbridge.link_status ORDER BY link;

-- A partition whose copy of the row trigger is disabled.
CREATE TABLE parted (id int PRIMARY KEY, name text) PARTITION BY RANGE (id);
CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100);
SELECT syncbridge.create_link('parted', 'parted', 'https://api.example.com', 'p', direction => 'outbound') IS NOT NULL AS created;
SELECT state FROM syncbridge.link_status WHERE link = 'parted';
ALTER TABLE parted_1 DISABLE TRIGGER zz_syncbridge_parted_row;
SELECT state FROM syncbridge.link_status WHERE link = 'parted';
SELECT syncbridge._capture_problem((SELECT id FROM syncbridge.links WHERE name = 'parted'));

rollback;
