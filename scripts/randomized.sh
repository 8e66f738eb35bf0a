#!/usr/bin/env bash
# The long randomized two-sided run of issue 13, by hand: three seeds × 180 s of random edits
# on both sides with faults, for each contention policy (about 25 minutes), through
# scripts/e2e.sh (which starts and stops its own cluster; SYNCBRIDGE_PG_BIN,
# SYNCBRIDGE_E2E_DIR and SYNCBRIDGE_E2E_PORT pass through). CI runs the short variant (one
# seed, 15 s per policy) as part of scripts/e2e.sh. Each run prints its summary line: seed,
# policy, edits per side, faults, hops per edit, conflicts, lost edits (with a timeline of the
# first ones), duplicates, writes after quiescence, converged; the test fails if any run lost
# an edit, duplicated a record, wrote after quiescence or did not converge.
#   SYNCBRIDGE_RANDOM_SECONDS=60 SYNCBRIDGE_RANDOM_SEEDS=7 bash scripts/randomized.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export SYNCBRIDGE_RANDOM_SECONDS=${SYNCBRIDGE_RANDOM_SECONDS:-180}
export SYNCBRIDGE_RANDOM_SEEDS=${SYNCBRIDGE_RANDOM_SEEDS:-1,2,3}
export SYNCBRIDGE_RANDOM_POLICIES=${SYNCBRIDGE_RANDOM_POLICIES:-merge,last_write_wins}
export SYNCBRIDGE_RANDOM_MODES=${SYNCBRIDGE_RANDOM_MODES:-if_match}
exec bash scripts/e2e.sh --test randomized -- --nocapture "$@"
