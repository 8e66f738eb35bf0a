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

# Every layer runs, even after one failed (but the later layers need the install); each
# one's passes and failures are counted from its runner's own summary lines, and a layer that
# fails without one (a build error) counts as one failure. The run fails if any layer did.
passed=0 failed=0 broken=()
# layer NAME LOG CMD...: runs CMD, keeps its output in LOG, adds up what it reports.
layer() {
  local name=$1 out=$2; shift 2
  step "$name"
  set +e
  "$@" 2>&1 | tee "$out"
  local rc=${PIPESTATUS[0]}
  set -e
  local p f
  p=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\1/p' "$out" | awk '{s+=$1} END {print s+0}')
  f=$(sed -n 's/^test result: [A-Za-z]*\. \([0-9]*\) passed; \([0-9]*\) failed.*/\2/p' "$out" | awk '{s+=$1} END {print s+0}')
  # pg_regress: "All N tests passed." or "M of N tests failed."; docs.sh: "docs: P passed, F failed".
  local all some_f= some_n= dp= df=
  all=$(sed -n 's/.*All \([0-9]*\) tests passed.*/\1/p' "$out" | head -1)
  read -r some_f some_n < <(sed -n 's/.* \([0-9]*\) of \([0-9]*\) tests failed.*/\1 \2/p' "$out" | head -1) || true
  [ -n "$all" ] && p=$((p + all))
  [ -n "${some_f:-}" ] && { p=$((p + some_n - some_f)); f=$((f + some_f)); }
  read -r dp df < <(sed -n 's/^docs: \([0-9]*\) passed, \([0-9]*\) failed.*/\1 \2/p' "$out" | head -1) || true
  [ -n "${dp:-}" ] && { p=$((p + dp)); f=$((f + df)); }
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then f=1; fi
  [ "$rc" != 0 ] && broken+=("$name")
  passed=$((passed + p)) failed=$((failed + f))
  return "$rc"
}

layer "lint: cargo fmt --check, cargo clippy -D warnings" "$log/lint.txt" \
  bash -c 'cargo fmt --all -- --check && cargo clippy --workspace --all-targets --quiet -- -D warnings' || true

layer "unit tests (src/logic, no database)" "$log/unit.txt" \
  cargo test --lib --quiet -- logic:: transport:: pull::fetch:: log:: spi::subxact::tests || true

pgdata=/tmp/syncbridge-pgtest
install -d -o postgres -g postgres "$pgdata"
pgtest() {
  cargo pgrx test pg15 pg_tests:: --runas postgres --pgdata "$pgdata/data" 2>&1 \
    | grep -v '^\s*\(Compiling\|Copying\|Running\|Installing\|Discovered\|Writing\|Finished\|Using\)'
  return "${PIPESTATUS[0]}"
}
layer "in-database tests (cargo pgrx test)" "$log/pgtest.txt" pgtest || true

if layer "install the release build" "$log/install.txt" bash scripts/install.sh; then
  layer "pg_regress (tests/pg_regress)" "$log/regress.txt" bash scripts/regress.sh || true
  layer "docs: every SQL example in docs/*.md" "$log/docs.txt" bash scripts/docs.sh || true
  layer "end-to-end tests (tests/e2e against a running cluster)" "$log/e2e.txt" bash scripts/e2e.sh || true
fi

rm -rf "$log"
[ ${#broken[@]} -eq 0 ] || printf '\nfailed layers: %s\n' "$(IFS=,; echo "${broken[*]}")"
# One closing line for the whole suite.
printf '\nsuite: %d passed, %d failed\n' "$passed" "$failed"
[ ${#broken[@]} -eq 0 ]
