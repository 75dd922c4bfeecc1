//! What a new user meets in the first hour (issue 16), through the real binaries: misspelled
//! allow entries, generated tokens and roles, errors that say what to do, `canopy start` on a
//! data dir of the other mode, the daemons' help, and the snapshot log of a second data plane.

use std::net::SocketAddr;
use std::process::{Command, Stdio};

use canopy_e2e::{
    bin_path, free_port, http_get, wait_for_port, ChildProcess, Cli, DataPlane, FixtureServer,
    PyTransport, PythonServer, START_DEADLINE,
};
use serde_json::Value;

use crate::common::{access_token, enterprise};
use crate::dataplane_support::{eventually, SYNC_DEADLINE};

#[test]
fn first_hour_admin_surface() {
    let (cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);

    // 1. A misspelled server or tool is refused, naming the entry and what exists.
    let out = admin.fail(&["create", "mcp-client", "typo", "--allow", "rmcpp"]);
    out.assert_one_line_error()
        .assert_stderr_mentions("'rmcpp'")
        .assert_stderr_mentions("registered servers: rmcp")
        .assert_stderr_mentions("--force");
    admin
        .fail(&["create", "mcp-client", "typo", "--allow", "rmcp__ech"])
        .assert_stderr_mentions("'rmcp__ech'")
        .assert_stderr_mentions("echo");
    assert_eq!(admin.json(&["list", "mcp-clients"]), serde_json::json!([]));
    // --force stores it (a server registered later); listings mark what names nothing.
    let forced = admin.json(&[
        "create",
        "mcp-client",
        "agent",
        "--allow",
        "rmcp, later",
        "--force",
    ]);
    let old_token = access_token(&forced);
    let listed = admin.json(&["list", "mcp-clients"]);
    assert_eq!(
        listed[0]["unknown_entries"],
        serde_json::json!(["later"]),
        "{listed}"
    );
    let text = admin.ok(&["list", "mcp-clients"]).stdout;
    assert!(text.contains("later (not registered)"), "{text}");
    admin
        .fail(&["update", "mcp-client", "agent", "--allow", "rmcp__ech"])
        .assert_stderr_mentions("'rmcp__ech'");

    // 2 + 6. A generated token, printed once, acknowledged with a sub-millisecond elapsed_ms.
    let rotated = admin.json(&["update", "mcp-client", "agent", "--new-token"]);
    let new_token = access_token(&rotated);
    assert!(
        new_token.starts_with("canopy_mcp_") && new_token != old_token,
        "{rotated}"
    );
    assert!(rotated["elapsed_ms"].is_f64(), "{rotated}");
    let text = admin
        .ok(&["update", "mcp-client", "agent", "--new-token"])
        .stdout;
    assert!(
        text.contains("MCP client 'agent' updated (access token)."),
        "{text}"
    );
    assert!(text.contains("won't be shown again"), "{text}");

    admin.json(&["create", "user", "alice"]);
    let user = admin.json(&["update", "user", "alice", "--new-token"]);
    let alice = Cli::new(&cp);
    alice.ok(&["login", &access_token(&user)]);
    let promoted = admin.json(&["update", "user", "alice", "--role", "admin"]);
    assert_eq!(promoted["role"], "admin", "{promoted}");
    assert_eq!(alice.json(&["whoami"])["role"], "admin");
    // alice demotes the first admin; then she is the last admin and cannot be demoted.
    alice.ok(&["update", "user", "admin", "--role", "user"]);
    alice
        .fail(&["update", "user", "alice", "--role", "user"])
        .assert_stderr_mentions("last admin");

    // 7. `list users` is a table with a header.
    let users = alice.ok(&["list", "users"]).stdout;
    let header = users.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("ROLE"),
        "{users}"
    );

    // 5. Errors that say what to do.
    let dp = DataPlane::start(&cp);
    assert!(dp.wait_ready(SYNC_DEADLINE), "data plane never ready");
    Cli::with_registry(&dp.url())
        .fail(&["list", "servers"])
        .assert_stderr_mentions("is not a Canopy control plane")
        .assert_stderr_mentions("gRPC port");
    let stranger = Cli::new(&cp);
    stranger
        .fail(&["whoami"])
        .assert_stderr_mentions(&stranger.config_path().display().to_string());
    let sse = PythonServer::start(PyTransport::Sse);
    alice
        .fail(&["register", "--name", "legacy", "--url", &sse.url()])
        .assert_stderr_mentions("--transport sse");

    // 7. A second data plane's "snapshot applied" names the revision /readyz reports.
    let second = DataPlane::start(&cp);
    assert!(
        second.wait_ready(SYNC_DEADLINE),
        "second data plane never ready"
    );
    let (_, body) = second.get("/readyz").unwrap_or_default();
    let ready: Value = serde_json::from_str(&body).unwrap_or_default();
    let revision = ready["revision"].as_u64().unwrap_or_default();
    assert!(revision > 0, "{body}");
    let logs = eventually("snapshot log line", SYNC_DEADLINE, || {
        let logs = second.logs();
        logs.contains("snapshot applied").then_some(logs)
    });
    let line = logs
        .lines()
        .find(|l| l.contains("snapshot applied"))
        .unwrap_or_default();
    assert!(
        line.contains(&format!("revision={revision} ")),
        "{line}\n/readyz: {body}"
    );
}

#[test]
fn daemons_help_has_examples() {
    for bin in ["canopy-control-plane", "canopy-data-plane"] {
        let out = Command::new(bin_path(bin))
            .arg("--help")
            .output()
            .expect("run --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("Examples:\n"),
            "{bin}: {text}"
        );
    }
}

/// `canopy start` with `--data-dir`, on free ports; stderr goes to `log`.
fn start(
    dir: &std::path::Path,
    log: &std::path::Path,
    enterprise: bool,
) -> (ChildProcess, SocketAddr) {
    let grpc = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let http = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let mut cmd = Command::new(bin_path("canopy"));
    cmd.arg("start").arg("--data-dir").arg(dir.join("data"));
    if enterprise {
        cmd.arg("--enterprise");
    }
    cmd.args(["--grpc-listen", &grpc.to_string()])
        .args(["--http-listen", &http.to_string()]);
    for (k, _) in std::env::vars() {
        if k.starts_with("CANOPY_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("HOME", dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(log).expect("log file"));
    (ChildProcess::spawn("canopy start", cmd), http)
}

#[test]
fn start_checks_the_data_dir_first_and_says_what_next() {
    let root = tempfile::tempdir().expect("temp dir");
    let log = root.path().join("dev.log");
    let (mut dev, http) = start(root.path(), &log, false);
    assert!(
        wait_for_port(http, START_DEADLINE, || dev.is_running()),
        "dev start never listened"
    );
    eventually("started and next: lines", SYNC_DEADLINE, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        (text.contains("canopy started in development mode")
            && text.contains("next: canopy --registry")
            && text.contains("register --name"))
        .then_some(())
    });
    assert!(matches!(http_get(http, "/readyz"), Some((200, _))));
    dev.terminate(START_DEADLINE);

    let log = root.path().join("enterprise.log");
    let (mut ent, _) = start(root.path(), &log, true);
    let status = ent
        .wait_timeout(START_DEADLINE)
        .expect("enterprise start on a development data dir must exit");
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(!status.success(), "{text}");
    assert!(text.contains("created in development mode"), "{text}");
    assert!(
        !text.contains("started") && !text.contains("next:"),
        "{text}"
    );
}
