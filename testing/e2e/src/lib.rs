//! Testkit for Canopy's end-to-end tests: runs the real binaries as child processes.
//!
//! What it does: finds the workspace binaries, starts a control plane / data plane / upstream MCP
//! fixtures on loopback ports with their own temp dirs and log files, runs the `canopy` CLI with an
//! isolated config, and kills every child it started when its handle drops.
//!
//! What it does not do: build anything (run `cargo build --workspace --bins` first — `scripts/test.sh`
//! does), reach anything but 127.0.0.1, or assert on timing. Waits are failure deadlines only.
//!
//! Typical use:
//! ```no_run
//! use canopy_e2e::{Cli, ControlPlane, FixtureServer};
//! let cp = ControlPlane::start_enterprise();
//! let admin = Cli::new(&cp);
//! admin.json(&["init-server"]);
//! let upstream = FixtureServer::http();
//! admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
//! let result = admin.json(&["invoke", "rmcp__add", "--input", r#"{"a":2,"b":3}"#]);
//! ```

mod cli;
mod control_plane;
mod data_plane;
mod fixture;
mod idp;
mod listening;
mod net;
mod otlp;
mod paths;
mod process;
mod python;
mod static_http;

pub use cli::{Cli, CliOutput};
pub use control_plane::{ControlPlane, ControlPlaneOptions, StartOutcome};
pub use data_plane::DataPlane;
pub use fixture::{FixtureOptions, FixtureServer, StdioCommand};
pub use idp::{node_oauth_client, IdentityProvider, TEST_CLIENT};
pub use net::{free_port, http_get, http_post, wait_for_port};
pub use otlp::OtlpReceiver;
pub use paths::{bin_path, node, node_tools, target_dir, venv_python, workspace_root};
pub use process::ChildProcess;
pub use python::{python_client, python_oauth_client, PyTransport, PythonServer};
pub use static_http::StaticHttpServer;

use std::path::Path;
use std::time::Duration;

/// How long a spawned program may take to start listening before the test fails. A failure
/// deadline for a stuck or crashed child, not a performance assertion.
pub const START_DEADLINE: Duration = Duration::from_secs(30);

/// How long one CLI invocation may run before the test fails (the CLI has its own deadlines;
/// this only stops a hung test from hanging the suite).
pub const CLI_DEADLINE: Duration = Duration::from_secs(120);

/// Every file under `dir` (recursively) whose bytes contain `needle`. Used by token-leak tests.
pub fn files_containing(dir: &Path, needle: &str) -> Vec<std::path::PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => {
                    if let Ok(bytes) = std::fs::read(&path) {
                        if contains_bytes(&bytes, needle.as_bytes()) {
                            hits.push(path);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    hits
}

fn contains_bytes(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// The revision a data plane's `--cache-file` holds, from its clear-text header (format v2:
/// magic line, written-at u64 LE, revision u64 LE, sealed chunks); `None` while there is no
/// such file.
pub fn cache_file_revision(path: &Path) -> Option<u64> {
    const MAGIC: &[u8] = b"canopy-dp-cache v2\n";
    let raw = std::fs::read(path).ok()?;
    let rest = raw.strip_prefix(MAGIC)?;
    let revision = rest.get(8..16)?;
    Some(u64::from_le_bytes(revision.try_into().ok()?))
}

/// Unix permission bits of a file (e.g. `0o600`).
pub fn file_mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    let meta =
        std::fs::metadata(path).unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
    meta.permissions().mode() & 0o777
}
