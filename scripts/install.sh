#!/usr/bin/env bash
# Builds pg_syncbridge and installs it into the Debian PostgreSQL 15 server directories.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
cargo pgrx install --release --pg-config "${SYNCBRIDGE_PG_BIN:-/usr/lib/postgresql/15/bin}/pg_config" >/dev/null
