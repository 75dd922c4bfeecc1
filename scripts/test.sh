#!/usr/bin/env bash
# The one command that runs Canopy's whole test suite on a fresh machine:
#   1. the test environment (Python venv with the official MCP SDK),
#   2. every workspace binary (the end-to-end tests spawn the real programs),
#   3. cargo test for the whole workspace.
# Extra arguments go to `cargo test` (e.g. `bash scripts/test.sh -- --nocapture`).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup-test-env.sh
bash scripts/setup-node-tools.sh

echo "==> deploy/validate.sh (Kubernetes manifests, Dockerfile, compose, systemd units)"
bash deploy/validate.sh

echo "==> cargo build --workspace --bins"
cargo build --workspace --bins

echo "==> cargo test --workspace"
LOG="$(mktemp)"
trap 'rm -f "$LOG"' EXIT
set +e
cargo test --workspace "$@" 2>&1 | tee "$LOG"
status=${PIPESTATUS[0]}
set -e

# One summary line per test binary is easy to miss in a long run: total them up at the end.
awk '
    /^test result:/ {
        for (i = 1; i <= NF; i++) {
            if ($(i+1) ~ /^passed;?$/)  passed  += $i
            if ($(i+1) ~ /^failed;?$/)  failed  += $i
            if ($(i+1) ~ /^ignored;?$/) ignored += $i
        }
        binaries++
    }
    END {
        printf "\n==> %d test binaries\n", binaries
        printf "summary: %d passed, %d failed, %d skipped\n", passed, failed, ignored
    }' "$LOG"
exit "$status"
