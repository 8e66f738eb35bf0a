-- apply_inbound, part two: deletes by policy (delete, soft_delete, ignore), newer_wins with
-- the remote and local modification times, system_of_record and record_owner.
begin;
\set ON_ERROR_ROLLBACK on

CREATE TABLE items (id text PRIMARY KEY, label text, modified timestamptz, gone boolean DEFAULT false);
SELECT syncbridge.create_link('shop', 'items', 'https://shop.example.com', 'items', key_column => 'id') > 0 AS created;
-- The remote id is the local id here: map it explicitly.
SELECT syncbridge.set_field('shop', 'id', remote_field => 'id');
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "a", "label": "A"}, {"id": "b", "label": "B"}, {"id": "c", "label": "C"}]');

-- Deletes: the default removes the row and its record state; a tombstone for an unknown
-- record is ignored.
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "a", "_deleted": true}, {"id": "zz", "_deleted": true}]');
SELECT id FROM items ORDER BY id;
SELECT local_key FROM syncbridge._record ORDER BY local_key;
-- soft_delete marks the row; ignore leaves it.
SELECT syncbridge.alter_link('shop', '{"deletes": "soft_delete", "soft_delete_column": "gone"}');
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "b", "_deleted": true}]');
SELECT syncbridge.alter_link('shop', '{"deletes": "ignore"}');
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "c", "_deleted": true}]');
SELECT id, gone FROM items ORDER BY id;
-- A soft-delete column that does not exist fails the record with a reason.
SELECT syncbridge.alter_link('shop', '{"deletes": "soft_delete", "soft_delete_column": "nope"}');
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "c", "_deleted": true}]');
-- soft_delete without a column named fails the record too.
SELECT syncbridge.alter_link('shop', '{"soft_delete_column": null}');
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "c", "_deleted": true}]');
SELECT syncbridge.alter_link('shop', '{"deletes": null, "soft_delete_column": null}');
-- Another tombstone shape: tombstone_field names the flag; "_deleted" is then an ordinary
-- field (unknown here, so ignored) and deletes nothing.
SELECT syncbridge.alter_link('shop', '{"tombstone_field": "removed"}');
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "d", "label": "D"}, {"id": "e", "label": "E"}]');
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "d", "_deleted": true}, {"id": "e", "removed": true}]');
SELECT id FROM items ORDER BY id;
SELECT syncbridge.alter_link('shop', '{"tombstone_field": null}');

-- newer_wins: the remote time field against the local time column.
SELECT syncbridge.alter_link('shop', '{"contention": "newer_wins", "remote_time_field": "updated_at", "local_time_column": "modified"}');
SELECT syncbridge.set_field('shop', 'modified', synced => false);
UPDATE items SET label = 'C local', modified = '2024-06-01 12:00:00+00' WHERE id = 'c';
-- The remote edit is older: the local one stays, with a conflict row.
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "c", "label": "C remote, older", "updated_at": "2024-06-01T13:00:00+02:00"}]');
SELECT label FROM items WHERE id = 'c';
-- A newer remote edit wins.
UPDATE items SET label = 'C local again', modified = '2024-06-01 12:00:00+00' WHERE id = 'c';
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "c", "label": "C remote, newer", "updated_at": "2024-06-01T12:00:00.5Z"}]');
SELECT label FROM items WHERE id = 'c';
SELECT field, local, remote, winner, rule FROM syncbridge.conflicts ORDER BY id;
-- A time field that is not a timestamp fails the record.
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "c", "label": "x", "updated_at": "last tuesday"}]');

-- system_of_record:local keeps the local value of a contended record.
SELECT syncbridge.alter_link('shop', '{"contention": "system_of_record:local"}');
UPDATE items SET label = 'B owned here' WHERE id = 'b';
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "b", "label": "B from remote"}]');
SELECT label FROM items WHERE id = 'b';

-- record_owner: c was created by the remote, so the remote wins.
SELECT syncbridge.alter_link('shop', '{"contention": "record_owner"}');
UPDATE items SET label = 'C edited here' WHERE id = 'c';
SELECT * FROM syncbridge.apply_inbound('shop', '[{"id": "c", "label": "C by its owner"}]');
SELECT label FROM items WHERE id = 'c';

rollback;
