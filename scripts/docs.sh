#!/usr/bin/env bash
# Runs every ```sql block of docs/*.md, in order, in a fresh database per page, against a
# throwaway cluster with pg_syncbridge preloaded; any error fails the page. Assumes the
# extension is installed (scripts/install.sh). Prints one "ok"/"FAILED" line per page and a
# closing "docs: N passed, M failed".
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${DOCS_DIR:-/tmp/syncbridge-docs}
port=${DOCS_PORT:-55452}
trap 'bash scripts/cluster.sh stop "$dir" >/dev/null 2>&1 || true' EXIT
bash scripts/cluster.sh start "$dir" "$port"
passed=0 failed=0
for page in docs/*.md; do
  name=$(basename "$page" .md)
  sql=$(mktemp --tmpdir=/tmp)
  chmod 644 "$sql"
  # The body of each ```sql ... ``` block, in order.
  awk '/^```sql[[:space:]]*$/ {inside=1; next} /^```/ {inside=0} inside {print}' "$page" > "$sql"
  blocks=$(grep -c '^```sql' "$page" || true)
  db="docs_$name"
  bash scripts/cluster.sh psql "$dir" "$port" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db" >/dev/null 2>&1
  if out=$(bash scripts/cluster.sh psql "$dir" "$port" -d "$db" -f "$sql" 2>&1); then
    echo "ok     $page ($blocks SQL blocks)"
    passed=$((passed + 1))
  else
    echo "FAILED $page"
    echo "$out" | grep -E 'ERROR|psql:' | head -5
    failed=$((failed + 1))
  fi
  rm -f "$sql"
done
echo "docs: $passed passed, $failed failed"
[ "$failed" = 0 ]
