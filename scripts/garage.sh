#!/usr/bin/env bash
# A real S3-compatible server (Garage, https://garagehq.deuxfleurs.fr) for chest's tests.
#
# Usage: scripts/garage.sh <command>
#
#   install               install Garage $GARAGE_VERSION with `cargo install` unless a
#                         `garage` binary is already there (~12 min on 2 cores, once)
#   start                 a single node on 127.0.0.1 (replication factor 1) with bucket
#                         `chest-test` and a key with fixed test credentials; writes the env
#                         file printed by `env-file`
#   stop                  stops the single node and removes its directory
#   status                exit status 0 if the single node is up and answers S3 requests
#   env-file              the path of the single node's env file (stable)
#
#   cluster-start         three nodes on loopback ports, replication factor 3, same bucket and key
#   cluster-stop          stops all three and removes their directories
#   cluster-status        exit status 0 if all three nodes answer S3 requests
#   cluster-env-file      the path of the cluster's env file (stable)
#   cluster-stop-node N   stops node N (1..3), keeping its data (to test a node failure)
#   cluster-start-node N  starts node N again and waits until it answers
#
# After `start`, `. "$(scripts/garage.sh env-file)"` exports
#   CHEST_S3_URL=s3://chest-test?endpoint=http://127.0.0.1:<port>&region=garage&lock=none
# (`lock=none`: Garage ignores conditional writes, so a chest cannot take a
# writer lease there; the tests and benchmarks guarantee one writer per prefix
# themselves. Without it, a writable open on Garage fails and says so.)
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_ENDPOINT_URL, AWS_REGION
# and after `cluster-start`, `. "$(scripts/garage.sh cluster-env-file)"` exports
#   CHEST_S3_CLUSTER_URL (through node 1), CHEST_S3_NODE1..3 (the three S3 endpoints),
#   CHEST_GARAGE_SCRIPT (this script, to stop/start a node), CHEST_GARAGE_CLUSTER_DIR,
#   AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION.
#
# Every command is idempotent: `start` on a running node only checks it, `stop` on a
# stopped one does nothing. Waits are bounded ($CHEST_GARAGE_WAIT seconds, default 60);
# on a failure the script says what failed and shows the tail of the node's log.
#
# Environment:
#   GARAGE_VERSION      version `install` installs (default: the pinned one below)
#   GARAGE_BIN          a garage binary to use instead of looking on PATH / in ~/.cargo/bin
#   CHEST_GARAGE_STATE  where the servers' directories go (default: ${TMPDIR:-/tmp})
#   CHEST_GARAGE_WAIT   bound, in seconds, of every wait (default: 60)
set -euo pipefail

# The version CI installs; the one this script was written and tested against.
PINNED_GARAGE_VERSION=2.5.0
GARAGE_VERSION=${GARAGE_VERSION:-$PINNED_GARAGE_VERSION}
GARAGE_FEATURES=lmdb,sqlite,bundled-libs

STATE_ROOT=${CHEST_GARAGE_STATE:-${TMPDIR:-/tmp}}
STATE_ROOT=${STATE_ROOT%/}
WAIT=${CHEST_GARAGE_WAIT:-60}

SINGLE_HOME=$STATE_ROOT/chest-garage
CLUSTER_HOME=$STATE_ROOT/chest-garage-cluster
LOCK_FILE=$STATE_ROOT/chest-garage.lock

BUCKET=chest-test
REGION=garage
KEY_NAME=chest-test
# Fixed test credentials (Garage wants "GK" + 12 hex-encoded bytes and 32 hex-encoded bytes).
# They are hex for "chest-test-1" and "chest-test-secret-not-for-prod!!": test servers only.
ACCESS_KEY_ID=GK63686573742d746573742d31
SECRET_ACCESS_KEY=63686573742d746573742d7365637265742d6e6f742d666f722d70726f642121

SCRIPT_PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

SCRIPT_NAME=garage.sh
# say, die, with_lock, pick_port, alive, stop_pid_file, in_subshell, log_tail
# shellcheck source-path=SCRIPTDIR source=servers-lib.sh
. "$(dirname "$SCRIPT_PATH")/servers-lib.sh"

# ---------------------------------------------------------------- the binary

find_garage() {
    if [[ -n ${GARAGE_BIN:-} ]]; then
        [[ -x $GARAGE_BIN ]] || die "GARAGE_BIN=$GARAGE_BIN is not an executable"
        printf '%s\n' "$GARAGE_BIN"
    elif command -v garage >/dev/null 2>&1; then
        command -v garage
    elif [[ -x ${CARGO_HOME:-$HOME/.cargo}/bin/garage ]]; then
        printf '%s\n' "${CARGO_HOME:-$HOME/.cargo}/bin/garage"
    else
        return 1
    fi
}

garage_version() {
    "$1" --version 2>/dev/null | grep -o '[0-9][0-9]*\.[0-9][0-9]*\.[0-9][0-9]*' | head -n 1 || true
}

cmd_install() {
    local bin
    if bin=$(find_garage); then
        local v
        v=$(garage_version "$bin")
        if [[ $v != "$GARAGE_VERSION" ]]; then
            say "using $bin (version ${v:-unknown}; the tested version is $GARAGE_VERSION)"
        fi
        return 0
    fi
    command -v cargo >/dev/null 2>&1 || die "garage is not installed and cargo is not on PATH to install it"
    local cargo_home=${CARGO_HOME:-$HOME/.cargo}
    mkdir -p "$cargo_home"
    local lock=$cargo_home/chest-garage-install.lock
    say "installing Garage $GARAGE_VERSION with cargo (about 12 minutes on 2 cores; once per machine)"
    (
        # One install at a time: a second caller waits for the first, then finds the binary.
        if command -v flock >/dev/null 2>&1; then
            exec 9>"$lock"
            flock 9
        fi
        if find_garage >/dev/null; then
            exit 0
        fi
        cargo install garage --version "=$GARAGE_VERSION" --locked \
            --no-default-features --features "$GARAGE_FEATURES"
    ) || die "cargo install garage $GARAGE_VERSION failed (see the output above)"
    find_garage >/dev/null || die "garage was installed but is not on PATH nor in $cargo_home/bin"
}

GARAGE=
need_garage() {
    cmd_install
    GARAGE=$(find_garage)
}

# ---------------------------------------------------------------- helpers

random_hex() { head -c "$1" /dev/urandom | od -An -tx1 | tr -d ' \n'; }

# Garage keeps running when one of its API servers cannot bind: look for that.
bind_failed() { grep -q 'Address already in use' "$1/garage.log" 2>/dev/null; }

# How many times start / cluster-start try again with other ports.
ATTEMPTS=3

# write_config DIR RPC_PORT S3_PORT ADMIN_PORT REPLICATION RPC_SECRET
write_config() {
    local dir=$1 rpc=$2 s3=$3 admin=$4 rf=$5 secret=$6
    mkdir -p "$dir/meta" "$dir/data"
    (
        umask 077
        cat >"$dir/garage.toml" <<EOF
# generated by chest's scripts/garage.sh: a throwaway test server
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = $rf
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "$REGION"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
admin_token = "$(random_hex 24)"
EOF
    )
    printf '%s\n' "$s3" >"$dir/s3_port"
}

g() {
    local dir=$1
    shift
    "$GARAGE" -c "$dir/garage.toml" "$@"
}

# start_node DIR: starts the daemon in the background, records its pid
start_node() {
    local dir=$1
    : >>"$dir/garage.log"
    local launcher=()
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    RUST_LOG=${CHEST_GARAGE_LOG:-garage=info} nohup "${launcher[@]}" "$GARAGE" -c "$dir/garage.toml" server \
        >>"$dir/garage.log" 2>&1 </dev/null 9>&- &
    printf '%s\n' "$!" >"$dir/pid"
}

# wait_node DIR: until the node answers its CLI (RPC), bounded
wait_node() {
    local dir=$1 pid deadline
    pid=$(cat "$dir/pid")
    deadline=$((SECONDS + WAIT))
    until g "$dir" status >/dev/null 2>&1; do
        if bind_failed "$dir"; then
            log_tail "$dir/garage.log"
            die "a port of the garage node in $dir is taken"
        fi
        if ! alive "$pid"; then
            log_tail "$dir/garage.log"
            die "garage node in $dir exited while starting (pid $pid)"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$dir/garage.log"
            die "garage node in $dir did not answer within ${WAIT}s"
        fi
        sleep 0.3
    done
}

# s3_ok PORT: a signed ListObjectsV2 on the bucket answers 200 (needs curl; without
# curl, an open port is taken as ready)
s3_ok() {
    local port=$1
    if command -v curl >/dev/null 2>&1; then
        local code
        code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 \
            -H 'x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855' \
            --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY_ID:$SECRET_ACCESS_KEY" \
            "http://127.0.0.1:$port/$BUCKET?list-type=2&max-keys=1" 2>/dev/null) || true
        [[ $code == 200 ]]
    else
        port_in_use "$port"
    fi
}

wait_s3() {
    local dir=$1 port deadline
    port=$(cat "$dir/s3_port")
    deadline=$((SECONDS + WAIT))
    until s3_ok "$port"; do
        if bind_failed "$dir"; then
            log_tail "$dir/garage.log"
            die "a port of the garage node in $dir is taken"
        fi
        if ! alive "$(cat "$dir/pid" 2>/dev/null)"; then
            log_tail "$dir/garage.log"
            die "garage node in $dir exited"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$dir/garage.log"
            die "bucket $BUCKET at http://127.0.0.1:$port did not answer S3 requests within ${WAIT}s"
        fi
        sleep 0.3
    done
}

stop_node() { stop_pid_file "$1/pid" node; }

node_id() { g "$1" node id -q 2>/dev/null | head -n 1 | tr -d '[:space:]'; }

# bucket, key, permissions (through the node in DIR; idempotent)
create_bucket_and_key() {
    local dir=$1
    g "$dir" bucket info "$BUCKET" >/dev/null 2>&1 || g "$dir" bucket create "$BUCKET" >/dev/null ||
        die "cannot create bucket $BUCKET"
    g "$dir" key info "$ACCESS_KEY_ID" >/dev/null 2>&1 ||
        g "$dir" key import --yes "$ACCESS_KEY_ID" "$SECRET_ACCESS_KEY" -n "$KEY_NAME" >/dev/null ||
        die "cannot import the test key"
    g "$dir" bucket allow --read --write --owner "$BUCKET" --key "$ACCESS_KEY_ID" >/dev/null ||
        die "cannot grant the test key access to $BUCKET"
}

# apply_layout DIR ZONE_AND_ID...: assigns each "zone=id" and applies layout version 1
apply_layout() {
    local dir=$1
    shift
    local pair
    for pair in "$@"; do
        g "$dir" layout assign -z "${pair%%=*}" -c 1G "${pair#*=}" >/dev/null ||
            die "garage layout assign failed for node ${pair#*=}"
    done
    g "$dir" layout apply --version 1 >/dev/null || die "garage layout apply failed"
}

# ---------------------------------------------------------------- single node

single_dir() { [[ -f $SINGLE_HOME/dir ]] && cat "$SINGLE_HOME/dir"; }

single_running() {
    local dir
    dir=$(single_dir) || return 1
    [[ -f $dir/pid ]] && alive "$(cat "$dir/pid")" && s3_ok "$(cat "$dir/s3_port")"
}

do_start() {
    if single_running; then
        say "single node already running; env: $SINGLE_HOME/env"
        printf '%s\n' "$SINGLE_HOME/env"
        return 0
    fi
    do_stop quiet
    need_garage
    local attempt
    for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
        # In a subshell, so that a failed attempt (`die`) can be cleaned up and retried.
        if in_subshell start_single; then
            return 0
        fi
        do_stop quiet
        ((attempt < ATTEMPTS)) && say "starting again with other ports (attempt $((attempt + 1)) of $ATTEMPTS)"
    done
    die "could not start the single node ($ATTEMPTS attempts)"
}

start_single() {
    mkdir -p "$SINGLE_HOME"
    local dir
    dir=$(mktemp -d "$STATE_ROOT/chest-garage-node.XXXXXX")
    printf '%s\n' "$dir" >"$SINGLE_HOME/dir"
    local rpc s3 admin
    pick_port rpc
    pick_port s3
    pick_port admin
    write_config "$dir" "$rpc" "$s3" "$admin" 1 "$(random_hex 32)"
    start_node "$dir"
    wait_node "$dir"
    local id
    id=$(node_id "$dir")
    [[ -n $id ]] || die "cannot read the node id"
    apply_layout "$dir" "dc1=${id%%@*}"
    create_bucket_and_key "$dir"
    wait_s3 "$dir"
    local endpoint=http://127.0.0.1:$s3
    cat >"$dir/env" <<EOF
# chest test server (Garage, single node) started by scripts/garage.sh start
# lock=none: Garage ignores conditional writes (no writer lease is possible);
# the tests and benchmarks keep to one writer per prefix themselves.
export CHEST_S3_URL='s3://$BUCKET?endpoint=$endpoint&region=$REGION&lock=none'
export AWS_ACCESS_KEY_ID='$ACCESS_KEY_ID'
export AWS_SECRET_ACCESS_KEY='$SECRET_ACCESS_KEY'
export AWS_ENDPOINT_URL='$endpoint'
export AWS_REGION='$REGION'
export CHEST_GARAGE_DIR='$dir'
EOF
    cp "$dir/env" "$SINGLE_HOME/env"
    say "single node up: S3 at $endpoint, bucket $BUCKET (pid $(cat "$dir/pid"), dir $dir)"
    say "env: . $SINGLE_HOME/env"
    printf '%s\n' "$SINGLE_HOME/env"
}

do_stop() {
    local dir
    if dir=$(single_dir); then
        if [[ -d $dir ]]; then
            stop_node "$dir"
            rm -rf "$dir"
        fi
        [[ ${1:-} == quiet ]] || say "single node stopped"
    fi
    rm -rf "$SINGLE_HOME"
}

# ---------------------------------------------------------------- cluster

cluster_dir() { [[ -f $CLUSTER_HOME/dir ]] && cat "$CLUSTER_HOME/dir"; }

cluster_running() {
    local dir n
    dir=$(cluster_dir) || return 1
    for n in 1 2 3; do
        [[ -f $dir/node$n/pid ]] && alive "$(cat "$dir/node$n/pid")" &&
            s3_ok "$(cat "$dir/node$n/s3_port")" || return 1
    done
}

# wait_cluster_healthy NODE_DIR COUNT: until NODE_DIR's node sees COUNT healthy nodes
wait_cluster_healthy() {
    local dir=$1 want=$2 deadline out
    deadline=$((SECONDS + WAIT))
    while :; do
        out=$(g "$dir" status 2>/dev/null || true)
        local healthy
        healthy=$(printf '%s\n' "$out" | awk '/==== HEALTHY NODES/{h=1;next} /====/{h=0} h && /127\.0\.0\.1:/{n++} END{print n+0}')
        ((healthy >= want)) && return 0
        if ((SECONDS >= deadline)); then
            printf '%s\n' "$out" >&2
            die "the garage nodes did not see each other ($healthy of $want healthy) within ${WAIT}s"
        fi
        sleep 0.3
    done
}

do_cluster_start() {
    if cluster_running; then
        say "cluster already running; env: $CLUSTER_HOME/env"
        printf '%s\n' "$CLUSTER_HOME/env"
        return 0
    fi
    do_cluster_stop quiet
    need_garage
    local attempt
    for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
        if in_subshell start_cluster; then
            return 0
        fi
        do_cluster_stop quiet
        ((attempt < ATTEMPTS)) && say "starting again with other ports (attempt $((attempt + 1)) of $ATTEMPTS)"
    done
    die "could not start the cluster ($ATTEMPTS attempts)"
}

start_cluster() {
    mkdir -p "$CLUSTER_HOME"
    local dir
    dir=$(mktemp -d "$STATE_ROOT/chest-garage-cluster.XXXXXX")
    printf '%s\n' "$dir" >"$CLUSTER_HOME/dir"
    local secret n rpc s3 admin
    secret=$(random_hex 32)
    for n in 1 2 3; do
        pick_port rpc
        pick_port s3
        pick_port admin
        write_config "$dir/node$n" "$rpc" "$s3" "$admin" 3 "$secret"
        start_node "$dir/node$n"
    done
    for n in 1 2 3; do wait_node "$dir/node$n"; done
    local id1 id2 id3
    id1=$(node_id "$dir/node1")
    id2=$(node_id "$dir/node2")
    id3=$(node_id "$dir/node3")
    [[ -n $id1 && -n $id2 && -n $id3 ]] || die "cannot read the node ids"
    printf '%s\n' "$id1" >"$dir/node1/id"
    printf '%s\n' "$id2" >"$dir/node2/id"
    printf '%s\n' "$id3" >"$dir/node3/id"
    g "$dir/node1" node connect "$id2" >/dev/null || die "node 1 cannot connect to node 2 ($id2)"
    g "$dir/node1" node connect "$id3" >/dev/null || die "node 1 cannot connect to node 3 ($id3)"
    wait_cluster_healthy "$dir/node1" 3
    apply_layout "$dir/node1" "dc1=${id1%%@*}" "dc2=${id2%%@*}" "dc3=${id3%%@*}"
    create_bucket_and_key "$dir/node1"
    for n in 1 2 3; do wait_s3 "$dir/node$n"; done
    local e1 e2 e3
    e1=http://127.0.0.1:$(cat "$dir/node1/s3_port")
    e2=http://127.0.0.1:$(cat "$dir/node2/s3_port")
    e3=http://127.0.0.1:$(cat "$dir/node3/s3_port")
    cat >"$dir/env" <<EOF
# chest test cluster (Garage, 3 nodes, replication factor 3) started by scripts/garage.sh cluster-start
export CHEST_S3_CLUSTER_URL='s3://$BUCKET?endpoint=$e1&region=$REGION&lock=none'
export CHEST_S3_NODE1='$e1'
export CHEST_S3_NODE2='$e2'
export CHEST_S3_NODE3='$e3'
export CHEST_S3_CLUSTER_BUCKET='$BUCKET'
export CHEST_GARAGE_CLUSTER_DIR='$dir'
export CHEST_GARAGE_SCRIPT='$SCRIPT_PATH'
export AWS_ACCESS_KEY_ID='$ACCESS_KEY_ID'
export AWS_SECRET_ACCESS_KEY='$SECRET_ACCESS_KEY'
export AWS_REGION='$REGION'
EOF
    cp "$dir/env" "$CLUSTER_HOME/env"
    say "cluster up: S3 at $e1 $e2 $e3, bucket $BUCKET (dir $dir)"
    say "env: . $CLUSTER_HOME/env"
    printf '%s\n' "$CLUSTER_HOME/env"
}

do_cluster_stop() {
    local dir n
    if dir=$(cluster_dir); then
        if [[ -d $dir ]]; then
            for n in 1 2 3; do stop_node "$dir/node$n"; done
            rm -rf "$dir"
        fi
        [[ ${1:-} == quiet ]] || say "cluster stopped"
    fi
    rm -rf "$CLUSTER_HOME"
}

node_arg() {
    [[ ${1:-} =~ ^[123]$ ]] || die "expected a node number 1, 2 or 3, got '${1:-}'"
    local dir
    dir=$(cluster_dir) || die "no cluster is running (scripts/garage.sh cluster-start)"
    printf '%s\n' "$dir/node$1"
}

do_cluster_stop_node() {
    local dir
    dir=$(node_arg "${1:-}")
    stop_node "$dir"
    say "cluster node $1 stopped"
}

do_cluster_start_node() {
    local dir
    dir=$(node_arg "${1:-}")
    if [[ -f $dir/pid ]] && alive "$(cat "$dir/pid")"; then
        say "cluster node $1 is already running"
        return 0
    fi
    need_garage
    start_node "$dir"
    wait_node "$dir"
    # Reconnect at once rather than when the others' reconnection backoff expires.
    local m other running=1
    for m in 1 2 3; do
        other=$(dirname "$dir")/node$m
        [[ $other == "$dir" ]] && continue
        if [[ -f $other/pid ]] && alive "$(cat "$other/pid")"; then
            running=$((running + 1))
            # Both ways: the others would otherwise wait out their backoff before they
            # count the restarted node as up again.
            g "$dir" node connect "$(cat "$other/id")" >/dev/null 2>&1 ||
                say "warning: node $1 could not connect to node $m yet"
            g "$other" node connect "$(cat "$dir/id")" >/dev/null 2>&1 ||
                say "warning: node $m could not connect to node $1 yet"
        fi
    done
    wait_cluster_healthy "$dir" "$running"
    for m in 1 2 3; do
        other=$(dirname "$dir")/node$m
        if [[ -f $other/pid ]] && alive "$(cat "$other/pid")"; then
            wait_cluster_healthy "$other" "$running"
        fi
    done
    wait_s3 "$dir"
    say "cluster node $1 started again"
}

# ---------------------------------------------------------------- main

usage() {
    sed -n '2,/^set -euo/p' "$SCRIPT_PATH" | sed '$d' | sed 's/^# \{0,1\}//' >&2
    exit 2
}

main() {
    local cmd=${1:-}
    [[ $# -gt 0 ]] && shift
    case $cmd in
    install) cmd_install ;;
    start) with_lock do_start ;;
    stop) with_lock do_stop ;;
    status) single_running ;;
    env-file) printf '%s\n' "$SINGLE_HOME/env" ;;
    cluster-start) with_lock do_cluster_start ;;
    cluster-stop) with_lock do_cluster_stop ;;
    cluster-status) cluster_running ;;
    cluster-env-file) printf '%s\n' "$CLUSTER_HOME/env" ;;
    cluster-stop-node) with_lock do_cluster_stop_node "$@" ;;
    cluster-start-node) with_lock do_cluster_start_node "$@" ;;
    -h | --help | help) usage ;;
    *)
        say "unknown command '${cmd}'"
        usage
        ;;
    esac
}

main "$@"
