//! Issue 5, point 3: real upstreams behind a real data plane, registered through the `canopy` CLI.
//!
//! - the official Python SDK server (`testing/python/server.py`) in stateless and in stateful
//!   streamable-HTTP mode, called by a handshake-era client (the Python SDK in `legacy` mode) and
//!   by 2026-07-28 clients (raw HTTP and the Python SDK): listing, calling, `isError`, errors;
//! - an upstream that speaks ONLY 2026-07-28 (`testing/python/modern_only_server.py`: no
//!   `initialize`, strict `_meta` and headers): registration (discovery) and calls through the data
//!   plane for both eras of client, with the fixture reporting the headers and `_meta` it saw;
//! - byte-for-byte relaying of images, audio, embedded resources, resource links, annotations,
//!   structured content and `isError` results from `@modelcontextprotocol/server-everything` and
//!   `canopy-conformance-server`: the raw `result` text through `/servers/<name>/mcp` equals the
//!   upstream's own (handshake-era client), or is the upstream's with only the 2026-07-28 stamp
//!   (`resultType`, serverInfo `_meta`) put in front (modern client).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::{Command, Stdio};

use canopy_e2e::{
    python_client, venv_python, workspace_root, ChildProcess, Cli, ControlPlane, DataPlane,
    PyTransport, PythonServer,
};
use serde_json::value::RawValue;
use serde_json::{json, Value};

use crate::common::{access_token, enterprise, first_text, names};
use crate::conformance::interop::start_everything;
use crate::conformance::{read_listening_line, start_fixture};
use crate::dataplane_support::{
    modern_rpc, post, post_legacy, post_modern, rpc, tool_names, wait_for_tool, Reply, MODERN,
    SYNC_DEADLINE,
};

const HANDSHAKE: &str = "2025-11-25";
const SERVER_INFO_META: &str = "io.modelcontextprotocol/serverInfo";

// ---------------------------------------------------------------------------------------------
// Raw JSON-RPC plumbing
// ---------------------------------------------------------------------------------------------

/// The JSON-RPC response with `id` from a reply: the body itself (JSON), or the matching
/// message of an SSE stream (`data:` lines joined, as the SSE format says).
fn message_text(reply: &Reply, id: u64) -> String {
    assert_eq!(reply.status, 200, "{reply}");
    let sse = reply
        .header("content-type")
        .is_some_and(|c| c.starts_with("text/event-stream"));
    if !sse {
        return reply.text.clone();
    }
    let text = reply.text.replace("\r\n", "\n");
    for event in text.split("\n\n") {
        let data: Vec<&str> = event
            .lines()
            .filter_map(|l| l.strip_prefix("data:"))
            .map(|d| d.strip_prefix(' ').unwrap_or(d))
            .collect();
        let data = data.join("\n");
        let Ok(v) = serde_json::from_str::<Value>(&data) else {
            continue;
        };
        if v["id"] == id && (v.get("result").is_some() || v.get("error").is_some()) {
            return data;
        }
    }
    panic!("no response with id {id} in the event stream: {reply}");
}

/// The exact text of the `result` member of a JSON-RPC response.
fn raw_result(message: &str) -> String {
    let members: BTreeMap<String, Box<RawValue>> = serde_json::from_str(message)
        .unwrap_or_else(|e| panic!("response is not a JSON object ({e}): {message}"));
    members
        .get("result")
        .unwrap_or_else(|| panic!("expected a result, got: {message}"))
        .get()
        .to_owned()
}

/// A handshake-era session straight to an upstream (no gateway): `initialize`, the session id
/// if the server issues one, `notifications/initialized`, then requests.
struct DirectSession {
    url: String,
    session: Option<String>,
    next_id: u64,
}

impl DirectSession {
    fn open(url: &str) -> Self {
        let init = post(
            url,
            None,
            &[],
            &rpc(
                1,
                "initialize",
                json!({
                    "protocolVersion": HANDSHAKE,
                    "capabilities": {},
                    "clientInfo": {"name": "canopy-e2e-direct", "version": "0"},
                }),
            ),
        );
        let msg: Value = serde_json::from_str(&message_text(&init, 1)).expect("initialize JSON");
        assert_eq!(msg["result"]["protocolVersion"], HANDSHAKE, "{msg}");
        let session = init.header("mcp-session-id").map(str::to_owned);
        let s = Self {
            url: url.to_owned(),
            session,
            next_id: 2,
        };
        let note = json!({"jsonrpc": "2.0", "method": "notifications/initialized"});
        let r = post(url, None, &s.headers(), &note);
        assert!(r.status == 202 || r.status == 200, "initialized: {r}");
        s
    }

    fn headers(&self) -> Vec<(&str, &str)> {
        let mut h = vec![("MCP-Protocol-Version", HANDSHAKE)];
        if let Some(s) = &self.session {
            h.push(("Mcp-Session-Id", s));
        }
        h
    }

    /// The raw `result` of `tools/call`.
    fn call(&mut self, tool: &str, args: &Value) -> String {
        let id = self.next_id;
        self.next_id += 1;
        let body = rpc(id, "tools/call", json!({"name": tool, "arguments": args}));
        let r = post(&self.url, None, &self.headers(), &body);
        raw_result(&message_text(&r, id))
    }
}

/// The raw `result` of `tools/call` through the gateway at `url`, by a handshake-era client.
fn gateway_call_legacy(url: &str, tool: &str, args: &Value) -> String {
    let r = post_legacy(
        url,
        None,
        7,
        "tools/call",
        json!({"name": tool, "arguments": args}),
    );
    raw_result(&message_text(&r, 7))
}

/// The raw `result` of `tools/call` through the gateway at `url`, by a 2026-07-28 client.
fn gateway_call_modern(url: &str, tool: &str, args: &Value) -> String {
    let r = post_modern(
        url,
        None,
        8,
        "tools/call",
        json!({"name": tool, "arguments": args}),
    );
    raw_result(&message_text(&r, 8))
}

/// Calls the upstream directly, then through the gateway, then directly again, until the two
/// direct answers agree (some tools embed a wall-clock second); returns (direct, proxied).
/// Bounded: a tool that never answers the same twice in a row fails the test.
fn sandwich(
    label: &str,
    mut direct: impl FnMut() -> String,
    mut proxied: impl FnMut() -> String,
) -> (String, String) {
    for _ in 0..5 {
        let before = direct();
        let through = proxied();
        let after = direct();
        if before == after {
            return (before, through);
        }
    }
    panic!("{label}: the upstream never answered the same twice in a row");
}

/// A 2026-07-28 client's result must be the upstream's with only `resultType` and the
/// gateway's serverInfo `_meta` added — and, when the upstream set neither, those in front of the
/// upstream's members, which follow byte for byte.
fn assert_modern_stamp(label: &str, upstream: &str, got: &str) {
    let want: Value = serde_json::from_str(upstream).expect("upstream result JSON");
    let mut have: Value = serde_json::from_str(got).expect("gateway result JSON");
    let obj = have
        .as_object_mut()
        .unwrap_or_else(|| panic!("{label}: result is not an object: {got}"));
    let want_obj = want.as_object().expect("upstream result is an object");
    match want_obj.get("resultType") {
        Some(rt) => assert_eq!(obj.get("resultType"), Some(rt), "{label}: {got}"),
        None => assert_eq!(
            obj.remove("resultType"),
            Some(json!("complete")),
            "{label}: {got}"
        ),
    }
    let meta = obj
        .get_mut("_meta")
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("{label}: no _meta stamp: {got}"));
    let info = meta
        .remove(SERVER_INFO_META)
        .unwrap_or_else(|| panic!("{label}: no serverInfo in _meta: {got}"));
    assert!(info["name"].is_string(), "{label}: {got}");
    let meta_empty = meta.is_empty();
    let mut want = want.clone();
    match want.get_mut("_meta").and_then(Value::as_object_mut) {
        Some(m) => {
            m.remove(SERVER_INFO_META);
        }
        None if meta_empty => {
            obj.remove("_meta");
        }
        None => {}
    }
    assert_eq!(have, want, "{label}: more than the stamp changed");

    if want_obj.get("resultType").is_none() && want_obj.get("_meta").is_none() {
        let tail = upstream
            .strip_prefix('{')
            .expect("upstream result starts with `{`");
        assert!(
            got.starts_with(
                r#"{"resultType":"complete","_meta":{"io.modelcontextprotocol/serverInfo":"#
            ) && got.ends_with(tail),
            "{label}: the upstream's members are not relayed byte for byte after the stamp:\n\
             upstream: {upstream}\ngateway:  {got}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// `testing/python/modern_only_server.py` on a free loopback port.
fn start_modern_only() -> (ChildProcess, SocketAddr) {
    let mut cmd = Command::new(venv_python());
    cmd.arg(workspace_root().join("testing/python/modern_only_server.py"))
        .args(["--port", "0"])
        .env("PYTHONUNBUFFERED", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut process = ChildProcess::spawn("modern_only_server.py", cmd);
    let addr = read_listening_line(&mut process);
    (process, addr)
}

/// A development-mode control plane and data plane.
fn dev_gateway() -> (ControlPlane, DataPlane, Cli) {
    let cp = ControlPlane::start_development();
    let dp = DataPlane::start(&cp);
    let cli = Cli::new(&cp);
    (cp, dp, cli)
}

// ---------------------------------------------------------------------------------------------
// The official Python SDK server, stateless and stateful
// ---------------------------------------------------------------------------------------------

#[test]
fn python_sdk_server_stateless_and_stateful() {
    let stateless = PythonServer::start_named(
        PyTransport::StreamableHttp { stateless: true },
        "py-stateless",
    );
    let stateful = PythonServer::start_named(
        PyTransport::StreamableHttp { stateless: false },
        "py-stateful",
    );
    let (cp, admin) = enterprise();
    let dp = DataPlane::start(&cp);
    admin.ok(&["register", "--name", "pyless", "--url", &stateless.url()]);
    admin.ok(&["register", "--name", "pyfull", "--url", &stateful.url()]);
    let created = admin.json(&["create", "mcp-client", "py-app", "--allow", "pyless,pyfull"]);
    let token = access_token(&created);
    assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
    let mcp = dp.mcp_url();
    wait_for_tool(&mcp, Some(&token), "pyfull__add");
    wait_for_tool(&mcp, Some(&token), "pyless__add");

    for server in ["pyless", "pyfull"] {
        // Discovery through the CLI found the SDK server's tools and prompt.
        let mut tools = names(&admin.json(&["list", "tools", "--server", server]));
        tools.sort();
        assert_eq!(
            tools,
            [format!("{server}__add"), format!("{server}__echo")],
            "{server}"
        );
        let prompts = names(&admin.json(&["list", "prompts", "--server", server]));
        assert_eq!(prompts, [format!("{server}__greeting")], "{server}");

        let add = format!("{server}__add");
        let echo = format!("{server}__echo");

        // Handshake-era client: the official Python SDK forced to `initialize`.
        let r = python_client(
            &mcp,
            Some(&token),
            "legacy",
            &["--call", &add, "--args", r#"{"a":2,"b":40}"#],
        );
        assert_eq!(r["ok"], true, "{server}: {r}");
        assert_eq!(r["protocol_version"], HANDSHAKE, "{server}: {r}");
        let listed: Vec<&str> = r["tools"]
            .as_array()
            .expect("tools")
            .iter()
            .filter_map(|t| t["name"].as_str())
            .collect();
        assert!(
            listed.contains(&add.as_str()) && listed.contains(&echo.as_str()),
            "{r}"
        );
        assert_eq!(first_text(&r["call"]), "42", "{server}: {r}");
        assert_ne!(r["call"]["isError"], true, "{server}: {r}");

        // The SDK server's argument validation failure is a tool result with isError.
        let r = python_client(
            &mcp,
            Some(&token),
            "legacy",
            &[
                "--no-list",
                "--call",
                &add,
                "--args",
                r#"{"a":"not a number","b":1}"#,
            ],
        );
        assert_eq!(r["ok"], true, "{server}: {r}");
        assert_eq!(r["call"]["isError"], true, "{server}: {r}");

        // An unknown tool is a JSON-RPC error, -32602, the same as for a tool out of scope.
        let missing = format!("{server}__no_such_tool");
        let r = python_client(
            &mcp,
            Some(&token),
            "legacy",
            &["--no-list", "--call", &missing],
        );
        assert_eq!(r["ok"], false, "{server}: {r}");
        assert_eq!(r["error"]["code"], -32602, "{server}: {r}");

        // The prompt, through the same client.
        let r = python_client(
            &mcp,
            Some(&token),
            "legacy",
            &[
                "--no-list",
                "--prompt",
                &format!("{server}__greeting"),
                "--prompt-args",
                r#"{"name":"Ada"}"#,
            ],
        );
        assert_eq!(r["ok"], true, "{server}: {r}");
        assert!(
            r["prompt"].to_string().contains("Hello, Ada!"),
            "{server}: {r}"
        );

        // The Python SDK as a 2026-07-28 client.
        let r = python_client(
            &mcp,
            Some(&token),
            MODERN,
            &["--call", &echo, "--args", r#"{"message":"modern sdk"}"#],
        );
        assert_eq!(r["ok"], true, "{server}: {r}");
        assert_eq!(r["protocol_version"], MODERN, "{server}: {r}");
        assert_eq!(first_text(&r["call"]), "modern sdk", "{server}: {r}");

        // A raw 2026-07-28 client: list, call, isError, unknown tool.
        let list = post_modern(&mcp, Some(&token), 1, "tools/list", json!({}));
        let listed = list.result();
        assert_eq!(listed["resultType"], "complete", "{list}");
        assert_eq!(listed["cacheScope"], "private", "{list}");
        assert!(tool_names(&listed).contains(&add), "{list}");
        let r = post_modern(
            &mcp,
            Some(&token),
            2,
            "tools/call",
            json!({"name": echo, "arguments": {"message": "raw modern"}}),
        );
        let result = r.result();
        assert_eq!(first_text(&result), "raw modern", "{r}");
        assert_eq!(result["resultType"], "complete", "{r}");
        assert!(result["_meta"][SERVER_INFO_META]["name"].is_string(), "{r}");
        let r = post_modern(
            &mcp,
            Some(&token),
            3,
            "tools/call",
            json!({"name": add, "arguments": {"a": "x", "b": 1}}),
        );
        assert_eq!(r.status, 200, "{r}");
        assert_eq!(r.result()["isError"], true, "{r}");
        let r = post_modern(
            &mcp,
            Some(&token),
            4,
            "tools/call",
            json!({"name": missing}),
        );
        assert_eq!(r.error().0, -32602, "{r}");

        // The per-server endpoint, unprefixed names, both eras.
        let url = format!("{}/servers/{server}/mcp", dp.url());
        let r = python_client(
            &url,
            Some(&token),
            "legacy",
            &["--call", "add", "--args", r#"{"a":1,"b":1}"#],
        );
        assert_eq!(r["ok"], true, "{server}: {r}");
        assert_eq!(first_text(&r["call"]), "2", "{server}: {r}");
        let r = post_modern(
            &url,
            Some(&token),
            5,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "per server"}}),
        );
        assert_eq!(first_text(&r.result()), "per server", "{r}");
    }
    assert!(
        !stateful.stderr_log().contains("Traceback"),
        "stateful SDK server logged an exception:\n{}",
        stateful.stderr_log()
    );
}

// ---------------------------------------------------------------------------------------------
// An upstream that speaks only 2026-07-28
// ---------------------------------------------------------------------------------------------

/// The fixture's `stats` (requests per method, rejections), called through the gateway.
fn fixture_stats(mcp: &str, token: &str) -> Value {
    let r = post_legacy(
        mcp,
        Some(token),
        90,
        "tools/call",
        json!({"name": "mo__stats"}),
    );
    r.result()["structuredContent"].clone()
}

/// What the fixture's `seen` tool reports must be a well-formed 2026-07-28 request for `seen`,
/// carrying the registered credential.
fn assert_modern_request(seen: &Value, upstream_secret: &str, client_token: &str) {
    assert_eq!(seen["mcp-protocol-version"], MODERN, "{seen}");
    assert_eq!(seen["mcp-method"], "tools/call", "{seen}");
    assert_eq!(seen["mcp-name"], "seen", "{seen}");
    assert_eq!(
        seen["meta"]["io.modelcontextprotocol/protocolVersion"], MODERN,
        "{seen}"
    );
    assert!(
        seen["meta"]["io.modelcontextprotocol/clientCapabilities"].is_object(),
        "{seen}"
    );
    assert_eq!(
        seen["authorization"],
        format!("Bearer {upstream_secret}"),
        "{seen}"
    );
    assert!(
        !seen.to_string().contains(client_token),
        "client token leaked: {seen}"
    );
}

#[test]
fn modern_only_upstream_for_both_client_eras() {
    let (_fixture, addr) = start_modern_only();
    let direct = format!("http://{addr}/mcp");
    let upstream_secret = "modern-only-upstream-secret-0123";
    let (cp, admin) = enterprise();
    let dp = DataPlane::start(&cp);

    // Registration = discovery over 2026-07-28 only (the fixture refuses `initialize`).
    admin.ok(&[
        "register",
        "--name",
        "mo",
        "--url",
        &direct,
        "--bearer-token",
        upstream_secret,
    ]);
    let mut tools = names(&admin.json(&["list", "tools", "--server", "mo"]));
    tools.sort();
    assert_eq!(tools, ["mo__echo", "mo__fail", "mo__seen", "mo__stats"]);
    assert_eq!(
        names(&admin.json(&["list", "prompts", "--server", "mo"])),
        ["mo__greeting"]
    );
    let created = admin.json(&["create", "mcp-client", "mo-app", "--allow", "mo"]);
    let token = access_token(&created);
    assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
    let mcp = dp.mcp_url();
    wait_for_tool(&mcp, Some(&token), "mo__seen");

    // Handshake-era client (the Python SDK in legacy mode) through the aggregate endpoint.
    let r = python_client(&mcp, Some(&token), "legacy", &["--call", "mo__seen"]);
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["protocol_version"], HANDSHAKE, "{r}");
    assert_modern_request(&r["call"]["structuredContent"], upstream_secret, &token);
    let r = python_client(
        &mcp,
        Some(&token),
        "legacy",
        &[
            "--no-list",
            "--call",
            "mo__echo",
            "--args",
            r#"{"message":"old client"}"#,
        ],
    );
    assert_eq!(first_text(&r["call"]), "old client", "{r}");
    let r = python_client(
        &mcp,
        Some(&token),
        "legacy",
        &["--no-list", "--call", "mo__fail"],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["call"]["isError"], true, "{r}");
    let r = python_client(
        &mcp,
        Some(&token),
        "legacy",
        &["--no-list", "--call", "mo__nope"],
    );
    assert_eq!(r["error"]["code"], -32602, "{r}");
    let r = python_client(
        &mcp,
        Some(&token),
        "legacy",
        &[
            "--no-list",
            "--prompt",
            "mo__greeting",
            "--prompt-args",
            r#"{"name":"Ada"}"#,
        ],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert!(r["prompt"].to_string().contains("Hello, Ada!"), "{r}");

    // Raw handshake-era client on the per-server endpoint.
    let one = format!("{}/servers/mo/mcp", dp.url());
    let r = post_legacy(&one, Some(&token), 1, "tools/call", json!({"name": "seen"}));
    assert_modern_request(&r.result()["structuredContent"], upstream_secret, &token);

    // 2026-07-28 clients: raw HTTP (both endpoints) and the Python SDK.
    for (url, name) in [(&mcp, "mo__seen"), (&one, "seen")] {
        let r = post_modern(url, Some(&token), 2, "tools/call", json!({"name": name}));
        let result = r.result();
        assert_eq!(result["resultType"], "complete", "{r}");
        assert_modern_request(&result["structuredContent"], upstream_secret, &token);
        let r = post_modern(url, Some(&token), 3, "tools/list", json!({}));
        assert_eq!(r.result()["cacheScope"], "private", "{r}");
    }
    let r = post_modern(
        &mcp,
        Some(&token),
        4,
        "tools/call",
        json!({"name": "mo__fail"}),
    );
    assert_eq!(r.result()["isError"], true, "{r}");
    let r = post_modern(
        &mcp,
        Some(&token),
        5,
        "tools/call",
        json!({"name": "mo__nope"}),
    );
    assert_eq!((r.status, r.error().0), (200, -32602), "{r}");
    let r = python_client(
        &mcp,
        Some(&token),
        MODERN,
        &[
            "--call",
            "mo__echo",
            "--args",
            r#"{"message":"new client"}"#,
        ],
    );
    assert_eq!(r["ok"], true, "{r}");
    assert_eq!(r["protocol_version"], MODERN, "{r}");
    assert_eq!(first_text(&r["call"]), "new client", "{r}");

    // Byte for byte from a 2026-07-28 upstream: a handshake-era client gets its result
    // unchanged but for the serverInfo in `_meta`, which names the gateway as in the other era;
    // a modern client gets it with the gateway's serverInfo in `_meta` (the upstream's own
    // `resultType` kept).
    let args = json!({"message": "bytes \u{e9}\u{1f600} \"quoted\""});
    let direct_echo = || {
        let r = post_modern(
            &direct,
            None,
            6,
            "tools/call",
            json!({"name": "echo", "arguments": args}),
        );
        raw_result(&message_text(&r, 6))
    };
    let want = direct_echo();
    let r = post_legacy(
        &one,
        Some(&token),
        7,
        "tools/call",
        json!({"name": "echo", "arguments": args}),
    );
    let handshake = raw_result(&message_text(&r, 7));
    let info = |text: &str| {
        serde_json::from_str::<Value>(text).expect("result JSON")["_meta"][SERVER_INFO_META].clone()
    };
    assert_ne!(
        info(&want)["name"],
        "canopy",
        "the upstream names itself: {want}"
    );
    assert_eq!(
        info(&handshake)["name"],
        "canopy",
        "handshake-era client: {handshake}"
    );
    let mut expected: Value = serde_json::from_str(&want).expect("upstream result JSON");
    expected["_meta"][SERVER_INFO_META] = info(&handshake);
    assert_eq!(
        serde_json::from_str::<Value>(&handshake).expect("gateway result JSON"),
        expected,
        "handshake-era client: more than the serverInfo changed"
    );
    let r = post_modern(
        &one,
        Some(&token),
        8,
        "tools/call",
        json!({"name": "echo", "arguments": args}),
    );
    let modern = raw_result(&message_text(&r, 8));
    assert_modern_stamp("modern-only echo", &want, &modern);
    // Both eras name the same server in `_meta`: the gateway.
    assert_eq!(
        info(&handshake),
        info(&modern),
        "serverInfo differs between the eras"
    );

    // Everything the gateway (control plane and data plane) sent was a valid 2026-07-28
    // request: discovery included, nothing was ever rejected, no `initialize` was tried.
    let stats = fixture_stats(&mcp, &token);
    assert_eq!(stats["rejected"], json!({}), "{stats}");
    assert!(stats["methods"].get("initialize").is_none(), "{stats}");
    for method in [
        "server/discover",
        "tools/list",
        "prompts/list",
        "prompts/get",
    ] {
        assert!(
            stats["methods"][method].as_u64().unwrap_or(0) >= 1,
            "{method} never reached the fixture: {stats}"
        );
    }

    // The fixture really is modern-only and strict (so the above proves the modern path).
    let probe = |headers: &[(&str, &str)], body: Value| post(&direct, None, headers, &body);
    let r = probe(
        &[],
        rpc(
            1,
            "initialize",
            json!({"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "x", "version": "0"}}),
        ),
    );
    assert_eq!(
        (r.status, r.error().0),
        (400, -32602),
        "handshake initialize: {r}"
    );
    let hv = [
        ("MCP-Protocol-Version", MODERN),
        ("Mcp-Method", "initialize"),
    ];
    let r = probe(&hv, modern_rpc(1, "initialize", json!({})));
    assert_eq!(
        (r.status, r.error().0),
        (404, -32601),
        "enveloped initialize: {r}"
    );
    let r = probe(&[], modern_rpc(1, "tools/list", json!({})));
    assert_eq!((r.status, r.error().0), (400, -32020), "no headers: {r}");
    let r = probe(
        &[
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "echo"),
        ],
        modern_rpc(1, "tools/call", json!({"name": "seen"})),
    );
    assert_eq!(
        (r.status, r.error().0),
        (400, -32020),
        "Mcp-Name mismatch: {r}"
    );
    let mut old = modern_rpc(1, "tools/list", json!({}));
    old["params"]["_meta"]["io.modelcontextprotocol/protocolVersion"] = json!("2099-01-01");
    let r = probe(
        &[
            ("MCP-Protocol-Version", "2099-01-01"),
            ("Mcp-Method", "tools/list"),
        ],
        old,
    );
    assert_eq!(
        (r.status, r.error().0),
        (400, -32022),
        "unknown version: {r}"
    );
    assert_eq!(
        r.json()["error"]["data"]["supported"],
        json!([MODERN]),
        "{r}"
    );
    let r = python_client(&direct, None, "legacy", &[]);
    assert_eq!(
        r["ok"], false,
        "a handshake-era client must fail directly: {r}"
    );
}

// ---------------------------------------------------------------------------------------------
// Byte-for-byte content relaying
// ---------------------------------------------------------------------------------------------

/// Direct vs `/servers/<name>/mcp`, for one upstream and a list of calls. `check` sees the
/// parsed upstream result (to assert the content kind really is there).
fn assert_byte_for_byte(
    upstream_url: &str,
    servers_url: &str,
    calls: &[(&str, Value)],
    check: impl Fn(&str, &Value),
) {
    let mut direct = DirectSession::open(upstream_url);
    for (tool, args) in calls {
        let label = format!("{servers_url} {tool} {args}");
        let (want, got) = sandwich(
            &label,
            || direct.call(tool, args),
            || gateway_call_legacy(servers_url, tool, args),
        );
        assert_eq!(
            got, want,
            "{label}: a handshake-era client did not get the upstream's result byte for byte"
        );
        let parsed: Value = serde_json::from_str(&want).expect("result JSON");
        check(tool, &parsed);

        let (want, got) = sandwich(
            &label,
            || direct.call(tool, args),
            || gateway_call_modern(servers_url, tool, args),
        );
        assert_modern_stamp(&label, &want, &got);
    }
}

fn has_block(result: &Value, kind: &str) -> bool {
    result["content"]
        .as_array()
        .is_some_and(|c| c.iter().any(|b| b["type"] == kind))
}

#[test]
fn content_arrives_byte_for_byte() {
    let (_everything, ev_addr) = start_everything("streamableHttp");
    let (_conformance, cf_addr) = start_fixture(Stdio::null());
    let ev_url = format!("http://{ev_addr}/mcp");
    let cf_url = format!("http://{cf_addr}/mcp");
    let (_cp, dp, cli) = dev_gateway();
    cli.ok(&["register", "--name", "ev", "--url", &ev_url]);
    cli.ok(&["register", "--name", "cf", "--url", &cf_url]);
    assert!(dp.wait_ready(SYNC_DEADLINE), "{}", dp.logs());
    wait_for_tool(&dp.mcp_url(), None, "ev__get-tiny-image");
    wait_for_tool(&dp.mcp_url(), None, "cf__test_audio_content");

    // server-everything: the tool names it really has.
    let listed = post_legacy(
        &format!("{}/servers/ev/mcp", dp.url()),
        None,
        1,
        "tools/list",
        json!({}),
    );
    let ev_tools = tool_names(&listed.result());
    let ev_calls = [
        (
            "echo",
            json!({"message": "bytes \u{e9}\u{1f600} \"quoted\""}),
        ),
        ("get-tiny-image", json!({})),
        (
            "get-annotated-message",
            json!({"messageType": "error", "includeImage": true}),
        ),
        (
            "get-resource-reference",
            json!({"resourceType": "Text", "resourceId": 2}),
        ),
        (
            "get-resource-reference",
            json!({"resourceType": "Blob", "resourceId": 3}),
        ),
        ("get-resource-links", json!({"count": 3})),
        ("get-structured-content", json!({"location": "Chicago"})),
        ("get-sum", json!({"a": "not a number", "b": 1})),
    ];
    for (tool, _) in &ev_calls {
        assert!(
            ev_tools.iter().any(|t| t == tool),
            "server-everything has no tool {tool}: {ev_tools:?}"
        );
    }
    assert_byte_for_byte(
        &ev_url,
        &format!("{}/servers/ev/mcp", dp.url()),
        &ev_calls,
        |tool, r| match tool {
            "get-tiny-image" => assert!(has_block(r, "image"), "{r}"),
            "get-annotated-message" => {
                assert!(has_block(r, "image"), "{r}");
                assert!(r["content"][0]["annotations"].is_object(), "{r}");
            }
            "get-resource-reference" => assert!(has_block(r, "resource"), "{r}"),
            "get-resource-links" => assert!(has_block(r, "resource_link"), "{r}"),
            "get-structured-content" => assert!(r["structuredContent"].is_object(), "{r}"),
            "get-sum" => assert_eq!(r["isError"], true, "{r}"),
            _ => {}
        },
    );

    // The conformance fixture: audio, and the suite's other content shapes.
    let cf_calls = [
        ("test_simple_text", json!({})),
        ("test_image_content", json!({})),
        ("test_audio_content", json!({})),
        ("test_embedded_resource", json!({})),
        ("test_multiple_content_types", json!({})),
        ("test_structured_content", json!({})),
        ("test_error_handling", json!({})),
    ];
    assert_byte_for_byte(
        &cf_url,
        &format!("{}/servers/cf/mcp", dp.url()),
        &cf_calls,
        |tool, r| match tool {
            "test_image_content" => assert!(has_block(r, "image"), "{r}"),
            "test_audio_content" => assert!(has_block(r, "audio"), "{r}"),
            "test_embedded_resource" => assert!(has_block(r, "resource"), "{r}"),
            "test_multiple_content_types" => {
                assert!(has_block(r, "image") && has_block(r, "resource"), "{r}")
            }
            "test_structured_content" => assert!(r["structuredContent"].is_object(), "{r}"),
            "test_error_handling" => assert_eq!(r["isError"], true, "{r}"),
            _ => {}
        },
    );

    // The aggregate endpoint relays the same bytes under the prefixed name.
    let mut direct = DirectSession::open(&cf_url);
    let want = direct.call("test_audio_content", &json!({}));
    let got = gateway_call_legacy(&dp.mcp_url(), "cf__test_audio_content", &json!({}));
    assert_eq!(got, want, "aggregate endpoint changed the audio result");
}
