//! Real clients and real upstreams through a data plane:
//! - the official TypeScript SDK client (`testing/node/client.mjs`) in enterprise mode, with a
//!   bearer token: listing, calling, `isError` results, JSON-RPC errors, a missing token;
//! - `@modelcontextprotocol/server-everything` over stdio, streamable HTTP and SSE, registered with
//!   the CLI and called through `/servers/<name>/mcp`; every result (text, image, structured
//!   content, `isError`) must equal what the same server answers directly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use canopy_e2e::{
    free_port, wait_for_port, workspace_root, ChildProcess, Cli, ControlPlane, DataPlane,
    FixtureServer, CLI_DEADLINE, START_DEADLINE,
};
use serde_json::{json, Value};

use super::{node, node_tools};
use crate::common::{access_token, enterprise, first_text};

/// Runs `testing/node/client.mjs` and parses its one JSON document.
fn ts_client(url: &str, token: Option<&str>, extra: &[&str]) -> Value {
    let mut cmd = Command::new(node());
    cmd.arg(workspace_root().join("testing/node/client.mjs"))
        .arg(url)
        .env("CANOPY_NODE_TOOLS", node_tools())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(t) = token {
        cmd.args(["--token", t]);
    }
    cmd.args(extra);
    let out = run_bounded(cmd);
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "client.mjs printed no JSON ({e}); stdout: {stdout}\nstderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `Command::output` with a failure deadline (a hung client fails the test instead of hanging it).
fn run_bounded(cmd: Command) -> Output {
    let (tx, rx) = std::sync::mpsc::channel();
    let mut cmd = cmd;
    let child = cmd.spawn().expect("cannot spawn node");
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(CLI_DEADLINE) {
        Ok(out) => out.expect("node client failed to run"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("client.mjs did not finish within {CLI_DEADLINE:?}");
        }
    }
}

fn assert_ok(report: &Value) {
    assert_eq!(report["ok"], true, "TS client failed: {report}");
}

#[test]
fn typescript_sdk_client_through_enterprise_data_plane() {
    let (cp, admin) = enterprise();
    let dp = DataPlane::start(&cp);
    let upstream = FixtureServer::http();
    admin.ok(&["register", "--name", "fx", "--url", &upstream.url()]);
    let client = admin.json(&["create", "mcp-client", "ts-app", "--allow", "fx"]);
    let token = access_token(&client);
    let scoped = admin.json(&["create", "mcp-client", "ts-narrow", "--allow", "fx__echo"]);
    let narrow = access_token(&scoped);
    assert!(dp.wait_ready(START_DEADLINE), "{}", dp.logs());
    let url = dp.mcp_url();

    // List + call + an unknown tool (JSON-RPC -32602, surfaced by the SDK as an McpError).
    let r = ts_client(
        &url,
        Some(&token),
        &[
            "--call",
            "fx__add",
            "--args",
            r#"{"a":2,"b":3}"#,
            "--bad-call",
            "fx__no_such_tool",
        ],
    );
    assert_ok(&r);
    let tools: Vec<&str> = r["tools"]
        .as_array()
        .expect("tools")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        tools.contains(&"fx__echo") && tools.contains(&"fx__add"),
        "{r}"
    );
    assert_eq!(first_text(&r["call"]), "5", "{r}");
    assert_eq!(r["bad_call"]["code"], -32602, "{r}");

    // A tool error is a result with isError, not a protocol error.
    let r = ts_client(&url, Some(&token), &["--call", "fx__fail"]);
    assert_ok(&r);
    assert_eq!(r["call"]["isError"], true, "{r}");

    // Progress notifications reach the SDK's onprogress callback through the gateway.
    let r = ts_client(
        &url,
        Some(&token),
        &[
            "--call",
            "fx__progress",
            "--args",
            r#"{"steps":3}"#,
            "--progress",
        ],
    );
    assert_ok(&r);
    assert_eq!(r["progress"], 3, "{r}");

    // Scope: a client allowed one tool sees only it; another tool is as unknown as a missing one.
    let r = ts_client(&url, Some(&narrow), &["--bad-call", "fx__add"]);
    assert_ok(&r);
    assert_eq!(r["tools"], json!(["fx__echo"]), "{r}");
    assert_eq!(r["bad_call"]["code"], -32602, "{r}");

    // No token / a wrong token: the SDK's connect fails on the 401.
    for t in [None, Some("canopy_not_a_real_token_0000000000")] {
        let r = ts_client(&url, t, &[]);
        assert_eq!(r["ok"], false, "{r}");
        assert_eq!(r["error"]["code"], 401, "expected an HTTP 401 error: {r}");
    }
}

/// `@modelcontextprotocol/server-everything` over HTTP (`streamableHttp` or `sse`) on a free
/// loopback port. The package binds its own way; we only ever connect to 127.0.0.1.
pub(crate) fn start_everything(transport: &str) -> (ChildProcess, SocketAddr) {
    let port = free_port();
    let mut cmd = Command::new(node());
    cmd.arg(everything_js())
        .arg(transport)
        .env("PORT", port.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut process = ChildProcess::spawn(&format!("server-everything {transport}"), cmd);
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    assert!(
        wait_for_port(addr, START_DEADLINE, || process.is_running()),
        "server-everything {transport} did not listen on {addr}"
    );
    (process, addr)
}

fn everything_js() -> PathBuf {
    node_tools().join("node_modules/@modelcontextprotocol/server-everything/dist/index.js")
}

/// The calls compared between direct and proxied: text, a sum, an image, structured content, a
/// validation failure (`isError`), and a progress-reporting tool.
fn everything_calls() -> Vec<(&'static str, Value, bool)> {
    vec![
        ("echo", json!({"message": "hello through canopy"}), false),
        ("get-sum", json!({"a": 2, "b": 40}), false),
        ("get-tiny-image", json!({}), false),
        (
            "get-structured-content",
            json!({"location": "New York"}),
            false,
        ),
        ("get-sum", json!({"a": "not a number", "b": 1}), false),
        (
            "trigger-long-running-operation",
            json!({"duration": 1, "steps": 2}),
            true,
        ),
    ]
}

fn call(url: &str, tool: &str, args: &Value, progress: bool) -> Value {
    let args = args.to_string();
    let mut extra = vec!["--call", tool, "--args", &args];
    if progress {
        extra.push("--progress");
    }
    let r = ts_client(url, None, &extra);
    assert_ok(&r);
    r
}

#[test]
fn server_everything_over_stdio_http_and_sse() {
    let (_http, http_addr) = start_everything("streamableHttp");
    let (_sse, sse_addr) = start_everything("sse");
    let direct = format!("http://{http_addr}/mcp");

    let cp = ControlPlane::start_development();
    let dp = DataPlane::start(&cp);
    let cli = Cli::new(&cp);
    cli.ok(&["register", "--name", "ev-http", "--url", &direct]);
    let sse_conf = cli.write_file(
        "ev-sse.json",
        &json!({"name": "ev-sse", "transport": "sse", "url": format!("http://{sse_addr}/sse")})
            .to_string(),
    );
    cli.ok(&["register", "-c", &sse_conf.to_string_lossy()]);
    let stdio_conf = cli.write_file(
        "ev-stdio.json",
        &json!({
            "name": "ev-stdio", "transport": "stdio",
            "command": node(), "args": [everything_js(), "stdio"]
        })
        .to_string(),
    );
    cli.ok(&["register", "-c", &stdio_conf.to_string_lossy()]);
    assert!(dp.wait_ready(START_DEADLINE), "{}", dp.logs());

    // The tool names the everything server really has (checked once, directly).
    let listed = ts_client(&direct, None, &[]);
    assert_ok(&listed);
    for (tool, _, _) in everything_calls() {
        assert!(
            listed["tools"]
                .as_array()
                .is_some_and(|t| t.iter().any(|n| n == tool)),
            "server-everything has no tool {tool}: {listed}"
        );
    }

    for (tool, args, progress) in everything_calls() {
        let want = call(&direct, tool, &args, progress);
        for server in ["ev-http", "ev-sse", "ev-stdio"] {
            let url = format!("{}/servers/{server}/mcp", dp.url());
            let got = call(&url, tool, &args, progress);
            assert_eq!(
                got["call"], want["call"],
                "{server} {tool}: result differs from calling server-everything directly"
            );
            if progress {
                assert!(
                    got["progress"].as_u64().unwrap_or(0) >= 1,
                    "{server} {tool}: no progress notification arrived: {got}"
                );
            }
        }
        match tool {
            "get-tiny-image" => assert!(
                want["call"]["content"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|b| b["type"] == "image")),
                "{want}"
            ),
            "get-structured-content" => {
                assert!(want["call"]["structuredContent"].is_object(), "{want}")
            }
            "get-sum" if args["a"].is_string() => {
                assert_eq!(want["call"]["isError"], true, "{want}")
            }
            _ => {}
        }
    }

    // The aggregate endpoint names them `server__tool`.
    let agg = ts_client(
        &dp.mcp_url(),
        None,
        &["--call", "ev-stdio__echo", "--args", r#"{"message":"x"}"#],
    );
    assert_ok(&agg);
    assert_eq!(first_text(&agg["call"]), "Echo: x", "{agg}");
}
