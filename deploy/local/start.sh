#!/usr/bin/env bash
# Run Canopy on one machine without containers: a control plane, N data planes and nginx
# round-robin in front of them, all on 127.0.0.1. Stop it with deploy/local/stop.sh (same run dir).
#
#   deploy/local/start.sh [--enterprise] [--data-planes N] [--run-dir DIR] ...
#   deploy/local/start.sh --help
#
# Everything lives under the run dir: data/ (the control plane's data dir), data-plane.token,
# pids/<name>.pid, logs/<name>.log, cache/<dp>.cache, nginx/nginx.conf, and env (the addresses,
# in shell syntax, for scripts: `. RUN_DIR/env`).
#
# nginx: Debian's `nginx` package (installed with apt-get when missing and run as root; never
# configured system-wide). It runs from a config generated into the run dir, in the foreground of
# its own pid (daemon off), on an unprivileged port. Started by root, its workers drop to `nobody`.
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: deploy/local/start.sh [OPTIONS]

Starts canopy-control-plane, N canopy-data-plane and nginx (round-robin) on 127.0.0.1.

Options (each also read from the environment variable shown):
  --run-dir DIR          pids, logs, data, generated nginx config   [CANOPY_LOCAL_RUN_DIR, ./canopy-local]
  --bin-dir DIR          where the canopy binaries are              [CANOPY_LOCAL_BIN_DIR, see below]
  --data-planes N        number of data planes                      [CANOPY_LOCAL_DATA_PLANES, 3]
  --grpc-port PORT       control plane gRPC port                    [CANOPY_LOCAL_GRPC_PORT, 9090]
  --lb-port PORT         nginx port: MCP clients use /mcp here      [CANOPY_LOCAL_LB_PORT, 8080]
  --dp-base-port PORT    data plane i listens on PORT+i-1           [CANOPY_LOCAL_DP_BASE_PORT, 8081]
  --enterprise           enterprise mode (tokens required)          [CANOPY_LOCAL_ENTERPRISE=1]
  --init-token-file F    passed to the control plane                [CANOPY_LOCAL_INIT_TOKEN_FILE]
  --nginx PATH           nginx binary                               [CANOPY_LOCAL_NGINX, nginx]
  --no-install           never apt-get install nginx                [CANOPY_LOCAL_NO_INSTALL=1]
  --deadline SECONDS     give up waiting for a program to start     [CANOPY_LOCAL_DEADLINE, 60]
  -h, --help

Binaries: --bin-dir, else the directory of canopy-control-plane on PATH, else
<repo>/target/release, else <repo>/target/debug.
Exit status: 0 when everything answers; 1 (after stopping what it started) otherwise;
2 for a wrong command line; 3 when nginx is missing and cannot be installed.
EOF
}

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"

run_dir="${CANOPY_LOCAL_RUN_DIR:-./canopy-local}"
bin_dir="${CANOPY_LOCAL_BIN_DIR:-}"
data_planes="${CANOPY_LOCAL_DATA_PLANES:-3}"
grpc_port="${CANOPY_LOCAL_GRPC_PORT:-9090}"
lb_port="${CANOPY_LOCAL_LB_PORT:-8080}"
dp_base_port="${CANOPY_LOCAL_DP_BASE_PORT:-8081}"
enterprise="${CANOPY_LOCAL_ENTERPRISE:-0}"
init_token_file="${CANOPY_LOCAL_INIT_TOKEN_FILE:-}"
nginx_bin="${CANOPY_LOCAL_NGINX:-}"
no_install="${CANOPY_LOCAL_NO_INSTALL:-0}"
deadline="${CANOPY_LOCAL_DEADLINE:-60}"

die_usage() {
    echo "start.sh: $*" >&2
    echo "try: deploy/local/start.sh --help" >&2
    exit 2
}

while [ $# -gt 0 ]; do
    case "$1" in
        --run-dir) run_dir="${2:?--run-dir needs a value}"; shift 2 ;;
        --bin-dir) bin_dir="${2:?--bin-dir needs a value}"; shift 2 ;;
        --data-planes) data_planes="${2:?--data-planes needs a value}"; shift 2 ;;
        --grpc-port) grpc_port="${2:?--grpc-port needs a value}"; shift 2 ;;
        --lb-port) lb_port="${2:?--lb-port needs a value}"; shift 2 ;;
        --dp-base-port) dp_base_port="${2:?--dp-base-port needs a value}"; shift 2 ;;
        --enterprise) enterprise=1; shift ;;
        --init-token-file) init_token_file="${2:?--init-token-file needs a value}"; shift 2 ;;
        --nginx) nginx_bin="${2:?--nginx needs a value}"; shift 2 ;;
        --no-install) no_install=1; shift ;;
        --deadline) deadline="${2:?--deadline needs a value}"; shift 2 ;;
        -h | --help) usage; exit 0 ;;
        *) die_usage "unknown argument: $1" ;;
    esac
done

is_uint() { [[ "$1" =~ ^[0-9]+$ ]]; }
for pair in "data-planes:$data_planes" "grpc-port:$grpc_port" "lb-port:$lb_port" \
    "dp-base-port:$dp_base_port" "deadline:$deadline"; do
    is_uint "${pair#*:}" || die_usage "--${pair%%:*} must be a number, got '${pair#*:}'"
done
[ "$data_planes" -ge 1 ] || die_usage "--data-planes must be at least 1"
last_dp_port=$((dp_base_port + data_planes - 1))
[ "$last_dp_port" -le 65535 ] || die_usage "data plane ports run past 65535"
for p in "$grpc_port" "$lb_port"; do
    if [ "$p" -ge "$dp_base_port" ] && [ "$p" -le "$last_dp_port" ]; then
        die_usage "port $p overlaps the data plane ports $dp_base_port-$last_dp_port"
    fi
done
[ "$grpc_port" != "$lb_port" ] || die_usage "--grpc-port and --lb-port are the same"

# ---------------------------------------------------------------- binaries
if [ -z "$bin_dir" ]; then
    if command -v canopy-control-plane >/dev/null 2>&1; then
        bin_dir="$(dirname "$(command -v canopy-control-plane)")"
    elif [ -x "$REPO/target/release/canopy-control-plane" ]; then
        bin_dir="$REPO/target/release"
    else
        bin_dir="$REPO/target/debug"
    fi
fi
for b in canopy-control-plane canopy-data-plane; do
    if [ ! -x "$bin_dir/$b" ]; then
        echo "start.sh: $bin_dir/$b not found (build with \`cargo build --release\` or pass --bin-dir)" >&2
        exit 1
    fi
done

# ---------------------------------------------------------------- nginx
find_nginx() {
    if [ -n "$nginx_bin" ]; then
        command -v "$nginx_bin" 2>/dev/null || true
    elif command -v nginx >/dev/null 2>&1; then
        command -v nginx
    elif [ -x /usr/sbin/nginx ]; then
        echo /usr/sbin/nginx
    fi
}
nginx_path="$(find_nginx)"
if [ -z "$nginx_path" ]; then
    if [ "$no_install" = 1 ] || [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "start.sh: nginx not found; install Debian's package: sudo apt-get install nginx" >&2
        exit 3
    fi
    echo "==> installing nginx (apt-get)"
    # Only the package: its own service is not started (policy-rc.d) and nothing is configured.
    if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive RUNLEVEL=1 \
        apt-get install -y -qq --no-install-recommends nginx >/dev/null; }; then
        echo "start.sh: apt-get install nginx failed" >&2
        exit 3
    fi
    nginx_path="$(find_nginx)"
    [ -n "$nginx_path" ] || { echo "start.sh: nginx still not found after install" >&2; exit 3; }
fi

# ---------------------------------------------------------------- run dir
mkdir -p "$run_dir"
run_dir="$(cd "$run_dir" && pwd)"
pids="$run_dir/pids"
logs="$run_dir/logs"
mkdir -p "$pids" "$logs" "$run_dir/cache" "$run_dir/nginx"
for f in "$pids"/*.pid; do
    [ -e "$f" ] || continue
    pid="$(cat "$f" 2>/dev/null || true)"
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        echo "start.sh: $run_dir is in use ($(basename "$f" .pid) runs as pid $pid); run deploy/local/stop.sh --run-dir $run_dir first" >&2
        exit 1
    fi
    rm -f "$f"
done

token_file="$run_dir/data-plane.token"
if [ ! -s "$token_file" ]; then
    (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' >"$token_file")
fi
chmod 600 "$token_file"

# ---------------------------------------------------------------- helpers
# `http_status PORT PATH` prints the HTTP status of GET PATH on 127.0.0.1:PORT (empty if none).
http_status() {
    local line=""
    if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
        printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n' "$2" >&3 || true
        IFS= read -r -t 5 line <&3 || true
        exec 3<&- 3>&- || true
    fi
    line="${line#HTTP/1.? }"
    echo "${line%% *}"
}
port_open() {
    if { exec 3<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null; then
        exec 3<&- 3>&- || true
        return 0
    fi
    return 1
}
port_in_use_check() {
    if port_open "$1"; then
        echo "start.sh: 127.0.0.1:$1 is already in use ($2)" >&2
        exit 1
    fi
}

cleanup_on_failure() {
    echo "start.sh: stopping what was started" >&2
    "$HERE/stop.sh" --run-dir "$run_dir" >&2 || true
}

# `launch NAME CMD...`: run in the background (same process group as this script, immune to
# SIGHUP), stdout+stderr to logs/NAME.log, pid to pids/NAME.pid.
launch() {
    local name="$1"
    shift
    {
        echo "----- $(date -u +%Y-%m-%dT%H:%M:%SZ) start: $*"
    } >>"$logs/$name.log"
    nohup "$@" >>"$logs/$name.log" 2>&1 </dev/null &
    echo $! >"$pids/$name.pid"
}

# `wait_until NAME WHAT CHECK...`: poll CHECK until it succeeds, the process dies, or the deadline.
wait_until() {
    local name="$1" what="$2"
    shift 2
    local pid
    pid="$(cat "$pids/$name.pid")"
    local end=$((SECONDS + deadline))
    until "$@"; do
        if ! kill -0 "$pid" 2>/dev/null; then
            echo "start.sh: $name exited before $what; last log lines:" >&2
            tail -n 20 "$logs/$name.log" >&2 || true
            cleanup_on_failure
            exit 1
        fi
        if [ "$SECONDS" -ge "$end" ]; then
            echo "start.sh: $name: no $what within ${deadline}s; last log lines:" >&2
            tail -n 20 "$logs/$name.log" >&2 || true
            cleanup_on_failure
            exit 1
        fi
        sleep 0.2
    done
}
status_is_200() { [ "$(http_status "$1" "$2")" = 200 ]; }

port_in_use_check "$grpc_port" "--grpc-port"
port_in_use_check "$lb_port" "--lb-port"
for i in $(seq 1 "$data_planes"); do
    port_in_use_check $((dp_base_port + i - 1)) "data plane dp$i"
done

# ---------------------------------------------------------------- control plane
cp_args=(--data-dir "$run_dir/data" --listen "127.0.0.1:$grpc_port" --data-plane-token-file "$token_file")
[ "$enterprise" = 1 ] && cp_args+=(--enterprise)
[ -n "$init_token_file" ] && cp_args+=(--init-token-file "$init_token_file")
echo "==> control plane on 127.0.0.1:$grpc_port ($([ "$enterprise" = 1 ] && echo enterprise || echo development) mode)"
launch control-plane env -u CANOPY_DATA_PLANE_TOKEN -u CANOPY_INIT_TOKEN \
    "$bin_dir/canopy-control-plane" "${cp_args[@]}"
wait_until control-plane "gRPC listener on 127.0.0.1:$grpc_port" port_open "$grpc_port"

# ---------------------------------------------------------------- data planes
for i in $(seq 1 "$data_planes"); do
    port=$((dp_base_port + i - 1))
    echo "==> data plane dp$i on 127.0.0.1:$port"
    launch "dp$i" env -u CANOPY_DATA_PLANE_TOKEN "$bin_dir/canopy-data-plane" \
        --control-plane "http://127.0.0.1:$grpc_port" \
        --listen "127.0.0.1:$port" \
        --node-id "dp$i" \
        --cache-file "$run_dir/cache/dp$i.cache" \
        --data-plane-token-file "$token_file"
done
for i in $(seq 1 "$data_planes"); do
    wait_until "dp$i" "200 on /readyz" status_is_200 $((dp_base_port + i - 1)) /readyz
done

# ---------------------------------------------------------------- nginx
nginx_dir="$run_dir/nginx"
mkdir -p "$nginx_dir/tmp"
user_line=""
if [ "$(id -u)" -eq 0 ]; then
    # Never run nginx workers as root: the master keeps root only to manage them.
    user_line="user nobody $(id -gn nobody 2>/dev/null || echo nogroup);"
fi
{
    cat <<EOF
# Generated by deploy/local/start.sh: do not edit (rewritten at every start).
daemon off;
$user_line
worker_processes 1;
pid $nginx_dir/nginx.pid;
error_log $logs/nginx.error.log warn;
events { worker_connections 1024; }

http {
    access_log $logs/nginx.access.log;
    client_body_temp_path $nginx_dir/tmp/client_body;
    proxy_temp_path $nginx_dir/tmp/proxy;
    fastcgi_temp_path $nginx_dir/tmp/fastcgi;
    uwsgi_temp_path $nginx_dir/tmp/uwsgi;
    scgi_temp_path $nginx_dir/tmp/scgi;

    # Round-robin (nginx's default): the data planes are stateless, any one answers any request.
    upstream canopy_data_planes {
EOF
    for i in $(seq 1 "$data_planes"); do
        echo "        server 127.0.0.1:$((dp_base_port + i - 1)) max_fails=1 fail_timeout=5s;"
    done
    cat <<EOF
        keepalive 16;
    }

    server {
        listen 127.0.0.1:$lb_port;
        client_max_body_size 4m; # = the data planes' default --max-body-bytes

        location / {
            proxy_pass http://canopy_data_planes;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            # tools/call may answer as an SSE stream: no buffering, events pass as they come.
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_cache off;
            proxy_read_timeout 300s;
            # Retry on another replica only when connecting failed; never replay a sent POST.
            proxy_next_upstream error timeout;
        }
    }
}
EOF
} >"$nginx_dir/nginx.conf"

echo "==> nginx on 127.0.0.1:$lb_port -> $data_planes data planes ($nginx_path)"
if ! "$nginx_path" -t -q -p "$nginx_dir" -e "$logs/nginx.error.log" -c "$nginx_dir/nginx.conf" \
    >>"$logs/nginx.log" 2>&1; then
    echo "start.sh: nginx rejected $nginx_dir/nginx.conf:" >&2
    tail -n 20 "$logs/nginx.log" >&2 || true
    cleanup_on_failure
    exit 1
fi
launch nginx "$nginx_path" -p "$nginx_dir" -e "$logs/nginx.error.log" -c "$nginx_dir/nginx.conf"
wait_until nginx "200 on /healthz through 127.0.0.1:$lb_port" status_is_200 "$lb_port" /healthz

# ---------------------------------------------------------------- done
{
    echo "# Written by deploy/local/start.sh; source it: . $run_dir/env"
    echo "CANOPY_REGISTRY=http://127.0.0.1:$grpc_port"
    echo "CANOPY_LOCAL_MCP_URL=http://127.0.0.1:$lb_port/mcp"
    echo "CANOPY_LOCAL_LB_PORT=$lb_port"
    echo "CANOPY_LOCAL_GRPC_PORT=$grpc_port"
    echo "CANOPY_LOCAL_DATA_PLANE_PORTS=\"$(seq -s ' ' "$dp_base_port" "$last_dp_port")\""
    echo "CANOPY_LOCAL_RUN_DIR=$run_dir"
} >"$run_dir/env"

cat <<EOF
canopy is running (run dir: $run_dir)
  control plane (gRPC):  http://127.0.0.1:$grpc_port   (canopy --registry http://127.0.0.1:$grpc_port ...)
  data planes:           127.0.0.1:$dp_base_port-$last_dp_port
  MCP endpoint (nginx):  http://127.0.0.1:$lb_port/mcp
  logs:                  $logs
  stop:                  $HERE/stop.sh --run-dir $run_dir
EOF
