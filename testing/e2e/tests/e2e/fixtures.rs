//! The test fixtures themselves, checked against each other (rmcp fixture ↔ Python SDK client,
//! Python SDK server ↔ Python SDK client, stdio by hand), so a failure elsewhere can be trusted
//! to be the gateway's and not the fixtures'.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use canopy_e2e::{python_client, FixtureOptions, FixtureServer, PyTransport, PythonServer};
use serde_json::{json, Value};

fn tool_names(doc: &Value) -> Vec<String> {
    doc["tools"]
        .as_array()
        .unwrap_or_else(|| panic!("no tools in {doc}"))
        .iter()
        .filter_map(|t| t["name"].as_str().map(str::to_owned))
        .collect()
}

fn call_text(doc: &Value) -> &str {
    doc["call"]["content"][0]["text"]
        .as_str()
        .unwrap_or_else(|| panic!("no call text in {doc}"))
}

#[test]
fn rmcp_fixture_speaks_both_eras_and_checks_bearer() {
    let token = "fixture-bearer-0123456789";
    let server = FixtureServer::http_with(FixtureOptions {
        require_bearer: Some(token.to_owned()),
        extra_tools: 3,
        name: Some("fixture-under-test".to_owned()),
        ..Default::default()
    });
    for (mode, version) in [("legacy", "2025-11-25"), ("auto", "2026-07-28")] {
        let doc = python_client(
            &server.url(),
            Some(token),
            mode,
            &[
                "--call",
                "auth_header",
                "--prompt",
                "greeting",
                "--prompt-args",
                r#"{"name":"Ada"}"#,
            ],
        );
        assert_eq!(doc["ok"], true, "{mode}: {doc}");
        assert_eq!(doc["protocol_version"], version, "{mode}: {doc}");
        assert_eq!(doc["server_info"]["name"], "fixture-under-test");
        let names = tool_names(&doc);
        for t in [
            "echo",
            "add",
            "slow",
            "fail",
            "progress",
            "auth_header",
            "tool_0",
            "tool_2",
        ] {
            assert!(names.iter().any(|n| n == t), "{t} missing: {names:?}");
        }
        assert_eq!(call_text(&doc), format!("Bearer {token}"));
        assert_eq!(
            doc["prompt"]["messages"][0]["content"]["text"],
            "Hello, Ada!"
        );
    }
    let denied = python_client(&server.url(), None, "legacy", &[]);
    assert_eq!(denied["ok"], false, "{denied}");
    assert!(
        denied["http_statuses"]
            .as_array()
            .is_some_and(|s| s.contains(&json!(401))),
        "expected a 401: {denied}"
    );
}

#[test]
fn rmcp_fixture_stateless_tools() {
    let server = FixtureServer::http_with(FixtureOptions {
        stateless: true,
        ..Default::default()
    });
    let url = server.url();
    let add = python_client(
        &url,
        None,
        "legacy",
        &["--no-list", "--call", "add", "--args", r#"{"a":2,"b":3}"#],
    );
    assert_eq!(call_text(&add), "5", "{add}");
    let fail = python_client(&url, None, "auto", &["--no-list", "--call", "fail"]);
    assert_eq!(fail["call"]["isError"], true, "{fail}");
    let slow = python_client(
        &url,
        None,
        "auto",
        &["--no-list", "--call", "slow", "--args", r#"{"ms":20}"#],
    );
    assert_eq!(call_text(&slow), "done", "{slow}");
    let progress = python_client(
        &url,
        None,
        "legacy",
        &[
            "--no-list",
            "--call",
            "progress",
            "--args",
            r#"{"steps":2}"#,
        ],
    );
    assert_eq!(call_text(&progress), "done", "{progress}");
    let echo = python_client(
        &url,
        None,
        "auto",
        &[
            "--no-list",
            "--call",
            "echo",
            "--args",
            r#"{"message":"hé"}"#,
        ],
    );
    assert_eq!(call_text(&echo), "hé", "{echo}");
}

#[test]
fn python_server_over_streamable_http_and_sse() {
    for transport in [
        PyTransport::StreamableHttp { stateless: false },
        PyTransport::StreamableHttp { stateless: true },
        PyTransport::Sse,
    ] {
        let server = PythonServer::start(transport);
        let client_transport = if transport == PyTransport::Sse {
            "sse"
        } else {
            "streamable-http"
        };
        for mode in ["legacy", "auto"] {
            let doc = python_client(
                &server.url(),
                None,
                mode,
                &[
                    "--transport",
                    client_transport,
                    "--call",
                    "add",
                    "--args",
                    r#"{"a":40,"b":2}"#,
                ],
            );
            assert_eq!(doc["ok"], true, "{transport:?} {mode}: {doc}");
            let mut names = tool_names(&doc);
            names.sort();
            assert_eq!(names, ["add", "echo"], "{transport:?} {mode}");
            assert_eq!(call_text(&doc), "42", "{transport:?} {mode}: {doc}");
        }
    }
}

/// Speak newline-delimited JSON-RPC to a stdio command: initialize, then one request.
fn stdio_roundtrip(command: &str, args: &[String], request: Value) -> Value {
    let mut child = Command::new(command)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("stdio fixture starts");
    let mut stdin = child.stdin.take().expect("stdin piped");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout piped"));
    let mut send = |v: Value| {
        writeln!(stdin, "{v}").expect("write to fixture");
        stdin.flush().expect("flush to fixture");
    };
    let mut read = || {
        let mut line = String::new();
        stdout.read_line(&mut line).expect("read from fixture");
        serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
    };
    send(
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {},
        "clientInfo": {"name": "stdio-test", "version": "1"}}}),
    );
    let init = read();
    assert_eq!(init["id"], 1, "{init}");
    send(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
    send(request);
    let reply = read();
    drop(stdin); // EOF: the server exits
    let _ = child.kill();
    let _ = child.wait();
    reply
}

#[test]
fn stdio_fixtures_answer_on_stdout_only() {
    let rmcp = FixtureServer::stdio_command(&FixtureOptions::default());
    let reply = stdio_roundtrip(
        &rmcp.command,
        &rmcp.args,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "auth_header", "arguments": {}}}),
    );
    assert_eq!(reply["result"]["content"][0]["text"], "none", "{reply}");

    let py = PythonServer::stdio_command();
    let reply = stdio_roundtrip(
        &py.command,
        &py.args,
        json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call",
               "params": {"name": "echo", "arguments": {"message": "over stdio"}}}),
    );
    assert_eq!(
        reply["result"]["content"][0]["text"], "over stdio",
        "{reply}"
    );
}
