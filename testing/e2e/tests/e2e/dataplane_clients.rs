//! The official Python SDK client (`testing/python/client.py`) in `legacy` and `auto`
//! (2026-07-28) mode, with a bearer token, through a real data plane to every upstream kind:
//! the rmcp fixture over streamable HTTP and stdio, the Python SDK server over streamable HTTP
//! and over SSE.

use canopy_e2e::{python_client, FixtureOptions, FixtureServer, PyTransport, PythonServer};
use serde_json::{json, Value};

use crate::common::{access_token, enterprise, first_text};
use crate::dataplane_support::{wait_for_tool, SYNC_DEADLINE};

fn sorted_names(doc: &Value, field: &str) -> Vec<String> {
    let mut names: Vec<String> = doc[field]
        .as_array()
        .unwrap_or_else(|| panic!("client.py gave no {field}: {doc}"))
        .iter()
        .map(|t| t["name"].as_str().expect("named item").to_owned())
        .collect();
    names.sort();
    names
}

fn assert_ok(doc: &Value, what: &str) {
    assert_eq!(doc["ok"], true, "{what}: client.py failed: {doc}");
}

/// The JSON-RPC error client.py reported: (code, message).
fn rpc_error(doc: &Value, what: &str) -> (i64, String) {
    assert_eq!(doc["ok"], false, "{what}: expected an error: {doc}");
    let code = doc["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("{what}: not a JSON-RPC error: {doc}"));
    let message = doc["error"]["message"].as_str().unwrap_or("").to_owned();
    (code, message)
}

#[test]
fn python_sdk_client_through_every_upstream_kind() {
    let (cp, admin) = enterprise();
    let rmcp = FixtureServer::http();
    let py_http = PythonServer::start(PyTransport::StreamableHttp { stateless: false });
    let py_sse = PythonServer::start(PyTransport::Sse);
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);
    let stdio = FixtureServer::stdio_command(&FixtureOptions::default());
    let conf = admin.write_file("stdio.json", &stdio.register_json("rstdio").to_string());
    admin.ok(&["register", "-c", conf.to_str().expect("utf-8 path")]);
    let conf = admin.write_file(
        "py.json",
        &json!({"name": "py", "transport": "streamable_http", "url": py_http.url()}).to_string(),
    );
    admin.ok(&["register", "-c", conf.to_str().expect("utf-8 path")]);
    let conf = admin.write_file(
        "pysse.json",
        &json!({"name": "pysse", "transport": "sse", "url": py_sse.url()}).to_string(),
    );
    admin.ok(&["register", "-c", conf.to_str().expect("utf-8 path")]);

    // Whole servers, single tools, and servers left out (rmcp's `add` etc. stay hidden).
    let created = admin.json(&[
        "create",
        "mcp-client",
        "sdk",
        "--allow",
        "rmcp__echo, rstdio, py, pysse__add",
    ]);
    let token = access_token(&created);
    let dp = canopy_e2e::DataPlane::start(&cp);
    assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
    let url = dp.mcp_url();
    wait_for_tool(&url, Some(&token), "pysse__add");

    let want_tools = {
        let mut v: Vec<String> = [
            "rmcp__echo",
            "rstdio__echo",
            "rstdio__add",
            "rstdio__slow",
            "rstdio__fail",
            "rstdio__progress",
            "rstdio__auth_header",
            "py__echo",
            "py__add",
            "pysse__add",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        v.sort();
        v
    };

    for mode in ["legacy", "auto"] {
        let doc = python_client(&url, Some(&token), mode, &[]);
        assert_ok(&doc, mode);
        let expect_version = if mode == "legacy" {
            "2025-11-25"
        } else {
            "2026-07-28"
        };
        assert_eq!(doc["protocol_version"], expect_version, "{mode}: {doc}");
        assert!(doc["server_info"]["name"].is_string(), "{mode}: {doc}");
        assert_eq!(sorted_names(&doc, "tools"), want_tools, "{mode}: {doc}");
        // Prompts of whole servers only.
        let mut want_prompts = vec!["py__greeting".to_owned(), "rstdio__greeting".to_owned()];
        want_prompts.sort();
        assert_eq!(sorted_names(&doc, "prompts"), want_prompts, "{mode}: {doc}");
        // Schemas come through.
        let add = doc["tools"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "py__add"))
            .expect("py__add listed");
        assert!(add["inputSchema"]["properties"]["a"].is_object(), "{add}");

        // Calls through every upstream kind.
        for (tool, args, want) in [
            (
                "rmcp__echo",
                r#"{"message": "via rmcp http"}"#,
                "via rmcp http",
            ),
            (
                "rstdio__echo",
                r#"{"message": "via rmcp stdio"}"#,
                "via rmcp stdio",
            ),
            ("rstdio__add", r#"{"a": 2, "b": 5}"#, "7"),
            (
                "py__echo",
                r#"{"message": "via python http"}"#,
                "via python http",
            ),
            ("py__add", r#"{"a": 19, "b": 23}"#, "42"),
            ("pysse__add", r#"{"a": 40, "b": 2}"#, "42"),
        ] {
            let doc = python_client(
                &url,
                Some(&token),
                mode,
                &["--no-list", "--call", tool, "--args", args],
            );
            assert_ok(&doc, &format!("{mode} {tool}"));
            assert_eq!(first_text(&doc["call"]), want, "{mode} {tool}: {doc}");
            assert_ne!(doc["call"]["isError"], true, "{mode} {tool}: {doc}");
        }
        // A tool error is a result with isError.
        let doc = python_client(
            &url,
            Some(&token),
            mode,
            &["--no-list", "--call", "rstdio__fail"],
        );
        assert_ok(&doc, mode);
        assert_eq!(doc["call"]["isError"], true, "{mode}: {doc}");
        // A prompt.
        let doc = python_client(
            &url,
            Some(&token),
            mode,
            &[
                "--no-list",
                "--prompt",
                "py__greeting",
                "--prompt-args",
                r#"{"name": "Grace"}"#,
            ],
        );
        assert_ok(&doc, mode);
        assert!(
            doc["prompt"].to_string().contains("Hello, Grace!"),
            "{mode}: {doc}"
        );

        // Out of scope (exists upstream) vs nonexistent: the same error.
        let hidden_tools = [
            ("rmcp__add", "rmcp__nothing"),
            ("pysse__echo", "pysse__nothing"),
        ];
        for (hidden, missing) in hidden_tools {
            let h = python_client(
                &url,
                Some(&token),
                mode,
                &[
                    "--no-list",
                    "--call",
                    hidden,
                    "--args",
                    r#"{"message": "x"}"#,
                ],
            );
            let m = python_client(
                &url,
                Some(&token),
                mode,
                &[
                    "--no-list",
                    "--call",
                    missing,
                    "--args",
                    r#"{"message": "x"}"#,
                ],
            );
            let (hc, hm) = rpc_error(&h, hidden);
            let (mc, mm) = rpc_error(&m, missing);
            assert_eq!(hc, mc, "{mode}: {h} vs {m}");
            assert_eq!(hc, -32602, "{mode}: {h}");
            assert_eq!(
                hm.replace(hidden, "X"),
                mm.replace(missing, "X"),
                "{mode}: out of scope must look unknown"
            );
        }

        // Invalid token → 401 (the SDK hides it; client.py records the HTTP statuses).
        let doc = python_client(&url, Some("not-a-valid-token-0123456789"), mode, &[]);
        assert_eq!(doc["ok"], false, "{mode}: {doc}");
        let statuses = doc["http_statuses"].as_array().expect("statuses");
        assert!(
            statuses.iter().any(|s| s == 401) || doc["error"]["http_status"] == 401,
            "{mode}: {doc}"
        );
        // No token at all → 401 as well.
        let doc = python_client(&url, None, mode, &[]);
        assert_eq!(doc["ok"], false, "{mode}: {doc}");
        let statuses = doc["http_statuses"].as_array().expect("statuses");
        assert!(
            statuses.iter().any(|s| s == 401) || doc["error"]["http_status"] == 401,
            "{mode}: {doc}"
        );
    }

    // The SDK client on the per-server endpoint sees original names.
    for mode in ["legacy", "auto"] {
        let doc = python_client(
            &format!("{}/servers/py/mcp", dp.url()),
            Some(&token),
            mode,
            &["--call", "add", "--args", r#"{"a": 1, "b": 1}"#],
        );
        assert_ok(&doc, mode);
        assert_eq!(
            sorted_names(&doc, "tools"),
            ["add", "echo"],
            "{mode}: {doc}"
        );
        assert_eq!(first_text(&doc["call"]), "2", "{mode}: {doc}");
    }
}

/// Development mode: no token, every server visible, through the SDK client in both modes.
#[test]
fn python_sdk_client_in_development_mode() {
    let cp = canopy_e2e::ControlPlane::start_development();
    let admin = canopy_e2e::Cli::new(&cp);
    let rmcp = FixtureServer::http_with(FixtureOptions {
        stateless: true,
        ..Default::default()
    });
    admin.ok(&["register", "--name", "rmcp", "--url", &rmcp.url()]);
    let dp = canopy_e2e::DataPlane::start(&cp);
    let url = dp.mcp_url();
    wait_for_tool(&url, None, "rmcp__add");
    for mode in ["legacy", "auto"] {
        let doc = python_client(
            &url,
            None,
            mode,
            &["--call", "rmcp__add", "--args", r#"{"a": 3, "b": 4}"#],
        );
        assert_ok(&doc, mode);
        let names = sorted_names(&doc, "tools");
        for n in ["rmcp__add", "rmcp__echo", "rmcp__auth_header"] {
            assert!(names.contains(&n.to_owned()), "{mode}: {n} missing: {doc}");
        }
        assert_eq!(first_text(&doc["call"]), "7", "{mode}: {doc}");
    }
}
