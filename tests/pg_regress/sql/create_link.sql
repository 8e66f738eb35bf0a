-- create_link, success path: it returns the id of the new link, adds the tracking columns
-- _sync_last_touch and _sync_fingerprint (text) and four capture triggers (one BEFORE row
-- trigger, three AFTER statement triggers), and syncbridge.links shows the link with its
-- defaults: direction 'both', loop_guards {echo,fingerprint,context} (canonical order),
-- contention 'last_write_wins', schedule 'realtime', key = the single-column primary key.
-- Then: an explicit key_column and normalised options, track_columns => false (no columns, no
-- row trigger), direction 'inbound' (no capture triggers), a partitioned table.
\set ON_ERROR_ROLLBACK on
begin;

CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL UNIQUE, name text);

SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com/v1/', '/customers/') AS link_id \gset

\x on
SELECT id = :link_id AS returned_id_is_the_link, name, local_table, key_column, remote_base_url,
       remote_collection, remote_key_field, direction, loop_guards, contention, schedule,
       track_columns, state, settings, field_rules
FROM syncbridge.links;
\x off

SELECT column_name, data_type, is_nullable
FROM information_schema.columns
WHERE table_name = 'accounts'
ORDER BY ordinal_position;

SELECT trigger_name, action_timing, action_orientation, event_manipulation
FROM information_schema.triggers
WHERE event_object_table = 'accounts'
ORDER BY trigger_name, event_manipulation;

-- The triggers carry the link id as their argument.
SELECT tgname, encode(tgargs, 'escape') = :link_id || '\000' AS argument_is_link_id
FROM pg_trigger
WHERE tgrelid = 'accounts'::regclass AND NOT tgisinternal
ORDER BY tgname;

-- An explicit key column; options are normalised (repeated guards dropped, canonical order;
-- schedule in its long form).
CREATE TABLE people (id serial PRIMARY KEY, email text NOT NULL, name text);
CREATE UNIQUE INDEX people_email ON people (email);
SELECT syncbridge.create_link('people_by_email', 'people', 'http://127.0.0.1:3000', 'v2/people',
                              key_column => 'email', remote_key_field => 'uuid',
                              loop_guards => '{context, echo,echo}', contention => 'system_of_record:remote',
                              schedule => ' Every 30 Seconds ') > 0 AS created;
SELECT name, key_column, remote_base_url, remote_collection, remote_key_field, loop_guards, contention, schedule
FROM syncbridge.links WHERE name = 'people_by_email';

-- track_columns => false: no columns are added and there is no row trigger; the statement
-- triggers still capture.
CREATE TABLE notes (id int PRIMARY KEY, body text);
SELECT syncbridge.create_link('notes_link', 'notes', 'https://api.example.com', 'notes', track_columns => false) > 0 AS created;
SELECT column_name FROM information_schema.columns WHERE table_name = 'notes' ORDER BY ordinal_position;
SELECT trigger_name, action_timing, action_orientation, event_manipulation
FROM information_schema.triggers
WHERE event_object_table = 'notes'
ORDER BY trigger_name, event_manipulation;

-- direction 'inbound': local edits are not sent, so no capture trigger is installed.
CREATE TABLE prices (sku text PRIMARY KEY, amount numeric);
SELECT syncbridge.create_link('price_feed', 'prices', 'https://prices.example.com', 'prices', direction => 'inbound') > 0 AS created;
SELECT count(*) AS triggers FROM pg_trigger WHERE tgrelid = 'prices'::regclass AND NOT tgisinternal;
SELECT name, direction, track_columns FROM syncbridge.links WHERE name = 'price_feed';
SELECT column_name FROM information_schema.columns WHERE table_name = 'prices' ORDER BY ordinal_position;

-- A partitioned table can be linked too; its partitions get the columns, and writes through
-- the parent as well as straight into a partition are captured.
CREATE TABLE orders (id bigint PRIMARY KEY, placed date NOT NULL) PARTITION BY RANGE (id);
CREATE TABLE orders_1 PARTITION OF orders FOR VALUES FROM (0) TO (1000);
SELECT syncbridge.create_link('shop_orders', 'orders', 'https://shop.example.com', 'orders') > 0 AS created;
SELECT attrelid::regclass AS rel, attname
FROM pg_attribute
WHERE attrelid IN ('orders'::regclass, 'orders_1'::regclass) AND attname LIKE '\_sync\_%'
ORDER BY 1, 2;
INSERT INTO orders VALUES (1, '2024-05-01');
INSERT INTO orders_1 VALUES (2, '2024-05-02');
UPDATE orders_1 SET placed = '2024-05-03' WHERE id = 2;
SELECT id, _sync_last_touch, _sync_fingerprint IS NOT NULL AS has_fingerprint FROM orders ORDER BY id;
SELECT syncbridge._flush_capture() >= 0 AS flushed;
SELECT l.name, o.op, o.keys FROM syncbridge.outbox o JOIN syncbridge.links l ON l.id = o.link_id ORDER BY o.id;

SELECT name, local_table, direction, track_columns, state FROM syncbridge.links ORDER BY name;

rollback;
