#!/usr/bin/env bash
# Every test of the workspace, against the real servers it needs, which it installs and starts itself.
#
#   scripts/test.sh                   cargo test $CARGO_TEST_ARGS, then the Python package's
#                                     tests (scripts/python.sh)
#   scripts/test.sh -- --nocapture    extra arguments go to `cargo test` after $CARGO_TEST_ARGS
#
# It installs Garage if it is missing (scripts/garage.sh install: ~12 minutes on 2 cores,
# once per machine) and Ceph (scripts/ceph.sh install: Debian packages unpacked into a cache,
# seconds, once per machine), starts a Garage single node, a three-node Garage cluster and a
# single-host Ceph RGW (unless they already run), loads their settings (CHEST_S3_URL,
# CHEST_S3_NODE1..3, AWS_*, CHEST_CEPH_URL), runs the tests with CHEST_REQUIRE_SERVERS=1
# (so a test that finds no server fails rather than skips), and stops the servers it
# started when it exits, however it exits, with the tests' exit code.
#
# Environment:
#   CARGO_TEST_ARGS   arguments of `cargo test` (default: --workspace --all-features)
#   CHEST_KEEP_GARAGE set to 1 to leave the servers (Garage and Ceph) running afterwards (for reruns)
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_TEST_ARGS=${CARGO_TEST_ARGS:---workspace --all-features}
garage=scripts/garage.sh
ceph=scripts/ceph.sh

started_single=0
started_cluster=0
started_ceph=0
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    if [[ ${CHEST_KEEP_GARAGE:-0} != 1 ]]; then
        if ((started_cluster)); then "$garage" cluster-stop || true; fi
        if ((started_single)); then "$garage" stop || true; fi
        if ((started_ceph)); then "$ceph" stop || true; fi
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"$garage" install
"$ceph" install
# Servers that were already running (started by hand) are used and left running.
if ! "$garage" status; then
    started_single=1
    "$garage" start >/dev/null
fi
if ! "$garage" cluster-status; then
    started_cluster=1
    "$garage" cluster-start >/dev/null
fi
if ! "$ceph" status; then
    started_ceph=1
    "$ceph" start >/dev/null
fi

# The cluster's env first: the single node's AWS_* settings are the ones that stay.
# shellcheck disable=SC1090
. "$("$garage" cluster-env-file)"
# shellcheck disable=SC1090
. "$("$garage" env-file)"
# Ceph's credentials are in CHEST_CEPH_URL's query: it leaves AWS_* alone.
# shellcheck disable=SC1090
. "$("$ceph" env-file)"

# Every server runs here: a test that finds its server's settings missing fails
# instead of skipping (a plain `cargo test` lets the S3 tests skip, saying so).
export CHEST_REQUIRE_SERVERS=1

# shellcheck disable=SC2086 # CARGO_TEST_ARGS is a list of arguments
cargo test $CARGO_TEST_ARGS "$@"

# A real full disk: the local-directory backend on a 4 MiB tmpfs, where this
# machine lets us mount one (root); the Python package's tests (scripts/python.sh:
# its own venv, the extension built with maturin) run after the Rust ones, with
# the same small disk for their full-disk test. Elsewhere the full-disk tests
# stay skipped, and this says so.
full_dir=$(mktemp -d "${TMPDIR:-/tmp}/chest-full-disk.XXXXXX")
if mount -t tmpfs -o size=4m tmpfs "$full_dir" 2>/dev/null; then
    rc=0
    CHEST_FS_FULL_DIR=$full_dir cargo test -p chest-fs --test write_failure -- --ignored full_disk || rc=$?
    if ((rc == 0)); then
        find "$full_dir" -mindepth 1 -delete
        CHEST_FS_FULL_DIR=$full_dir scripts/python.sh || rc=$?
    fi
    umount "$full_dir" || true
    rmdir "$full_dir" || true
    exit "$rc"
else
    rmdir "$full_dir" || true
    echo "note: cannot mount a tmpfs here, so the full-disk tests (ENOSPC) did not run" >&2
    scripts/python.sh
fi
