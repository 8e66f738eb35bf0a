#!/usr/bin/env bash
# The whole test suite, from a fresh machine of this kind, as root:
#   lint → unit tests (pure logic) → in-database tests (cargo pgrx test) → install →
#   pg_regress (SQL surface) → docs examples → end-to-end tests against a running cluster.
# Installs what it needs first (scripts/setup.sh is idempotent).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never
log=$(mktemp -d --tmpdir=/tmp)
chmod 755 "$log"

step() { printf '\n==> %s\n' "$*"; }

step "setup"
bash scripts/setup.sh

step "lint: cargo fmt --check, cargo clippy -D warnings"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "unit tests (src/logic, no database)"
cargo test --lib --quiet -- logic:: transport:: pull::fetch:: 2>&1 | tee "$log/unit.txt"

step "in-database tests (cargo pgrx test)"
pgdata=/tmp/syncbridge-pgtest
install -d -o postgres -g postgres "$pgdata"
cargo pgrx test pg15 pg_tests:: --runas postgres --pgdata "$pgdata/data" 2>&1 | grep -v '^\s*\(Compiling\|Copying\|Running\|Installing\|Discovered\|Writing\|Finished\|Using\)' | tee "$log/pgtest.txt"

step "install the release build"
bash scripts/install.sh

step "pg_regress (tests/pg_regress)"
bash scripts/regress.sh 2>&1 | tee "$log/regress.txt"

step "docs: every SQL example in docs/*.md"
bash scripts/docs.sh 2>&1 | tee "$log/docs.txt"

step "end-to-end tests (tests/e2e against a running cluster)"
bash scripts/e2e.sh 2>&1 | tee "$log/e2e.txt"

# One closing line for the whole suite.
passed=$(cat "$log"/unit.txt "$log"/pgtest.txt "$log"/e2e.txt | sed -n 's/^test result: ok\. \([0-9]*\) passed.*/\1/p' | awk '{s+=$1} END {print s+0}')
regress=$(sed -n 's/.*All \([0-9]*\) tests passed.*/\1/p; s/^# All \([0-9]*\) tests passed.*/\1/p' "$log/regress.txt" | head -1)
docs=$(sed -n 's/^docs: \([0-9]*\) passed.*/\1/p' "$log/docs.txt")
total=$((passed + ${regress:-0} + ${docs:-0}))
rm -rf "$log"
printf '\nsuite: %d passed, 0 failed\n' "$total"
