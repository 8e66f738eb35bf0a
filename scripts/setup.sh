#!/usr/bin/env bash
# Install everything pg_syncbridge needs to build, test and demo on Debian 12, as root.
# Idempotent: each step checks before it installs, so a second run takes seconds.
set -euo pipefail

PGRX_VERSION=0.18.1
PG_MAJOR=15

need_apt=()
for pkg in postgresql-$PG_MAJOR postgresql-server-dev-$PG_MAJOR postgresql-$PG_MAJOR-pgq3 libclang-dev clang sudo pkg-config curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt+=("$pkg")
done
# Node.js and npm run json-server, the REST peer of the demo and the end-to-end tests (any
# Node.js from 14 on; the machine's own is used when there is one).
command -v npm >/dev/null || need_apt+=(nodejs npm)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "setup: apt-get install ${need_apt[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Debian's postgresql-common creates a default cluster that we never use: keep it stopped.
if command -v pg_lsclusters >/dev/null && pg_lsclusters -h 2>/dev/null | grep -q online; then
  pg_ctlcluster "$PG_MAJOR" main stop 2>/dev/null || true
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
  echo "setup: cargo install cargo-pgrx $PGRX_VERSION"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
fi

PG_CONFIG=/usr/lib/postgresql/$PG_MAJOR/bin/pg_config
if ! grep -qs "pg$PG_MAJOR" "$HOME/.pgrx/config.toml"; then
  echo "setup: cargo pgrx init --pg$PG_MAJOR $PG_CONFIG"
  cargo pgrx init --pg$PG_MAJOR "$PG_CONFIG"
fi

# json-server 0.17 (pinned in tests/remote/package.json), for the demo and the e2e tests.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$ROOT/tests/remote/node_modules/.bin/json-server" ]; then
  echo "setup: npm install json-server (tests/remote)"
  (cd "$ROOT/tests/remote" && if [ -f package-lock.json ]; then npm ci --no-audit --no-fund --loglevel=error; else npm install --no-audit --no-fund --loglevel=error; fi) >/dev/null
fi

# The extension is installed into Debian's server directories; pgrx's `install` writes there.
echo "setup: ok (cargo-pgrx $PGRX_VERSION, PostgreSQL $PG_MAJOR)"
