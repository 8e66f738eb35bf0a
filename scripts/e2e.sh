#!/usr/bin/env bash
# End-to-end tests: a real cluster with pg_syncbridge preloaded, driven from outside by the
# Rust tests in tests/e2e. Assumes the extension is installed (scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
dir=${SYNCBRIDGE_E2E_DIR:-/tmp/syncbridge-e2e}
port=${SYNCBRIDGE_E2E_PORT:-55460}
trap 'bash scripts/cluster.sh stop "$dir" || true' EXIT
# One worker database per worker test (sbw1 ... sbw60; each test creates its own), besides
# postgres. A worker whose database does not exist yet retries every 5 s.
workers=$(printf ',sbw%d' $(seq 1 60))
bash scripts/cluster.sh start "$dir" "$port" \
  "syncbridge.database = 'postgres$workers'" "max_worker_processes = 72" "syncbridge.naptime = 1000"
SYNCBRIDGE_E2E_PORT=$port cargo test --no-fail-fast -p syncbridge-e2e "$@"
