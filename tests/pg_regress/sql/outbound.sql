-- The worker's SQL side, driven by hand: _claim coalesces outbox entries per record and marks
-- them in flight, _settle records outcomes (delivered, retry later, dead-lettered, edited
-- meanwhile), retry_failed re-queues, backfill enqueues existing rows, set_secret stores auth
-- values nobody else can read. (The worker itself: tests/e2e.)
\set ON_ERROR_ROLLBACK on
begin;

CREATE TABLE accounts (id int PRIMARY KEY, name text);
SELECT syncbridge.create_link('crm', 'accounts', 'https://api.example.com', 'customers') AS crm \gset
INSERT INTO accounts VALUES (1, 'a'), (2, 'b');
UPDATE accounts SET name = 'a2' WHERE id = 1;
UPDATE accounts SET name = 'a3' WHERE id = 1;
SELECT syncbridge._flush_capture();

-- Three edits of record 1 become one pending record; claiming takes both, oldest first.
SELECT local_key, fields, writeback, attempt, remote_key FROM syncbridge._claim(:crm, 10);
SELECT count(*) AS outbox_left FROM syncbridge.outbox;
SELECT local_key, in_flight, attempt FROM syncbridge._pending ORDER BY local_key;
-- Nothing more is due while they are in flight.
SELECT count(*) FROM syncbridge._claim(:crm, 10);

-- Record 1 delivered (created as remote id r-1); record 2 failed, retry in a minute.
SELECT syncbridge._settle(:crm, '{1,2}', (SELECT array_agg(seq ORDER BY local_key) FROM syncbridge._pending),
    '{delivered,failed}', '{NULL,"HTTP 503"}', '{1,1}', ARRAY[NULL, now() + interval '1 minute'],
    '{r-1,NULL}', '{fp1,fp2}', ARRAY['{"name": "a3"}', NULL], '{f,f}', '{POST,POST}', '{201,503}', '{create,create}', '{NULL,NULL}');
SELECT local_key, remote_key, out_status, base FROM syncbridge._record ORDER BY local_key;
SELECT local_key, in_flight, failed, attempt, next_attempt > now() AS later, last_error FROM syncbridge._pending;
SELECT local_key, status, reason, attempt, next_retry IS NOT NULL AS has_retry, detail FROM syncbridge.events ORDER BY local_key;

-- An edit while a delivery is in flight sends the record again after it settles.
UPDATE syncbridge._pending SET next_attempt = now();
SELECT local_key, attempt FROM syncbridge._claim(:crm, 10);
UPDATE accounts SET name = 'b2' WHERE id = 2;
SELECT syncbridge._flush_capture();
SELECT count(*) FROM syncbridge._claim(:crm, 10);  -- merges the edit, claims nothing new
SELECT syncbridge._settle(:crm, '{2}', (SELECT array_agg(seq - 1) FROM syncbridge._pending WHERE local_key = '2'),
    '{delivered}', '{NULL}', '{2}', '{NULL}', '{r-2}', '{fp2}', ARRAY['{"name": "b"}'], '{f}', '{POST}', '{201}', '{create}', '{NULL}');
SELECT local_key, in_flight, failed, attempt FROM syncbridge._pending;

-- Dead-lettered (no retry time), then queued again by hand.
SELECT local_key FROM syncbridge._claim(:crm, 10);
SELECT syncbridge._settle(:crm, '{2}', (SELECT array_agg(seq) FROM syncbridge._pending WHERE local_key = '2'),
    '{failed}', '{"HTTP 422: name is taken"}', '{1}', '{NULL}', '{r-2}', '{fp3}', '{NULL}', '{f}', '{PATCH}', '{422}', '{update}', '{NULL}');
SELECT local_key, failed, last_error FROM syncbridge._pending;
SELECT count(*) FROM syncbridge._claim(:crm, 10);
SELECT syncbridge.retry_failed('crm');
SELECT local_key, attempt FROM syncbridge._claim(:crm, 10);
SELECT syncbridge.retry_failed('nope');
\echo :LAST_ERROR_SQLSTATE

-- A deleted record, delivered: its id-map entry goes.
SELECT syncbridge._settle(:crm, '{2}', (SELECT array_agg(seq) FROM syncbridge._pending WHERE local_key = '2'),
    '{delivered}', '{deleted}', '{1}', '{NULL}', '{r-2}', '{NULL}', '{NULL}', '{t}', '{DELETE}', '{204}', '{delete}', '{NULL}');
SELECT local_key FROM syncbridge._record ORDER BY 1;
SELECT count(*) AS pending FROM syncbridge._pending;

-- Backfill: every existing row, in outbox entries of up to 1,000 keys.
INSERT INTO accounts SELECT g, 'n' || g FROM generate_series(10, 2509) g;
SELECT syncbridge._flush_capture();
DELETE FROM syncbridge.outbox;
SELECT syncbridge.backfill('crm');
SELECT op, cardinality(keys) FROM syncbridge.outbox ORDER BY id;
SELECT syncbridge.backfill('nope');
\echo :LAST_ERROR_SQLSTATE
CREATE TABLE inbound_only (id int PRIMARY KEY);
SELECT syncbridge.create_link('in_only', 'inbound_only', 'https://api.example.com', 'x', direction => 'inbound') > 0;
SELECT syncbridge.backfill('in_only');
\echo :LAST_ERROR_SQLSTATE

-- What operators see: link_status, the quarantine and its release, explain(), metrics().
SELECT link, state, queue_depth, dead_letters, in_flight, quarantined, total FROM syncbridge.link_status WHERE link = 'crm';
UPDATE syncbridge._record SET quarantined_at = now(), quarantine_reason = 'loop detector: 8 hops within 600 s', hop_times = '{1,1,2,2,3,3,4,4}'
WHERE local_key = '1';
SELECT link, local_key, remote_key, reason, hops FROM syncbridge.quarantine;
SELECT syncbridge.explain('crm', '1') -> 'outbound' AS outbound;
SELECT syncbridge.release('crm', '1');
SELECT count(*) AS still_quarantined FROM syncbridge.quarantine;
SELECT syncbridge.release('crm', '1');
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.release('nope', '1');
\echo :LAST_ERROR_SQLSTATE
SELECT e - 'fingerprint' - 'payload' - 'record_state' - 'last_events' - 'pending' AS explained
FROM syncbridge.explain('crm', '1') e;
SELECT syncbridge.explain('crm', '99999') -> 'outbound' AS missing_row;
SELECT syncbridge.explain('nope', '1');
\echo :LAST_ERROR_SQLSTATE
SELECT line FROM regexp_split_to_table(syncbridge.metrics(), E'\n') AS line
WHERE line ~ '^(# TYPE|syncbridge_events_total|syncbridge_queue_depth|syncbridge_dead_letters)';
-- Old events are pruned; the counters behind metrics() stay.
UPDATE syncbridge._event SET at = now() - interval '8 days' WHERE local_key = '2';
SELECT syncbridge._prune_events(interval '7 days') AS pruned;
SELECT local_key, status FROM syncbridge.events ORDER BY id;
SELECT direction, status, n FROM syncbridge._counter ORDER BY 1, 2;

-- Dropping a link takes its pending records and id map along.
SELECT count(*) AS claimed FROM syncbridge._claim(:crm, 5);
SELECT syncbridge.drop_link('crm');
SELECT count(*) AS pending, (SELECT count(*) FROM syncbridge._record) AS records FROM syncbridge._pending;

-- Secrets: stored, replaced, removed; readable by nobody but superusers.
SELECT syncbridge.set_secret('crm_token', 'Bearer one');
SELECT syncbridge.set_secret('crm_token', 'Bearer two');
SELECT name, value FROM syncbridge._secret;
SELECT syncbridge.set_secret('', 'x');
\echo :LAST_ERROR_SQLSTATE
CREATE ROLE regress_reader;
GRANT USAGE ON SCHEMA syncbridge TO regress_reader;
SET ROLE regress_reader;
SELECT value FROM syncbridge._secret;
\echo :LAST_ERROR_SQLSTATE
SELECT syncbridge.set_secret('crm_token', 'mine');
\echo :LAST_ERROR_SQLSTATE
RESET ROLE;
SELECT syncbridge.set_secret('crm_token', NULL);
SELECT count(*) FROM syncbridge._secret;

rollback;
