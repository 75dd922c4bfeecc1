//! The audit trail's data-plane flags with the real binaries (issue 12): with the control
//! plane gone and a small spool, `--audit-required` refuses `/mcp` with a 503 JSON-RPC error
//! once events cannot be kept, the drops are counted in `/metrics`, probes keep answering, and
//! the spool on disk is private and holds no token. Delivery and recovery against the
//! control plane's `Audit` service are covered in-process (`data-plane/src/audit/tests.rs`)
//! and end to end in `audit_fleet.rs` (fields, `kill -9` under load, a full spool's gap).

use canopy_e2e::{file_mode, files_containing, DataPlane, FixtureServer};
use serde_json::json;

use crate::common::{access_token, enterprise};
use crate::faults::{call, echo_ok, metric, poll, readyz, CONVERGE};

#[test]
fn audit_required_fails_closed_when_the_spool_is_full() {
    let (mut cp, admin) = enterprise();
    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let token = access_token(&admin.json(&["create", "mcp-client", "audited", "--allow", "rmcp"]));
    let dir = tempfile::tempdir().expect("temp dir");
    let spool = dir.path().join("audit.spool");
    let spool_arg = spool.display().to_string();
    let dp = DataPlane::start_with(
        &cp,
        &[
            "--node-id",
            "audited",
            "--audit-required",
            "--audit-spool-file",
            &spool_arg,
            "--audit-spool-max-bytes",
            "4096",
        ],
    );
    assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
    assert!(echo_ok(&dp, Some(&token), "rmcp__echo"));

    // The control plane is gone: events go to the spool until it is full, then requests
    // are refused.
    cp.kill9();
    let body = poll(
        CONVERGE,
        "/mcp refused with 503 once the audit spool is full",
        || dp.logs(),
        || {
            let (status, body) = call(&dp, Some(&token), "rmcp__echo", json!({"message": "x"}));
            (status == 503).then_some(body)
        },
    );
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("--audit-required"), "{body}");
    assert!(metric(&dp, "canopy_audit_events_dropped_total") > 0.0);
    assert_eq!(metric(&dp, "canopy_audit_refusing"), 1.0);
    assert!(metric(&dp, "canopy_audit_spool_bytes") > 0.0);
    assert!(
        metric(&dp, "canopy_audit_events_spooled_total") > 0.0,
        "nothing spooled; logs:\n{}",
        dp.logs()
    );
    // Probes still answer: the pod is not killed for it.
    assert_eq!(readyz(&dp).0, 200);
    // Closed stays closed while nothing changes.
    for _ in 0..5 {
        assert_eq!(
            call(&dp, Some(&token), "rmcp__echo", json!({"message": "x"})).0,
            503
        );
    }
    assert_eq!(file_mode(&spool), 0o600, "audit spool mode");
    assert!(
        files_containing(dir.path(), &token).is_empty(),
        "the client's token is in the audit spool"
    );
}

#[test]
fn audit_off_records_nothing() {
    let (cp, admin) = enterprise();
    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let token = access_token(&admin.json(&["create", "mcp-client", "quiet", "--allow", "rmcp"]));
    let dp = DataPlane::start_with(&cp, &["--node-id", "quiet", "--audit", "false"]);
    assert!(dp.wait_ready(CONVERGE), "not ready; logs:\n{}", dp.logs());
    assert!(echo_ok(&dp, Some(&token), "rmcp__echo"));
    let (status, text) = dp.get("/metrics").expect("GET /metrics");
    assert_eq!(status, 200);
    assert!(!text.contains("canopy_audit_"), "{text}");
    assert!(!text.contains("canopy_principal_requests_total{"), "{text}");
}
