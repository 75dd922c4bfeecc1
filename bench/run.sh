#!/usr/bin/env bash
# Canopy benchmarks — ONE command (see BENCHMARKS.md):
#
#   bash bench/run.sh             full run: release build, installs oha (cargo install) and wrk
#                                 (apt) if missing, criterion benches, then every figure of the
#                                 performance contract → bench/results/latest.md  (~15 min)
#   bash bench/run.sh --smoke     seconds and tiny sizes with the debug binaries (the test suite
#                                 runs this so the harness cannot rot) → bench/results/smoke.md
#
# Other arguments go to canopy-bench-run: --out FILE, --note "conditions", --large N,
# --round-secs S, --builtin-load, --work DIR. Set CANOPY_BENCH_NO_BUILD=1 to skip cargo
# (the smoke test does: the test suite builds the workspace binaries first).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

SMOKE=0
ARGS=()
for a in "$@"; do
    case "$a" in
        --smoke) SMOKE=1 ;;
        *) ARGS+=("$a") ;;
    esac
done

TARGET="${CARGO_TARGET_DIR:-target}"
case "$TARGET" in /*) ;; *) TARGET="$ROOT/$TARGET" ;; esac
PKGS=(-p canopy-bench -p canopy-control-plane -p canopy-data-plane)

has_out=0
for a in "${ARGS[@]+"${ARGS[@]}"}"; do [ "$a" = "--out" ] && has_out=1; done

if [ "$SMOKE" = 1 ]; then
    BINS="$TARGET/debug"
    if [ -z "${CANOPY_BENCH_NO_BUILD:-}" ]; then
        echo "==> cargo build (debug) ${PKGS[*]}" >&2
        cargo build --bins "${PKGS[@]}"
    fi
    OUT=()
    [ "$has_out" = 1 ] || OUT=(--out "$ROOT/bench/results/smoke.md")
    exec "$BINS/canopy-bench-run" --smoke --bins "$BINS" "${OUT[@]+"${OUT[@]}"}" "${ARGS[@]+"${ARGS[@]}"}"
fi

BINS="$TARGET/release"
if [ -z "${CANOPY_BENCH_NO_BUILD:-}" ]; then
    echo "==> cargo build --release ${PKGS[*]}" >&2
    cargo build --release --bins "${PKGS[@]}"
fi

export PATH="$HOME/.cargo/bin:$PATH"
if ! command -v oha >/dev/null 2>&1; then
    echo "==> installing oha (cargo install oha --locked)" >&2
    cargo install oha --locked
fi
if ! command -v wrk >/dev/null 2>&1; then
    echo "==> installing wrk (apt) for the cross-check" >&2
    if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
        apt-get install -y -qq wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; } \
            || echo "warning: wrk not installed; the cross-check rows are skipped" >&2
    else
        echo "warning: cannot install wrk (not root or no apt-get); the cross-check rows are skipped" >&2
    fi
fi
command -v taskset >/dev/null 2>&1 || echo "warning: taskset missing (util-linux): nothing will be pinned" >&2

CRIT=()
if [ -z "${CANOPY_BENCH_NO_CRITERION:-}" ]; then
    echo "==> criterion benches (in-process figures), pinned to core 0" >&2
    cargo bench -p canopy-bench --no-run
    PIN=()
    command -v taskset >/dev/null 2>&1 && PIN=(taskset -c 0)
    rm -rf "$TARGET/criterion"
    "${PIN[@]+"${PIN[@]}"}" cargo bench -p canopy-bench --bench auth_lookup --bench apply_change --bench route --bench jwt_verify \
        -- --warm-up-time 1 --measurement-time 3
    CRIT=(--criterion-dir "$TARGET/criterion")
fi

OUT=()
[ "$has_out" = 1 ] || OUT=(--out "$ROOT/bench/results/latest.md")
echo "==> canopy-bench-run" >&2
exec "$BINS/canopy-bench-run" --bins "$BINS" "${OUT[@]+"${OUT[@]}"}" "${CRIT[@]+"${CRIT[@]}"}" "${ARGS[@]+"${ARGS[@]}"}"
