#!/usr/bin/env bash
# Throwaway PostgreSQL 15 clusters for the demo, tests and benchmarks.
# Postgres refuses to run as root, so the cluster belongs to the `postgres` user and lives
# under /tmp (a directory that user can create).
#
#   scripts/cluster.sh start DIR PORT [postgresql.conf lines...]
#   scripts/cluster.sh stop DIR
#   scripts/cluster.sh psql DIR PORT [psql args...]   (as postgres, over the socket in DIR)
set -euo pipefail

BIN=${SYNCBRIDGE_PG_BIN:-/usr/lib/postgresql/15/bin}
cmd=${1:?usage: cluster.sh start|stop|psql DIR [PORT] ...}
dir=${2:?data directory}

as_pg() { sudo -u postgres -H -- "$@"; }

case "$cmd" in
  start)
    port=${3:?port}
    shift 3
    if [ -f "$dir/postmaster.pid" ]; then
      as_pg "$BIN/pg_ctl" -D "$dir" -m immediate stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
    install -d -o postgres -g postgres "$dir"
    as_pg "$BIN/initdb" -D "$dir" -U postgres --auth=trust --no-sync >/dev/null
    {
      echo "port = $port"
      echo "listen_addresses = '127.0.0.1'"
      echo "unix_socket_directories = '$dir'"
      echo "shared_preload_libraries = 'pg_syncbridge'"
      echo "syncbridge.database = 'postgres'"
      echo "fsync = off"
      echo "log_min_messages = warning"
      for line in "$@"; do echo "$line"; done
    } >> "$dir/postgresql.conf"
    as_pg "$BIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null
    ;;
  stop)
    if [ -f "$dir/postmaster.pid" ]; then
      as_pg "$BIN/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    fi
    ;;
  psql)
    port=${3:?port}
    shift 3
    as_pg psql -X -q -v ON_ERROR_STOP=1 -h "$dir" -p "$port" -d postgres "$@"
    ;;
  *)
    echo "cluster.sh: unknown command $cmd" >&2
    exit 2
    ;;
esac
