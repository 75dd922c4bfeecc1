//! Upstream credentials at rest, and a prompt control-plane shutdown (issue 17, points 4–6),
//! on one stack: a server registered with a bearer token and a header secret must not appear
//! in any byte of the control plane's data dir nor of the data plane's cache file; the data
//! dir is 0700 and its files 0600 (tightened again at start), the cache and its key 0600;
//! calls keep working after both planes restart (the data plane first, from its cache, with
//! the control plane down). SIGTERM with a connected data plane closes its Sync stream and
//! exits at once instead of waiting out the drain.

use std::path::{Path, PathBuf};
use std::time::Duration;

use canopy_e2e::{
    cache_file_revision, file_mode, files_containing, DataPlane, FixtureOptions, FixtureServer,
};
use serde_json::json;

use crate::common::{access_token, enterprise, revision};
use crate::faults::{echo_ok, metric, poll, readyz, CONVERGE};

const BEARER: &str = "upstream-bearer-at-rest-0123456789";
const HEADER_SECRET: &str = "upstream-header-at-rest-0123456789";
/// Failure deadline for the SIGTERM exit: well inside the 10 s drain it must not wait out.
const PROMPT_EXIT: Duration = Duration::from_secs(8);

/// Every directory and file under `dir` with its permission bits.
fn modes(dir: &Path) -> Vec<(PathBuf, u32, bool)> {
    let mut out = vec![(dir.to_owned(), file_mode(dir), true)];
    for entry in std::fs::read_dir(dir).expect("read the data dir") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            out.extend(modes(&path));
        } else {
            out.push((path.clone(), file_mode(&path), false));
        }
    }
    out
}

fn assert_private(dir: &Path) {
    for (path, mode, is_dir) in modes(dir) {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "mode of {}", path.display());
    }
}

fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {}: {e}", path.display()));
}

#[test]
fn upstream_credentials_are_sealed_at_rest_and_shutdown_is_prompt() {
    let (mut cp, admin) = enterprise();
    let upstream = FixtureServer::http_with(FixtureOptions {
        require_bearer: Some(BEARER.into()),
        ..Default::default()
    });
    let conf = admin.write_file(
        "locked.json",
        &json!({
            "name": "locked",
            "url": upstream.url(),
            "bearer_token": BEARER,
            "headers": {"X-Api-Key": HEADER_SECRET},
        })
        .to_string(),
    );
    admin.ok(&["register", "-c", conf.to_str().expect("utf-8 path")]);
    let token = access_token(&admin.json(&["create", "mcp-client", "caller", "--allow", "locked"]));
    let latest = revision(&admin.json(&["update", "mcp-client", "caller", "--allow", "locked"]));

    let cache_dir = tempfile::tempdir().expect("temp dir");
    let cache = cache_dir.path().join("state.cache");
    let cache_arg = cache.display().to_string();
    let mut dp = DataPlane::start_with(&cp, &["--node-id", "at-rest", "--cache-file", &cache_arg]);
    assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
    assert!(
        echo_ok(&dp, Some(&token), "locked__echo"),
        "call with the registered bearer token failed; logs:\n{}",
        dp.logs()
    );
    poll(
        CONVERGE,
        "cache file at the latest revision",
        || dp.logs(),
        || (cache_file_revision(&cache)? >= latest).then_some(()),
    );

    // SIGTERM with a connected data plane: the stream is closed, nothing waits for the drain.
    let status = cp.terminate_within(PROMPT_EXIT);
    assert!(status.success(), "SIGTERM must exit 0, got {status:?}");
    let logs = cp.logs();
    let drained = logs
        .lines()
        .find(|l| l.contains("drained: sync streams closed, nothing left in flight"))
        .unwrap_or_else(|| panic!("no drain line in the control-plane logs:\n{logs}"));
    assert!(
        drained.contains("sync_streams=1"),
        "{drained}\ncontrol plane:\n{logs}\ndata plane:\n{}",
        dp.logs()
    );
    assert!(
        !logs.contains("did not finish within the grace period"),
        "{logs}"
    );
    assert!(dp.terminate().success(), "data plane SIGTERM");

    // Not one byte of either secret on disk; private modes everywhere.
    for secret in [BEARER, HEADER_SECRET] {
        let hits = files_containing(cp.data_dir(), secret);
        assert!(hits.is_empty(), "{secret} in data dir files {hits:?}");
        let hits = files_containing(cache_dir.path(), secret);
        assert!(hits.is_empty(), "{secret} in cache files {hits:?}");
    }
    assert_private(cp.data_dir());
    assert_eq!(file_mode(&cache), 0o600, "cache file mode");
    assert_eq!(
        file_mode(&cache_dir.path().join("state.cache.key")),
        0o600,
        "cache key mode"
    );
    // The audit spool lives beside the cache (no secret in it either: checked above).
    let spool = cache_dir.path().join("state.cache.audit-spool");
    if spool.exists() {
        assert_eq!(file_mode(&spool), 0o600, "audit spool mode");
    }
    let leftovers: Vec<_> = std::fs::read_dir(cache_dir.path())
        .expect("read the cache dir")
        .map(|e| e.expect("dir entry").file_name())
        .filter(|n| n.to_str() != Some("state.cache.audit-spool"))
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "cache and key only (and the audit spool): {leftovers:?}"
    );

    // The data plane comes back first, control plane still down: the credentials come out of
    // the sealed cache.
    dp.restart();
    poll(
        CONVERGE,
        "/readyz from the cache",
        || dp.logs(),
        || (readyz(&dp).0 == 200).then_some(()),
    );
    assert!(
        echo_ok(&dp, Some(&token), "locked__echo"),
        "call from the sealed cache failed; logs:\n{}",
        dp.logs()
    );

    // A loosened data dir and key file are tightened at the next start.
    chmod(cp.data_dir(), 0o755);
    chmod(&cp.data_dir().join("token-hash.key"), 0o644);
    cp.restart();
    // An answer means the store is open (the port listens before that).
    let servers = admin.json(&["list", "servers"]);
    assert!(
        !servers.to_string().contains(BEARER) && !servers.to_string().contains(HEADER_SECRET),
        "{servers}"
    );
    assert_private(cp.data_dir());
    poll(
        CONVERGE,
        "data plane reconnected",
        || dp.logs(),
        || (metric(&dp, "canopy_sync_connected") == 1.0).then_some(()),
    );
    assert!(
        echo_ok(&dp, Some(&token), "locked__echo"),
        "call after both restarts failed; logs:\n{}",
        dp.logs()
    );
}
