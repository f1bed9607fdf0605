#!/usr/bin/env bash
# The long process-kill loop: a child process writes to a chest from four threads while
# a fifth flushes, and is SIGKILLed at a random moment; the chest is reopened and every
# key checked against a replay of the workload (tests/kill_loop.rs has the rule).
# Plain directories and zstd+file:// run side by side, CYCLES kills each.
#
#   scripts/kill-loop.sh              1000 cycles each, release build
#   scripts/kill-loop.sh 200          200 cycles each
#   CHEST_KILL_SEED=123 scripts/kill-loop.sh 50    replay the workloads and kill delays of a run
#
# Environment:
#   CHEST_KILL_SEED      base seed (default: from the clock; printed)
#   KILL_LOOP_PROFILE    cargo profile flags (default: --release; "" for a debug build)
#
# Prints every violation as it is found, then the figures of each URL kind; exits
# non-zero if any kill left a chest that was unopenable, lost a key, held a wrong value,
# or could not be used afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."

cycles=${1:-1000}
case $cycles in
  '' | *[!0-9]*) echo "usage: $0 [CYCLES]" >&2; exit 2 ;;
esac
profile=${KILL_LOOP_PROFILE---release}

out=$(mktemp)
trap 'rm -f "$out"' EXIT

status=0
# shellcheck disable=SC2086 # $profile is empty or one flag
CHEST_KILL_CYCLES=$cycles cargo test $profile -p chest --test kill_loop -- --nocapture 2>&1 \
  | tee "$out" || status=$?

echo
echo "== figures ($cycles cycles each) =="
grep '^kill loop (' "$out" || echo "(no figures: the test did not run to the end)"
exit "$status"
