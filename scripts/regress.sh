#!/usr/bin/env bash
# pg_regress tests of the SQL surface (tests/pg_regress/sql/*.sql against expected/*.out).
# `cargo pgrx regress` refuses to run as root, so this drives Debian's pg_regress directly,
# as the postgres user, against a throwaway cluster.
#
#   scripts/regress.sh                 all tests, in name order
#   scripts/regress.sh create_link ... only the named tests (in the order given)
#
# Environment:
#   REGRESS_DIR, REGRESS_PORT  use the running cluster whose socket is in REGRESS_DIR and that
#                              listens on REGRESS_PORT (both needed); it is neither started nor
#                              stopped. Default: a fresh cluster in /tmp/syncbridge-regress on
#                              port 55450, stopped at the end.
#   REGRESS_OUT                where pg_regress writes results/ and regression.diffs
#                              (default /tmp/syncbridge-regress-out).
#   REGRESS_ACCEPT=1           after the run, copy results/*.out of the tests run over
#                              tests/pg_regress/expected/. Review the printed diff first: some
#                              expected files describe the correct behaviour of known bugs, and
#                              accepting them would bake the bug in. Name the tests to accept.
#
# pg_regress drops and re-creates the database syncbridge_regress for every run (so no
# --use-existing: with it pg_regress would not create the database), with its usual settings
# (lc_messages C, DateStyle 'Postgres, MDY', IntervalStyle postgres_verbose, ...), and
# creates the extension in it (--load-extension); 00_setup shows the SQL surface.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

BIN=${SYNCBRIDGE_PG_BIN:-/usr/lib/postgresql/15/bin}
PG_REGRESS=$BIN/../lib/pgxs/src/test/regress/pg_regress
SRC=$ROOT/tests/pg_regress
DB=syncbridge_regress
OUT=${REGRESS_OUT:-/tmp/syncbridge-regress-out}

if [ -n "${REGRESS_DIR:-}" ] || [ -n "${REGRESS_PORT:-}" ]; then
  : "${REGRESS_DIR:?REGRESS_DIR and REGRESS_PORT go together}" "${REGRESS_PORT:?REGRESS_DIR and REGRESS_PORT go together}"
  dir=$REGRESS_DIR port=$REGRESS_PORT own_cluster=
else
  dir=/tmp/syncbridge-regress port=55450 own_cluster=1
fi

# The tests: the arguments, or every sql/*.sql in name order.
tests=()
if [ $# -gt 0 ]; then
  for t in "$@"; do
    t=$(basename "$t" .sql)
    [ -f "$SRC/sql/$t.sql" ] || { echo "regress.sh: no test $SRC/sql/$t.sql" >&2; exit 2; }
    tests+=("$t")
  done
else
  while IFS= read -r f; do tests+=("$(basename "$f" .sql)"); done \
    < <(find "$SRC/sql" -maxdepth 1 -name '*.sql' | LC_ALL=C sort)
fi
[ ${#tests[@]} -gt 0 ] || { echo "regress.sh: no tests in $SRC/sql" >&2; exit 2; }

# pg_regress runs as postgres: give it a copy of the inputs it can read for sure, and an
# output directory it owns.
input=$(mktemp -d --tmpdir=/tmp)
cleanup() {
  rm -rf "$input"
  if [ -n "$own_cluster" ]; then scripts/cluster.sh stop "$dir" || true; fi
}
trap cleanup EXIT
cp -r "$SRC/sql" "$input/sql"
mkdir -p "$input/expected"
cp "$SRC"/expected/*.out "$input/expected/" 2>/dev/null || true
# A new test without expected output yet: compare with an empty file (pg_regress stops on a
# missing one), so the run shows its whole output as a diff.
for t in "${tests[@]}"; do
  [ -f "$input/expected/$t.out" ] || : > "$input/expected/$t.out"
done
chmod -R a+rX "$input"
rm -rf "$OUT"
install -d -o postgres -g postgres "$OUT"

if [ -n "$own_cluster" ]; then
  scripts/cluster.sh start "$dir" "$port"
fi

status=0
(cd /tmp && sudo -u postgres -H -- "$PG_REGRESS" \
    --bindir="$BIN" \
    --host="$dir" --port="$port" --user=postgres \
    --inputdir="$input" --outputdir="$OUT" \
    --dbname="$DB" --load-extension=pg_syncbridge \
    "${tests[@]}") || status=$?

if [ "$status" -ne 0 ] && [ -s "$OUT/regression.diffs" ]; then
  echo "---- $OUT/regression.diffs ----"
  cat "$OUT/regression.diffs"
fi

if [ "${REGRESS_ACCEPT:-}" = 1 ]; then
  mkdir -p "$SRC/expected"
  n=0
  for t in "${tests[@]}"; do
    if [ -f "$OUT/results/$t.out" ]; then
      cp "$OUT/results/$t.out" "$SRC/expected/$t.out"
      n=$((n + 1))
    fi
  done
  echo "regress.sh: accepted $n result file(s) into tests/pg_regress/expected/"
  exit 0
fi
exit "$status"
