# Helpers shared by the test-server scripts (scripts/garage.sh, scripts/ceph.sh).
# Sourced, not run. The sourcing script sets SCRIPT_NAME before sourcing, and
# STATE_ROOT, LOCK_FILE and WAIT before it calls with_lock.
# shellcheck shell=bash

say() { printf '%s: %s\n' "$SCRIPT_NAME" "$*" >&2; }
die() {
    say "error: $*"
    exit 1
}

# with_lock CMD...: runs CMD holding the script's lock file (bounded wait).
with_lock() {
    mkdir -p "$STATE_ROOT"
    if command -v flock >/dev/null 2>&1; then
        (
            exec 9>"$LOCK_FILE"
            flock -w "$WAIT" 9 || die "another $SCRIPT_NAME holds $LOCK_FILE for more than ${WAIT}s"
            "$@"
        )
    else
        "$@"
    fi
}

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Ports come from below the kernel's ephemeral range when there is room (so that no
# outgoing connection takes one between the pick and the bind).
PORT_MIN=20000
PORT_SPAN=40000
if [[ -r /proc/sys/net/ipv4/ip_local_port_range ]]; then
    read -r EPHEMERAL_LOW _ </proc/sys/net/ipv4/ip_local_port_range || EPHEMERAL_LOW=0
    if ((EPHEMERAL_LOW > 12000)); then
        PORT_MIN=10000
        PORT_SPAN=$((EPHEMERAL_LOW - 10000))
    fi
fi

# pick_port VAR: sets VAR to a free TCP port on 127.0.0.1, not handed out before by this script
TAKEN_PORTS=" "
pick_port() {
    local p i
    for ((i = 0; i < 500; i++)); do
        p=$((PORT_MIN + (RANDOM * 32768 + RANDOM) % PORT_SPAN))
        [[ $TAKEN_PORTS == *" $p "* ]] && continue
        if ! port_in_use "$p"; then
            TAKEN_PORTS+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "found no free TCP port on 127.0.0.1"
}

alive() { [[ -n ${1:-} ]] && kill -0 "$1" 2>/dev/null; }

# stop_pid_file FILE WHAT: stops the process whose pid FILE holds (TERM, then KILL
# after 15 s, saying so about WHAT), and removes FILE. Nothing to do without FILE.
stop_pid_file() {
    local file=$1 what=$2 pid
    [[ -f $file ]] || return 0
    pid=$(cat "$file")
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        local deadline=$((SECONDS + 15))
        while alive "$pid" && ((SECONDS < deadline)); do sleep 0.2; done
        if alive "$pid"; then
            say "$what $pid did not stop within 15s; killing it"
            kill -KILL "$pid" 2>/dev/null || true
            sleep 0.2
        fi
    fi
    rm -f "$file"
}

# in_subshell CMD...: runs CMD in a subshell with `set -e` in force (it would not be in
# an `if` condition), so that a failure ends only that subshell; returns its status.
in_subshell() {
    local rc=0
    ("$@") &
    wait "$!" || rc=$?
    return "$rc"
}

# log_tail FILE: the last lines of a server's log, on stderr (colour codes removed).
log_tail() {
    if [[ -f $1 ]]; then
        say "last lines of $1:"
        tail -n 30 "$1" | sed 's/\x1b\[[0-9;]*m//g' >&2
    fi
}
