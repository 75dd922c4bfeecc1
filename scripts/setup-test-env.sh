#!/usr/bin/env bash
# Prepares what Canopy's tests need beyond cargo: a Python venv at target/test-venv with the
# official MCP Python SDK (testing/python/requirements.txt, fully pinned).
# Idempotent: a venv whose installed requirements match the file's hash is left alone.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
VENV="$TARGET_DIR/test-venv"
REQS="$ROOT/testing/python/requirements.txt"
STAMP="$VENV/.requirements.sha256"

have_python() {
    command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' >/dev/null 2>&1
}

if ! have_python; then
    # Fresh Debian-like machine without a usable Python: install one (we run as root in CI).
    echo "setup-test-env: installing python3 and python3-venv with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
fi

want="$(sha256sum "$REQS" | cut -d' ' -f1)"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && "$VENV/bin/python" -c 'import mcp' >/dev/null 2>&1; then
    echo "setup-test-env: $VENV is up to date"
    exit 0
fi

mkdir -p "$TARGET_DIR"
if [ ! -x "$VENV/bin/python" ]; then
    echo "setup-test-env: creating $VENV"
    python3 -m venv "$VENV"
fi
echo "setup-test-env: installing $(basename "$REQS") into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --requirement "$REQS"
echo "$want" > "$STAMP"
echo "setup-test-env: done"
