#!/usr/bin/env bash
# A real Ceph RGW (S3 over RADOS) on one host for chest's tests: a second S3 server beside
# Garage, one that honours conditional writes (If-None-Match / If-Match).
#
# Usage: scripts/ceph.sh <command>
#
#   install    fetches the Debian packages radosgw, ceph-mon, ceph-osd, ceph-common and
#              their dependencies with `apt-get download` and unpacks them with `dpkg -x`
#              into a cache directory (nothing is installed system-wide; seconds, once)
#   start      one ceph-mon, one ceph-osd (memstore: data in memory), pool size 1, and
#              radosgw on 127.0.0.1, with bucket `chest-test` owned by a user with fixed
#              test credentials; writes the env file printed by `env-file`
#   stop       stops the three daemons and removes their directory
#   status     exit status 0 if the gateway is up and answers S3 requests on the bucket
#   env-file   the path of the env file (stable)
#
# After `start`, `. "$(scripts/ceph.sh env-file)"` exports
#   CHEST_CEPH_URL=s3://chest-test?endpoint=http://127.0.0.1:<port>&region=default&access_key_id=...&secret_access_key=...
#   CHEST_CEPH_ENDPOINT, CHEST_CEPH_REGION, CHEST_CEPH_BUCKET,
#   CHEST_CEPH_ACCESS_KEY_ID, CHEST_CEPH_SECRET_ACCESS_KEY, CHEST_CEPH_DIR
# and nothing else: the credentials travel in the URL's query, so the AWS_* variables of
# the Garage server (scripts/garage.sh) stay as they are.
#
# Every command is idempotent: `start` on a running gateway only checks it, `stop` on a
# stopped one does nothing, `install` with the packages unpacked does nothing. Waits are
# bounded ($CHEST_CEPH_WAIT seconds, default 60); on a failure the script says what failed
# and shows the tail of the daemon's log.
#
# Environment:
#   CHEST_CEPH_CACHE   where `install` unpacks the packages
#                      (default: ${XDG_CACHE_HOME:-~/.cache}/chest-ceph)
#   CHEST_CEPH_STATE   where the servers' directories go (default: ${TMPDIR:-/tmp})
#   CHEST_CEPH_WAIT    bound, in seconds, of every wait (default: 60)
#   CHEST_CEPH_PYTHON  the python3 that runs the `ceph` CLI (default: /usr/bin/python3, the
#                      system one the Debian python packages are built for)
set -euo pipefail

PACKAGES=(radosgw ceph-mon ceph-osd ceph-common)
# Needed at run time but not always listed by the simulated install.
EXTRA_PACKAGES=(libnl-3-200 libnl-route-3-200 libfuse2)

CACHE=${CHEST_CEPH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/chest-ceph}
CACHE=${CACHE%/}
ROOT=$CACHE/root
MARKER=$ROOT/.chest-ceph-complete

STATE_ROOT=${CHEST_CEPH_STATE:-${TMPDIR:-/tmp}}
STATE_ROOT=${STATE_ROOT%/}
WAIT=${CHEST_CEPH_WAIT:-60}
HOME_DIR=$STATE_ROOT/chest-ceph
LOCK_FILE=$STATE_ROOT/chest-ceph.lock

BUCKET=chest-test
# RGW's zonegroup; it takes any region in a signature, this is the one it names itself.
REGION=default
USER_ID=chest-test
# Fixed test credentials: test servers only.
ACCESS_KEY_ID=CHESTCEPHTEST0000001
SECRET_ACCESS_KEY=chest-ceph-test-secret-not-for-prod-0001
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

SCRIPT_PATH=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")

SCRIPT_NAME=ceph.sh
# say, die, with_lock, pick_port, alive, stop_pid_file, in_subshell, log_tail
# shellcheck source-path=SCRIPTDIR source=servers-lib.sh
. "$(dirname "$SCRIPT_PATH")/servers-lib.sh"

# ---------------------------------------------------------------- the packages

LIBS=$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/usr/lib/x86_64-linux-gnu/ceph:$ROOT/lib/x86_64-linux-gnu
BIN=$ROOT/usr/bin

installed() {
    [[ -f $MARKER && -x $BIN/ceph-mon && -x $BIN/ceph-osd && -x $BIN/radosgw &&
        -x $BIN/radosgw-admin && -x $BIN/monmaptool && -f $BIN/ceph ]]
}

# The packages to fetch: the named ones and every dependency a simulated install lists.
package_list() {
    local sim
    sim=$(LC_ALL=C apt-get install -s --no-install-recommends "${PACKAGES[@]}" 2>&1) ||
        {
            printf '%s\n' "$sim" | tail -n 20 >&2
            return 1
        }
    {
        printf '%s\n' "$sim" | awk '/^Inst /{print $2}'
        printf '%s\n' "${PACKAGES[@]}" "${EXTRA_PACKAGES[@]}"
    } | sort -u
}

apt_lists_ready() {
    local policy
    policy=$(LC_ALL=C apt-cache policy radosgw 2>/dev/null) || return 1
    [[ $policy == *"Candidate: "[0-9]* ]]
}

apt_update() { apt-get update -q >&2 || die "apt-get update failed"; }

# download WORK PKGS: the .deb files of PKGS (one name a line) into WORK/debs
download() {
    local work=$1 pkgs=$2
    rm -f "$work"/debs/*.deb
    say "downloading $(printf '%s\n' "$pkgs" | wc -l) Debian packages into $CACHE"
    # shellcheck disable=SC2086 # one package name a word
    (cd "$work/debs" && apt-get download -q $pkgs >"$work/download.log" 2>&1)
}

do_install() {
    if installed; then
        return 0
    fi
    command -v apt-get >/dev/null 2>&1 || die "apt-get is not here: the Ceph packages come from Debian"
    command -v dpkg >/dev/null 2>&1 || die "dpkg is not here: the Ceph packages come from Debian"
    mkdir -p "$CACHE"
    (
        # One install at a time: a second caller waits for the first, then finds it done.
        if command -v flock >/dev/null 2>&1; then
            exec 9>"$CACHE.lock"
            flock -w 600 9 || die "another install holds $CACHE.lock for more than 600s"
        fi
        installed && exit 0
        if ! apt_lists_ready; then
            say "no package list names radosgw: running apt-get update"
            apt_update
            apt_lists_ready || die "apt-get update ran but no package list names radosgw"
        fi
        local work
        work=$(mktemp -d "$CACHE/install.XXXXXX")
        # shellcheck disable=SC2064 # expand now: the directory of this attempt
        trap "rm -rf '$work'" EXIT
        mkdir -p "$work/debs" "$work/root"
        local pkgs
        pkgs=$(package_list) || die "apt-get install -s ${PACKAGES[*]} failed (see above)"
        if ! download "$work" "$pkgs"; then
            # Old package lists name versions the mirror no longer has.
            say "apt-get download failed; refreshing the package lists and trying again"
            apt_update
            pkgs=$(package_list) || die "apt-get install -s ${PACKAGES[*]} failed (see above)"
            download "$work" "$pkgs" || {
                tail -n 20 "$work/download.log" >&2
                die "apt-get download failed"
            }
        fi
        local deb
        for deb in "$work"/debs/*.deb; do
            dpkg -x "$deb" "$work/root" || die "dpkg -x $deb failed"
        done
        # Nothing in the cache runs as another user (sudo is among the dependencies).
        find "$work/root" -type f -perm /6000 -exec chmod ug-s {} + 2>/dev/null || true
        printf '%s\n' "$pkgs" >"$work/root/.chest-ceph-packages"
        (cd "$work/debs" && ls) >"$work/root/.chest-ceph-debs"
        touch "$work/root/.chest-ceph-complete"
        rm -rf "$ROOT"
        mv "$work/root" "$ROOT"
    ) || die "installing the Ceph packages into $CACHE failed"
    installed || die "the Ceph packages were unpacked into $ROOT but its binaries are missing"
    say "Ceph $(cephenv "$BIN/ceph-mon" --version 2>/dev/null | awk '{print $3}') unpacked into $ROOT"
}

PYTHON=
find_python() {
    PYTHON=${CHEST_CEPH_PYTHON:-}
    if [[ -z $PYTHON ]]; then
        if [[ -x /usr/bin/python3 ]]; then
            PYTHON=/usr/bin/python3
        else
            PYTHON=$(command -v python3) || die "no python3 to run the ceph CLI"
        fi
    fi
    local ext
    ext=$(find "$ROOT/usr/lib/python3/dist-packages" -maxdepth 1 -name 'rados.cpython-*.so' | head -n 1)
    if [[ -n $ext ]]; then
        local want have
        want=$(basename "$ext" | sed -E 's/^rados\.cpython-([0-9]+)-.*/\1/')
        have=$("$PYTHON" -c 'import sys; print("%d%d" % sys.version_info[:2])' 2>/dev/null) ||
            die "$PYTHON does not run"
        [[ $want == "$have" ]] ||
            die "the ceph CLI's modules are built for python ${want:0:1}.${want:1}, $PYTHON is ${have:0:1}.${have:1} (set CHEST_CEPH_PYTHON)"
    fi
}

cephenv() { LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH} "$@"; }

# ---------------------------------------------------------------- helpers

ATTEMPTS=3

uuid() {
    if [[ -r /proc/sys/kernel/random/uuid ]]; then
        cat /proc/sys/kernel/random/uuid
    else
        cephenv "$BIN/uuidgen"
    fi
}

# c DIR ARGS...: the ceph CLI on the cluster in DIR, bounded
c() {
    local dir=$1
    shift
    PYTHONPATH=$ROOT/usr/lib/python3/dist-packages${PYTHONPATH:+:$PYTHONPATH} \
        cephenv timeout 30 "$PYTHON" "$BIN/ceph" -c "$dir/ceph.conf" --connect-timeout 10 "$@"
}

write_config() {
    local dir=$1 mon_port=$2 rgw_port=$3
    mkdir -p "$dir/mon" "$dir/osd" "$dir/rgw" "$dir/run" "$dir/log" "$dir/crash"
    cat >"$dir/ceph.conf" <<EOF
# generated by chest's scripts/ceph.sh: a throwaway single-host test cluster
[global]
fsid = $(uuid)
mon_host = v2:127.0.0.1:$mon_port
mon_initial_members = a
public_network = 127.0.0.0/8
ms_bind_msgr1 = false
ms_bind_msgr2 = true
# No cephx: a loopback test cluster. radosgw needs the crc mode spelled out then.
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_mon_client_mode = crc
ms_client_mode = crc
ms_mon_service_mode = crc
ms_service_mode = crc
ms_cluster_mode = crc
ms_mon_cluster_mode = crc
run_dir = $dir/run
admin_socket = $dir/run/\$cluster-\$name.asok
pid_file = $dir/run/\$cluster-\$name.pid
log_file = $dir/log/\$cluster-\$name.log
mon_cluster_log_file = $dir/log/\$cluster.log
crash_dir = $dir/crash
plugin_dir = $ROOT/usr/lib/x86_64-linux-gnu/ceph
erasure_code_dir = $ROOT/usr/lib/x86_64-linux-gnu/ceph/erasure-code
osd_class_dir = $ROOT/usr/lib/x86_64-linux-gnu/rados-classes
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
osd_crush_chooseleaf_type = 0
# The test machine's disk may be fuller than Ceph likes; the data lives in memory anyway.
mon_data_avail_warn = 2
mon_data_avail_crit = 1

[mon]
mon_data = $dir/mon

[osd]
osd_data = $dir/osd
osd_objectstore = memstore
memstore_device_bytes = 4294967296

[client.rgw]
rgw_frontends = beast endpoint=127.0.0.1:$rgw_port
rgw_data = $dir/rgw
EOF
    printf '%s\n' "$rgw_port" >"$dir/rgw_port"
}

# launch DIR NAME CMD...: starts a daemon in the foreground of a background job, records its pid
launch() {
    local dir=$1 name=$2
    shift 2
    local launcher=(nohup)
    command -v setsid >/dev/null 2>&1 && launcher=(setsid)
    # Every step execs the next (no shell function, no fork), so that $! is the daemon itself.
    (exec env "LD_LIBRARY_PATH=$LIBS${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" "${launcher[@]}" "$@" \
        >>"$dir/log/$name.out" 2>&1 </dev/null 9>&-) &
    printf '%s\n' "$!" >"$dir/$name.pid"
}

# failed DIR NAME WHAT: shows the daemon's output and log, and dies
failed() {
    local dir=$1 name=$2
    log_tail "$dir/log/$name.out"
    case $name in
    mon) log_tail "$dir/log/ceph-mon.a.log" ;;
    osd) log_tail "$dir/log/ceph-osd.0.log" ;;
    rgw) log_tail "$dir/log/ceph-client.rgw.log" ;;
    esac
    die "$3"
}

# wait_until DIR NAME WHAT CMD...: until CMD succeeds, while the daemon NAME lives, bounded
wait_until() {
    local dir=$1 name=$2 what=$3 pid deadline
    shift 3
    pid=$(cat "$dir/$name.pid")
    deadline=$((SECONDS + WAIT))
    until "$@" >/dev/null 2>&1; do
        alive "$pid" || failed "$dir" "$name" "ceph $name in $dir exited (pid $pid) before $what"
        ((SECONDS < deadline)) || failed "$dir" "$name" "ceph $name in $dir: no $what within ${WAIT}s"
        sleep 0.3
    done
}

osd_up() {
    local stat
    stat=$(c "$1" osd stat 2>/dev/null) || return 1
    [[ $stat =~ (^|[^0-9])1\ up ]]
}

# signed PORT METHOD PATH: the HTTP status of a signed S3 request (needs curl)
signed() {
    curl -s -o /dev/null -w '%{http_code}' --max-time 5 -X "$2" \
        -H "x-amz-content-sha256: $EMPTY_SHA256" \
        --aws-sigv4 "aws:amz:$REGION:s3" --user "$ACCESS_KEY_ID:$SECRET_ACCESS_KEY" \
        "http://127.0.0.1:$1$3" 2>/dev/null || true
}

rgw_answers() { [[ $(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$1/" 2>/dev/null) == 200 ]]; }

s3_ok() { [[ $(signed "$1" GET "/$BUCKET?list-type=2&max-keys=1") == 200 ]]; }

stop_daemon() { stop_pid_file "$1/$2.pid" "ceph $2"; }

# ---------------------------------------------------------------- the cluster

state_dir() { [[ -f $HOME_DIR/dir ]] && cat "$HOME_DIR/dir"; }

running() {
    local dir name
    dir=$(state_dir) || return 1
    for name in mon osd rgw; do
        [[ -f $dir/$name.pid ]] && alive "$(cat "$dir/$name.pid")" || return 1
    done
    command -v curl >/dev/null 2>&1 && s3_ok "$(cat "$dir/rgw_port")"
}

do_start() {
    if running; then
        say "already running; env: $HOME_DIR/env"
        printf '%s\n' "$HOME_DIR/env"
        return 0
    fi
    do_stop quiet
    command -v curl >/dev/null 2>&1 || die "curl is needed to create the bucket and to check the gateway"
    command -v timeout >/dev/null 2>&1 || die "timeout (coreutils) is needed to bound the ceph CLI"
    do_install
    find_python
    local attempt
    for ((attempt = 1; attempt <= ATTEMPTS; attempt++)); do
        # In a subshell, so that a failed attempt (`die`) can be cleaned up and retried.
        if in_subshell start_cluster; then
            return 0
        fi
        do_stop quiet
        ((attempt < ATTEMPTS)) && say "starting again with other ports (attempt $((attempt + 1)) of $ATTEMPTS)"
    done
    die "could not start Ceph ($ATTEMPTS attempts)"
}

start_cluster() {
    mkdir -p "$HOME_DIR"
    local dir
    dir=$(mktemp -d "$STATE_ROOT/chest-ceph-node.XXXXXX")
    printf '%s\n' "$dir" >"$HOME_DIR/dir"
    local mon_port rgw_port
    pick_port mon_port
    pick_port rgw_port
    write_config "$dir" "$mon_port" "$rgw_port"
    local conf=$dir/ceph.conf fsid
    fsid=$(awk '$1 == "fsid" {print $3}' "$conf")

    # monitor
    cephenv "$BIN/monmaptool" --create --add a "v2:127.0.0.1:$mon_port" --fsid "$fsid" "$dir/monmap" \
        >"$dir/log/monmaptool.out" 2>&1 || failed "$dir" monmaptool "monmaptool failed"
    cephenv "$BIN/ceph-mon" -c "$conf" --mkfs -i a --monmap "$dir/monmap" >"$dir/log/mon-mkfs.out" 2>&1 ||
        failed "$dir" mon-mkfs "ceph-mon --mkfs failed"
    launch "$dir" mon "$BIN/ceph-mon" -c "$conf" -i a -f
    wait_until "$dir" mon "an answer from the monitor on port $mon_port" c "$dir" status

    # object storage daemon, in memory
    local osd_uuid osd_id
    osd_uuid=$(uuid)
    osd_id=$(c "$dir" osd new "$osd_uuid" 2>"$dir/log/osd-new.out") ||
        failed "$dir" osd-new "ceph osd new failed"
    [[ $osd_id == 0 ]] || die "ceph osd new gave id '$osd_id', expected 0"
    cephenv "$BIN/ceph-osd" -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >"$dir/log/osd-mkfs.out" 2>&1 ||
        failed "$dir" osd-mkfs "ceph-osd --mkfs failed"
    launch "$dir" osd "$BIN/ceph-osd" -c "$conf" -i 0 -f
    wait_until "$dir" osd "osd.0 up" osd_up "$dir"

    # gateway (creates its pools on first start)
    launch "$dir" rgw "$BIN/radosgw" -c "$conf" -n client.rgw -f
    wait_until "$dir" rgw "an HTTP answer on port $rgw_port" rgw_answers "$rgw_port"

    # user, bucket
    cephenv timeout 30 "$BIN/radosgw-admin" -c "$conf" -n client.admin user info --uid "$USER_ID" \
        >/dev/null 2>&1 ||
        cephenv timeout 30 "$BIN/radosgw-admin" -c "$conf" -n client.admin user create --uid "$USER_ID" \
            --display-name "chest tests" --access-key "$ACCESS_KEY_ID" --secret-key "$SECRET_ACCESS_KEY" \
            >"$dir/log/user-create.out" 2>&1 ||
        failed "$dir" user-create "radosgw-admin user create failed"
    local code
    code=$(signed "$rgw_port" PUT "/$BUCKET")
    [[ $code == 200 || $code == 409 ]] || failed "$dir" rgw "creating bucket $BUCKET answered HTTP $code"
    wait_until "$dir" rgw "S3 answers on bucket $BUCKET" s3_ok "$rgw_port"

    local endpoint=http://127.0.0.1:$rgw_port
    cat >"$dir/env" <<EOF
# chest test server (Ceph RGW, single host) started by scripts/ceph.sh start.
# The credentials are in the URL's query, so AWS_* (the Garage server's) stay as they are.
export CHEST_CEPH_URL='s3://$BUCKET?endpoint=$endpoint&region=$REGION&access_key_id=$ACCESS_KEY_ID&secret_access_key=$SECRET_ACCESS_KEY'
export CHEST_CEPH_ENDPOINT='$endpoint'
export CHEST_CEPH_REGION='$REGION'
export CHEST_CEPH_BUCKET='$BUCKET'
export CHEST_CEPH_ACCESS_KEY_ID='$ACCESS_KEY_ID'
export CHEST_CEPH_SECRET_ACCESS_KEY='$SECRET_ACCESS_KEY'
export CHEST_CEPH_DIR='$dir'
EOF
    cp "$dir/env" "$HOME_DIR/env"
    say "Ceph RGW up: S3 at $endpoint, bucket $BUCKET (dir $dir)"
    say "env: . $HOME_DIR/env"
    printf '%s\n' "$HOME_DIR/env"
}

do_stop() {
    local dir
    if dir=$(state_dir); then
        if [[ -d $dir ]]; then
            stop_daemon "$dir" rgw
            stop_daemon "$dir" osd
            stop_daemon "$dir" mon
            rm -rf "$dir"
        fi
        [[ ${1:-} == quiet ]] || say "stopped"
    fi
    rm -rf "$HOME_DIR"
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
    install) do_install ;;
    start) with_lock do_start ;;
    stop) with_lock do_stop ;;
    status) running ;;
    env-file) printf '%s\n' "$HOME_DIR/env" ;;
    -h | --help | help) usage ;;
    *)
        say "unknown command '${cmd}'"
        usage
        ;;
    esac
}

main "$@"
