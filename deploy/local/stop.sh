#!/usr/bin/env bash
# Stop what deploy/local/start.sh started in a run dir: nginx first (no new traffic), then the
# data planes, then the control plane (so it flushes last). SIGTERM, then SIGKILL after a deadline.
# Only pids from <run-dir>/pids whose command line is the expected program are signalled.
#
#   deploy/local/stop.sh [--run-dir DIR] [--deadline SECONDS]
set -euo pipefail

run_dir="${CANOPY_LOCAL_RUN_DIR:-./canopy-local}"
deadline="${CANOPY_LOCAL_STOP_DEADLINE:-30}"
while [ $# -gt 0 ]; do
    case "$1" in
        --run-dir) run_dir="${2:?--run-dir needs a value}"; shift 2 ;;
        --deadline) deadline="${2:?--deadline needs a value}"; shift 2 ;;
        -h | --help)
            echo "Usage: deploy/local/stop.sh [--run-dir DIR (CANOPY_LOCAL_RUN_DIR, ./canopy-local)] [--deadline SECONDS (30)]"
            exit 0
            ;;
        *) echo "stop.sh: unknown argument: $1" >&2; exit 2 ;;
    esac
done
[[ "$deadline" =~ ^[0-9]+$ ]] || { echo "stop.sh: --deadline must be a number" >&2; exit 2; }
pids="$run_dir/pids"
if [ ! -d "$pids" ]; then
    echo "stop.sh: nothing to stop ($pids does not exist)"
    exit 0
fi

# The program a pid file's process must be running (guards against a recycled pid).
expected_program() {
    case "$1" in
        nginx) echo nginx ;;
        control-plane) echo canopy-control-plane ;;
        dp*) echo canopy-data-plane ;;
        *) echo "" ;;
    esac
}

stop_one() {
    local name="$1" file="$pids/$1.pid" pid want
    [ -f "$file" ] || return 0
    pid="$(cat "$file" 2>/dev/null || true)"
    want="$(expected_program "$name")"
    if [[ ! "$pid" =~ ^[0-9]+$ ]] || [ "$pid" -le 1 ] || ! kill -0 "$pid" 2>/dev/null; then
        rm -f "$file"
        return 0
    fi
    if [ -z "$want" ] || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$want"; then
        echo "stop.sh: pid $pid of $name is not $want any more; not signalling it" >&2
        rm -f "$file"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    local end=$((SECONDS + deadline))
    while kill -0 "$pid" 2>/dev/null; do
        # A zombie (our own child that nobody reaped) has stopped already.
        if [ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" = Z ]; then
            break
        fi
        if [ "$SECONDS" -ge "$end" ]; then
            echo "stop.sh: $name (pid $pid) did not stop within ${deadline}s after SIGTERM; SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$file"
    echo "stopped $name (pid $pid)"
}

stop_one nginx
for f in "$pids"/dp*.pid; do
    [ -e "$f" ] || continue
    stop_one "$(basename "$f" .pid)"
done
stop_one control-plane
# Anything else someone left in the pid dir is not ours to guess about.
rm -f "$run_dir/nginx/nginx.pid"
