//! `canopy start --enterprise` (control plane + data plane in one process) end to end: start it
//! on free ports with a temp data dir, init-server, register, create a client, call through its
//! `/mcp`, then SIGTERM → exit 0.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use canopy_e2e::{
    bin_path, free_port, http_get, python_client, wait_for_port, ChildProcess, Cli, FixtureServer,
    START_DEADLINE,
};
use serde_json::json;

use crate::common::{access_token, first_text};
use crate::dataplane_support::{
    eventually, post_legacy, post_modern, wait_for_tool, SYNC_DEADLINE,
};

#[test]
fn canopy_start_enterprise_end_to_end() {
    let root = tempfile::Builder::new()
        .prefix("canopy-quickstart-")
        .tempdir()
        .expect("temp dir");
    let data_dir = root.path().join("data");
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let log = root.path().join("start.log");

    let mut cmd = Command::new(bin_path("canopy"));
    cmd.args(["start", "--enterprise", "--data-dir"])
        .arg(&data_dir)
        .args(["--grpc-listen", &grpc.to_string()])
        .args(["--http-listen", &http.to_string()]);
    for (k, _) in std::env::vars() {
        if k.starts_with("CANOPY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", root.path())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(root.path().join("start.out")).expect("log file"))
        .stderr(std::fs::File::create(&log).expect("log file"));
    let mut process = ChildProcess::spawn("canopy start", cmd);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        wait_for_port(grpc, START_DEADLINE, || process.is_running()),
        "canopy start never listened on {grpc}; logs:\n{}",
        logs()
    );
    assert!(
        wait_for_port(http, START_DEADLINE, || true),
        "canopy start never listened on {http}; logs:\n{}",
        logs()
    );
    eventually("quick start /readyz 200", SYNC_DEADLINE, || {
        matches!(http_get(http, "/readyz"), Some((200, _))).then_some(())
    });
    assert!(matches!(http_get(http, "/healthz"), Some((200, _))));
    assert!(
        data_dir.join("data-plane.token").is_file(),
        "no generated data-plane token in {}",
        data_dir.display()
    );

    let admin = Cli::with_registry(&format!("http://{grpc}"));
    let init = admin.json(&["init-server"]);
    assert_eq!(init["user"], "admin", "{init}");
    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &upstream.url()]);
    let created = admin.json(&["create", "mcp-client", "quick", "--allow", "rmcp"]);
    let token = access_token(&created);

    let mcp = format!("http://{http}/mcp");
    // Enterprise: no token → 401.
    let r = post_legacy(&mcp, None, 1, "tools/list", json!({}));
    assert_eq!(r.status, 401, "{r}");
    wait_for_tool(&mcp, Some(&token), "rmcp__echo");
    let r = post_legacy(
        &mcp,
        Some(&token),
        2,
        "tools/call",
        json!({"name": "rmcp__add", "arguments": {"a": 2, "b": 3}}),
    );
    assert_eq!(first_text(&r.result()), "5", "{r}");
    let r = post_modern(
        &mcp,
        Some(&token),
        3,
        "tools/call",
        json!({"name": "rmcp__echo", "arguments": {"message": "quick"}}),
    );
    assert_eq!(first_text(&r.result()), "quick", "{r}");
    assert_eq!(r.result()["resultType"], "complete", "{r}");
    let doc = python_client(
        &mcp,
        Some(&token),
        "auto",
        &["--call", "rmcp__echo", "--args", r#"{"message": "sdk"}"#],
    );
    assert_eq!(doc["ok"], true, "{doc}");
    assert_eq!(first_text(&doc["call"]), "sdk", "{doc}");

    // The in-process data plane is part of the fleet, and revocation waits for it.
    let planes = admin.json(&["list", "data-planes"]);
    assert_eq!(
        planes.as_array().map(Vec::len),
        Some(1),
        "one data plane expected: {planes}"
    );
    assert!(
        planes[0]["address"]
            .as_str()
            .is_some_and(|a| a.ends_with(&format!(":{}", http.port()))),
        "the in-process data plane reports its HTTP address {http}: {planes}"
    );
    let report = admin.json(&["delete", "mcp-client", "quick"]);
    assert_eq!(report["expected"], 1, "{report}");
    assert_eq!(report["confirmed"], 1, "{report}");
    let r = post_legacy(&mcp, Some(&token), 4, "tools/list", json!({}));
    assert_eq!(r.status, 401, "{r}");

    let (status, clean) = process.terminate(START_DEADLINE);
    assert!(clean, "canopy start ignored SIGTERM; logs:\n{}", logs());
    assert!(
        status.success(),
        "exit status {status:?}; logs:\n{}",
        logs()
    );
    assert!(
        !logs().contains("panicked"),
        "canopy start panicked:\n{}",
        logs()
    );
}
