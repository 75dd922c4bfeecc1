//! The control plane's audit trail through the real binaries: Admin changes with
//! before/after and redacted secrets, failed logins, `audit export`, a data plane's `Ship`
//! (a tonic client here) de-duplicated and kept across a `kill -9`, and the control plane's
//! `canopy_cp_audit_*` metrics counting it.

use std::time::Duration;

use canopy_e2e::{
    free_port, http_get, Cli, ControlPlane, ControlPlaneOptions, FixtureOptions, FixtureServer,
};
use canopy_proto::v1 as pb;
use serde_json::{json, Value};

use crate::common::{access_token, enterprise, find};
use crate::faults::poll;

const UPSTREAM_SECRET: &str = "upstream-bearer-AUDIT-SECRET";
const HEADER_SECRET: &str = "header-AUDIT-SECRET";
const SETTLE: Duration = Duration::from_secs(10);

/// `audit list -o json` with `args`, polled until `ok` holds (control-plane events are
/// written just after the call that made them answers).
fn audit_until(admin: &Cli, args: &[&str], ok: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut all = vec!["audit", "list", "--limit", "1000"];
    all.extend_from_slice(args);
    poll(
        SETTLE,
        "audit events",
        || admin.run(&all).stdout,
        || {
            let events = admin.json(&all).as_array().cloned().unwrap_or_default();
            ok(&events).then_some(events)
        },
    )
}

fn command<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["canopy.command"] == name)
        .unwrap_or_else(|| panic!("no {name} event in {events:#?}"))
}

#[test]
fn admin_changes_and_failed_logins_are_in_the_trail_without_secrets() {
    let (mut cp, admin) = enterprise();
    let admin_token = std::fs::read_to_string(admin.config_path()).expect("admin config");
    let upstream = FixtureServer::http_with(FixtureOptions {
        require_bearer: Some(UPSTREAM_SECRET.into()),
        ..Default::default()
    });
    let conf = admin.write_file(
        "audited.json",
        &json!({
            "name": "audited",
            "url": upstream.url(),
            "bearer_token": UPSTREAM_SECRET,
            "headers": {"X-Api-Key": HEADER_SECRET},
        })
        .to_string(),
    );
    admin.ok(&[
        "register",
        "-c",
        conf.to_str().expect("utf-8 path"),
        "--audit-payload",
        "hash",
    ]);
    let servers = admin.json(&["list", "servers"]);
    assert_eq!(find(&servers, "audited")["audit_payload"], "hash");
    let client_token =
        access_token(&admin.json(&["create", "mcp-client", "c1", "--allow", "audited"]));
    admin.ok(&["update", "mcp-client", "c1", "--allow", "*"]);

    // A failed login: an unknown token.
    let stranger = Cli::new(&cp);
    stranger.fail(&["login", "canopy_usr_00000000000000000000000000000000"]);

    let changes = audit_until(&admin, &["--kind", "change"], |e| e.len() >= 4);
    let register = command(&changes, "RegisterServer");
    assert_eq!(register["canopy.object.kind"], "server");
    assert_eq!(register["canopy.object.name"], "audited");
    assert_eq!(register["canopy.before"], Value::Null);
    assert_eq!(register["canopy.after"]["bearer_token"], "redacted");
    assert_eq!(register["canopy.after"]["headers"]["X-Api-Key"], "redacted");
    assert_eq!(register["canopy.after"]["audit_payload"], "hash");
    assert_eq!(register["canopy.principal.name"], "admin");
    assert!(register["canopy.revision"].as_u64().unwrap_or(0) > 0);
    let update = command(&changes, "UpdateMcpClient");
    assert_eq!(
        update["canopy.before"]["allowed_servers"],
        json!(["audited"])
    );
    assert_eq!(update["canopy.after"]["allowed_servers"], json!(["*"]));
    assert_eq!(update["canopy.after"]["tokens"][0]["hash"], "redacted");
    assert_eq!(update["client.address"], "127.0.0.1");

    let failures = audit_until(&admin, &["--kind", "auth-failure"], |e| {
        e.iter().any(|f| f["canopy.command"] == "WhoAmI")
    });
    let login = command(&failures, "WhoAmI");
    assert_eq!(login["canopy.reason"], "unknown or expired token");
    assert_eq!(login["canopy.surface"], "admin");

    // Text output, and the filters.
    let table = admin.ok(&["audit", "list", "--kind", "change", "--server", "audited"]);
    assert!(table.stdout.contains("RegisterServer"), "{}", table.stdout);
    assert!(
        !table.stdout.contains("UpdateMcpClient"),
        "{}",
        table.stdout
    );

    // Export: JSON lines, every event of the window, the same field names.
    let exported = admin.ok(&["audit", "export", "--since", "1h"]);
    let lines: Vec<Value> = exported
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let listed = admin.json(&["audit", "list", "--since", "1h", "--limit", "10000"]);
    assert_eq!(lines.len(), listed.as_array().map_or(0, Vec::len));
    assert!(lines
        .iter()
        .any(|l| l["canopy.command"] == "RegisterServer"));

    // No secret anywhere in what the trail shows.
    let everything = format!("{}\n{}", exported.stdout, table.stdout);
    for secret in [UPSTREAM_SECRET, HEADER_SECRET, client_token.as_str()] {
        assert!(!everything.contains(secret), "{secret} in the audit trail");
    }
    let admin_secret = admin_token
        .split('"')
        .find(|s| s.starts_with("canopy_usr_"))
        .expect("admin token in the config");
    assert!(!everything.contains(admin_secret));

    // The payload setting survives a restart.
    cp.restart();
    let servers = admin.json(&["list", "servers"]);
    assert_eq!(find(&servers, "audited")["audit_payload"], "hash");
    // And the failed login is still there.
    let failures = admin.json(&["audit", "list", "--kind", "auth-failure"]);
    assert!(failures.to_string().contains("WhoAmI"), "{failures}");
}

fn event(n: u32) -> pb::AuditEvent {
    let mut id = vec![7u8; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(1);
    pb::AuditEvent {
        id,
        time_unix_nanos: now - i64::from(1000 - n) * 1_000_000,
        kind: Some(pb::audit_event::Kind::Request(pb::McpRequestEvent {
            data_plane: "e2e-dp".into(),
            principal: Some(pb::AuditPrincipal {
                kind: Some(pb::audit_principal::Kind::McpClient("shipper".into())),
            }),
            method: "tools/call".into(),
            server: "files".into(),
            tool: "read".into(),
            outcome: pb::AuditOutcome::Ok as i32,
            http_status: 200,
            request_id: n.to_string(),
            ..Default::default()
        })),
    }
}

/// Ships `batches` on one stream with the data-plane token; the acks as (stored, duplicates).
fn ship(url: &str, token: &str, batches: Vec<pb::AuditBatch>) -> Vec<(u32, u32)> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut client = pb::audit_client::AuditClient::connect(url.to_owned())
            .await
            .expect("connect");
        let n = batches.len();
        let mut req = tonic::Request::new(tokio_stream::iter(batches));
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {token}").parse().expect("ascii"),
        );
        let mut acks = client.ship(req).await.expect("ship").into_inner();
        let mut out = Vec::new();
        for _ in 0..n {
            let ack = acks
                .message()
                .await
                .expect("ack")
                .expect("an ack per batch");
            out.push((ack.stored, ack.duplicates));
        }
        out
    })
}

#[test]
fn a_batch_shipped_twice_is_stored_once_and_survives_kill9() {
    let (mut cp, admin) = enterprise();
    let batch = |seq| pb::AuditBatch {
        seq,
        events: (0..50).map(event).collect(),
        node_id: "e2e-dp".into(),
    };
    let acks = ship(&cp.url(), cp.data_plane_token(), vec![batch(1), batch(2)]);
    assert_eq!(acks, [(50, 0), (0, 50)]);

    // Acknowledged means durable: a crash right after loses nothing.
    cp.kill9();
    cp.restart();
    let requests = admin.json(&["audit", "list", "--kind", "request", "--limit", "1000"]);
    let requests = requests.as_array().cloned().unwrap_or_default();
    assert_eq!(requests.len(), 50);
    assert_eq!(requests[0]["mcp.method.name"], "tools/call");
    assert_eq!(requests[0]["gen_ai.tool.name"], "read");
    assert_eq!(requests[0]["jsonrpc.request.id"], "49");
    assert_eq!(requests[0]["canopy.principal.name"], "shipper");
    // The ids are remembered across the restart.
    assert_eq!(
        ship(&cp.url(), cp.data_plane_token(), vec![batch(3)]),
        [(0, 50)]
    );
    let filtered = admin.json(&["audit", "list", "--client", "shipper", "--limit", "5"]);
    assert_eq!(filtered.as_array().map_or(0, Vec::len), 5);
}

/// The value of an unlabelled sample on a `/metrics` page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

#[test]
fn audit_ingest_is_counted_in_the_control_plane_metrics() {
    let metrics = std::net::SocketAddr::from(([127, 0, 0, 1], free_port()));
    let cp = ControlPlane::start(ControlPlaneOptions {
        enterprise: true,
        extra_args: vec!["--metrics-listen".into(), metrics.to_string()],
        ..Default::default()
    });
    let admin = Cli::new(&cp);
    admin.json(&["init-server"]);
    let batch = |seq| pb::AuditBatch {
        seq,
        events: (0..40).map(event).collect(),
        node_id: "e2e-dp".into(),
    };
    let acks = ship(&cp.url(), cp.data_plane_token(), vec![batch(1), batch(2)]);
    assert_eq!(acks, [(40, 0), (0, 40)]);
    // The control plane's own events (init-server) are written off the caller's path: wait
    // for the page to settle on what the data plane's batches did, at least.
    let page = poll(
        SETTLE,
        "audit metrics",
        || http_get(metrics, "/metrics").unwrap_or_default().1,
        || {
            let (status, page) = http_get(metrics, "/metrics")?;
            (status == 200
                && sample(&page, "canopy_cp_audit_events_ingested_total")? >= 40.0
                && sample(&page, "canopy_cp_audit_duplicates_total")? == 40.0)
                .then_some(page)
        },
    );
    let value = |name: &str| sample(&page, name).unwrap_or_else(|| panic!("no {name} in {page}"));
    assert!(
        value("canopy_cp_audit_stored_bytes") > 40.0 * 100.0,
        "{page}"
    );
    assert!(value("canopy_cp_audit_commits_total") >= 1.0, "{page}");
    assert!(
        value("canopy_cp_audit_write_rounds_total") >= value("canopy_cp_audit_commits_total"),
        "{page}"
    );
    assert!(
        value("canopy_cp_audit_write_round_seconds_total") > 0.0,
        "{page}"
    );
    assert_eq!(value("canopy_cp_audit_retention_deleted_total"), 0.0);
    assert_eq!(value("canopy_cp_audit_writer_queue"), 0.0);
    // Read through the client index.
    let listed = admin.json(&["audit", "list", "--client", "shipper", "--limit", "1000"]);
    assert_eq!(listed.as_array().map_or(0, Vec::len), 40);
}
