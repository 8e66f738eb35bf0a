#!/usr/bin/env bash
# End-to-end tests: a real cluster with pg_syncbridge preloaded, driven from outside by the
# Rust tests in tests/e2e. Assumes the extension is installed (scripts/install.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
dir=${SYNCBRIDGE_E2E_DIR:-/tmp/syncbridge-e2e}
port=${SYNCBRIDGE_E2E_PORT:-55460}
trap 'bash scripts/cluster.sh stop "$dir" || true' EXIT
# One worker database per worker test (sbw1 ... sbw72; each test creates its own), besides
# postgres. A worker whose database does not exist yet retries every 5 s.
workers=$(printf ',sbw%d' $(seq 1 72))
# Each worker's webhook listener: the n-th database's on listen_base + n - 1 (postgres on the
# base, sbwN on base + N). Each cluster port gets its own range of 80 ports, so the clusters
# of engineers working side by side (ports a few apart) do not collide, all below 32768,
# where the kernel's ephemeral ports (outgoing connections) cannot take one first.
listen_base=${SYNCBRIDGE_E2E_LISTEN_BASE:-$((20000 + (port % 150) * 80))}
bash scripts/cluster.sh start "$dir" "$port" \
  "syncbridge.database = 'postgres$workers'" "max_worker_processes = 84" "syncbridge.naptime = 1000" \
  "syncbridge.listen = '127.0.0.1:$listen_base'" "syncbridge.listen_max_requests = 4" \
  "syncbridge.listen_timeout = 2000" "syncbridge.listen_max_body = 1MB" "syncbridge.listen_max_records = 5000"
SYNCBRIDGE_E2E_PORT=$port SYNCBRIDGE_E2E_LISTEN_BASE=$listen_base cargo test --no-fail-fast -p syncbridge-e2e "$@"
