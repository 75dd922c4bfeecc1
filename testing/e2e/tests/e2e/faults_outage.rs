//! Control-plane outages (issue 4, "outage survival" and "resume without snapshot"): data
//! planes keep serving their last state through `kill -9` of the control plane, resume (not
//! snapshot) when it returns, serve from `--cache-file` after their own restart, and fail closed
//! past `--max-staleness`.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use canopy_e2e::{cache_file_revision, file_mode, Cli, DataPlane, FixtureServer};
use serde_json::json;

use crate::common::{access_token, enterprise, revision};
use crate::faults::{auth_status, call, echo_ok, metric, poll, readyz, CONVERGE};

const RESUMES: &str = "canopy_sync_resumes_total";
const SNAPSHOTS: &str = "canopy_sync_snapshots_total";
/// Hard cap of the caller loop (it normally stops long before, when told to).
const MAX_CALLS: usize = 20_000;

/// Registers a fixture as `rmcp`, creates `good` and `revoked` clients allowed on it.
fn setup(admin: &Cli, upstream: &FixtureServer) -> (String, String) {
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let good = access_token(&admin.json(&["create", "mcp-client", "good", "--allow", "rmcp"]));
    let revoked =
        access_token(&admin.json(&["create", "mcp-client", "revoked", "--allow", "rmcp"]));
    (good, revoked)
}

#[test]
fn faults_kill9_control_plane_under_load_then_resume_without_snapshot() {
    let (mut cp, admin) = enterprise();
    let upstream = FixtureServer::http();
    let (good, revoked) = setup(&admin, &upstream);
    let dps = [
        DataPlane::start_with(&cp, &["--node-id", "outage-a"]),
        DataPlane::start_with(&cp, &["--node-id", "outage-b"]),
    ];
    for dp in &dps {
        assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
        assert_eq!(auth_status(dp, &revoked), 200);
    }

    // Revoked before the crash, acknowledged by both data planes.
    let del = admin.json(&["delete", "mcp-client", "revoked", "--wait", "10s"]);
    assert_eq!(
        (del["confirmed"].as_u64(), del["expected"].as_u64()),
        (Some(2), Some(2)),
        "{del}"
    );
    for dp in &dps {
        assert_eq!(
            auth_status(dp, &revoked),
            401,
            "revoked token still accepted"
        );
    }
    let before: Vec<(f64, f64)> = dps
        .iter()
        .map(|dp| (metric(dp, RESUMES), metric(dp, SNAPSHOTS)))
        .collect();
    assert!(
        before.iter().all(|(_, s)| *s >= 1.0),
        "initial sync was not a snapshot: {before:?}"
    );

    // A client calls through both data planes in a loop while the control plane dies.
    let dps = Arc::new(dps);
    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicUsize::new(0));
    let failures = Arc::new(Mutex::new(Vec::<String>::new()));
    let worker = {
        let (dps, stop, calls, failures, good) = (
            Arc::clone(&dps),
            Arc::clone(&stop),
            Arc::clone(&calls),
            Arc::clone(&failures),
            good.clone(),
        );
        std::thread::spawn(move || {
            for i in 0..MAX_CALLS {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let dp = &dps[i % 2];
                let (status, body) = call(
                    dp,
                    Some(&good),
                    "rmcp__echo",
                    json!({"message": i.to_string()}),
                );
                let ok = status == 200
                    && body["result"]["content"][0]["text"]
                        .as_str()
                        .is_some_and(|t| t.contains(&i.to_string()));
                if !ok {
                    failures
                        .lock()
                        .expect("failures lock")
                        .push(format!("call {i} via {}: {status} {body}", dp.addr()));
                }
                calls.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let calls_reach = |n: usize, what: &str| {
        poll(
            CONVERGE,
            what,
            || format!("calls so far: {}", calls.load(Ordering::SeqCst)),
            || (calls.load(Ordering::SeqCst) >= n).then_some(()),
        )
    };
    calls_reach(20, "calls before the crash");
    cp.kill9();
    let at_crash = calls.load(Ordering::SeqCst);
    calls_reach(at_crash + 100, "calls while the control plane is down");
    // While it is down: the revocation holds on both, the valid token works.
    for dp in dps.iter() {
        assert_eq!(
            auth_status(dp, &revoked),
            401,
            "revoked token accepted during the outage"
        );
        let (status, body) = readyz(dp);
        assert_eq!(
            status, 200,
            "/readyz must stay 200 during an outage: {body}"
        );
    }

    cp.restart();
    for (dp, (resumes, snapshots)) in dps.iter().zip(&before) {
        poll(
            CONVERGE,
            "data plane resumed after the restart",
            || dp.logs(),
            || (metric(dp, RESUMES) > *resumes).then_some(()),
        );
        assert_eq!(
            metric(dp, SNAPSHOTS),
            *snapshots,
            "a reconnect after a control-plane restart must resume, not snapshot; logs:\n{}",
            dp.logs()
        );
        assert_eq!(
            auth_status(dp, &revoked),
            401,
            "revoked token accepted after the restart"
        );
    }
    let after_restart = calls.load(Ordering::SeqCst);
    calls_reach(after_restart + 20, "calls after the restart");
    stop.store(true, Ordering::SeqCst);
    worker.join().expect("caller thread panicked");
    let failures = failures.lock().expect("failures lock");
    assert!(
        failures.is_empty(),
        "{} of {} valid requests failed, e.g. {:?}",
        failures.len(),
        calls.load(Ordering::SeqCst),
        &failures[..failures.len().min(5)]
    );

    // And the fleet converges on new changes again, acknowledged by both.
    let del = admin.json(&["delete", "mcp-client", "good", "--wait", "10s"]);
    assert_eq!(
        (del["confirmed"].as_u64(), del["expected"].as_u64()),
        (Some(2), Some(2)),
        "{del}"
    );
    for dp in dps.iter() {
        assert_eq!(auth_status(dp, &good), 401);
    }
}

#[test]
fn faults_restarted_data_plane_serves_from_cache_while_control_plane_is_down() {
    let (mut cp, admin) = enterprise();
    let upstream = FixtureServer::http();
    let (good, revoked) = setup(&admin, &upstream);
    let cache_dir = tempfile::tempdir().expect("temp dir");
    let cache = cache_dir.path().join("state.cache");
    let cache_arg = cache.display().to_string();
    let mut dp = DataPlane::start_with(&cp, &["--node-id", "cached", "--cache-file", &cache_arg]);
    assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
    let del = admin.json(&["delete", "mcp-client", "revoked", "--wait", "10s"]);
    assert_eq!(del["confirmed"].as_u64(), Some(1), "{del}");

    // The cache file holds the revocation (its header says the revision in the clear; the
    // state itself is sealed, tokens only as hashes inside).
    poll(
        CONVERGE,
        "cache file with the revocation",
        || dp.logs(),
        || (cache_file_revision(&cache)? >= revision(&del)).then_some(()),
    );
    assert_eq!(file_mode(&cache) & 0o777, 0o600, "cache file mode");
    let raw = std::fs::read(&cache).expect("read the cache file");
    for secret in [&good, &revoked] {
        assert!(
            !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "a plaintext token is in the cache file"
        );
    }

    // Both die; only the data plane comes back, with the control plane still down.
    cp.kill9();
    dp.kill9();
    dp.restart();
    let (status, body) = poll(
        CONVERGE,
        "/readyz from the cache",
        || dp.logs(),
        || {
            let r = readyz(&dp);
            (r.0 == 200).then_some(r)
        },
    );
    assert_eq!(body["connected"], false, "{body}");
    assert!(
        body["staleness_seconds"].as_f64().is_some_and(|s| s > 0.0),
        "staleness: {body}"
    );
    assert_eq!(status, 200);
    assert!(metric(&dp, "canopy_sync_staleness_seconds") > 0.0);
    assert_eq!(metric(&dp, "canopy_sync_connected"), 0.0);
    assert!(
        echo_ok(&dp, Some(&good), "rmcp__echo"),
        "valid token must work from the cache; logs:\n{}",
        dp.logs()
    );
    assert_eq!(
        auth_status(&dp, &revoked),
        401,
        "revoked token accepted from the cache"
    );
    assert_eq!(metric(&dp, SNAPSHOTS), 0.0);

    // The control plane returns: the cached revision is resumed, not re-sent as a snapshot.
    cp.restart();
    poll(
        CONVERGE,
        "resume from the cached revision",
        || dp.logs(),
        || (metric(&dp, RESUMES) >= 1.0).then_some(()),
    );
    assert_eq!(metric(&dp, SNAPSHOTS), 0.0, "logs:\n{}", dp.logs());
    poll(
        CONVERGE,
        "staleness back to 0",
        || dp.logs(),
        || (readyz(&dp).1["staleness_seconds"].as_f64() == Some(0.0)).then_some(()),
    );
}

#[test]
fn faults_max_staleness_fails_closed_then_recovers() {
    let (mut cp, admin) = enterprise();
    let upstream = FixtureServer::http();
    let (good, _) = setup(&admin, &upstream);
    let dp = DataPlane::start_with(&cp, &["--node-id", "strict", "--max-staleness", "1s"]);
    assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
    assert!(echo_ok(&dp, Some(&good), "rmcp__echo"));

    cp.kill9();
    let body = poll(
        CONVERGE,
        "/mcp refused with 503 past --max-staleness",
        || dp.logs(),
        || {
            let (status, body) = call(&dp, Some(&good), "rmcp__echo", json!({"message": "x"}));
            (status == 503).then_some(body)
        },
    );
    assert!(
        body.get("error").is_some(),
        "503 without a JSON-RPC error body: {body}"
    );
    // Still ready (the probe must not kill the pod), but it says it is stale.
    let (status, ready) = readyz(&dp);
    assert_eq!(status, 200, "{ready}");
    assert_eq!(ready["stale"], true, "{ready}");
    // Fail closed stays closed while the control plane is away (no flapping on retries).
    for _ in 0..20 {
        assert_eq!(
            call(&dp, Some(&good), "rmcp__echo", json!({"message": "x"})).0,
            503
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    cp.restart();
    poll(
        CONVERGE,
        "/mcp serving again after the control plane returned",
        || dp.logs(),
        || echo_ok(&dp, Some(&good), "rmcp__echo").then_some(()),
    );
    assert_eq!(readyz(&dp).1["stale"], false);
}
