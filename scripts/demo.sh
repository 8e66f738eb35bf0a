#!/usr/bin/env bash
# The main job, from a fresh machine of this kind, as root: install what is needed, build and
# install pg_syncbridge, start a throwaway cluster with it preloaded, link a demo table and
# show what the sync captures and what it recognises as its own writes.
# The cluster is left running; the last lines say how to connect and how to stop it.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DEMO_DIR:-/tmp/syncbridge-demo}
port=${DEMO_PORT:-55400}

echo "==> installing prerequisites (idempotent)"
bash scripts/setup.sh
echo "==> building and installing pg_syncbridge (release)"
bash scripts/install.sh 2>&1 | grep -E '^(error|warning)' || true
echo "==> starting a throwaway cluster in $dir on port $port"
bash scripts/cluster.sh start "$dir" "$port"

sql() { bash scripts/cluster.sh psql "$dir" "$port" "$@"; }

sql <<'SQL'
\pset footer off
\echo
\echo '--- 1. Link a table to a remote collection'
CREATE EXTENSION pg_syncbridge;
CREATE TABLE accounts (id bigint PRIMARY KEY, name text NOT NULL, balance numeric(12,2) NOT NULL DEFAULT 0);
SELECT syncbridge.create_link('accounting', 'accounts', 'http://127.0.0.1:3000', 'customers') AS link_id;
SELECT name, local_table, remote_base_url || '/' || remote_collection AS remote, direction, loop_guards, state
FROM syncbridge.links;

\echo '--- 2. User edits land in the outbox, in the same transaction as the edit'
INSERT INTO accounts (id, name) VALUES (1, 'Ada Lovelace'), (2, 'Charles Babbage');
UPDATE accounts SET balance = 100 WHERE id = 1;
UPDATE accounts SET balance = 100 WHERE id = 1;   -- changes nothing: not enqueued
BEGIN; INSERT INTO accounts (id, name) VALUES (3, 'never committed'); ROLLBACK;
DELETE FROM accounts WHERE id = 2;
SELECT id AS outbox_id, op, keys, coalesce(origin, '(user edit)') AS origin FROM syncbridge.outbox ORDER BY id;

\echo '--- 3. Writes under the origin flag of the link are the link''s own: not echoed'
BEGIN;
SET LOCAL syncbridge.origin = 'accounting';
SHOW syncbridge.origin;
INSERT INTO accounts (id, name, balance) VALUES (4, 'Grace Hopper (from the remote)', 42);
COMMIT;
SHOW syncbridge.origin;
SELECT id, name, _sync_last_touch, _sync_fingerprint FROM accounts ORDER BY id;
SELECT count(*) AS outbox_rows_after_link_write FROM syncbridge.outbox;

\echo '--- 4. An ordinary role cannot forge the flag to hide its edits'
CREATE ROLE demo_clerk;
GRANT SELECT, INSERT, UPDATE ON accounts TO demo_clerk;
SET ROLE demo_clerk;
BEGIN;
\set ON_ERROR_STOP 0
SET LOCAL syncbridge.origin = 'accounting';
\set ON_ERROR_STOP 1
ROLLBACK;
UPDATE accounts SET balance = balance + 1 WHERE id = 4;
RESET ROLE;
SELECT id AS outbox_id, op, keys FROM syncbridge.outbox ORDER BY id DESC LIMIT 1;
SELECT syncbridge.fingerprint('{"b": 1.0, "a": "2024-01-01T10:00:00+02:00"}') =
       syncbridge.fingerprint('{"a": "2024-01-01 08:00:00Z", "b": 1}') AS same_fingerprint;
SQL

cat <<EOF

The cluster is still running.
  connect:  sudo -u postgres psql -h $dir -p $port -d postgres
  stop:     bash scripts/cluster.sh stop $dir
EOF
