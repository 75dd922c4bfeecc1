//! Raw HTTP against a real `canopy-data-plane` synced from a real control plane: every header,
//! `_meta` and status rule of mcp-wire.md for both protocol eras, auth and scope, the per-server
//! endpoint, pass-through of fields outside the MCP schema, and the ops endpoints.

use base64::Engine;
use serde_json::{json, Value};

use crate::common::{access_token, first_text};
use crate::dataplane_support::{
    eventually, metric, post, post_legacy, post_modern, raw_unknown_in_result, raw_unknown_in_tool,
    rpc, send, tool_names, wait_for_tool, Gateway, RawUpstream, MODERN, SYNC_DEADLINE,
};

const JSON_AND_SSE: &str = "application/json, text/event-stream";

/// Handshake era: initialize (echo / fallback), notifications and responses → 202, ping → {},
/// GET/DELETE → 405, body limit, media types, malformed JSON, batches, bad version header.
#[test]
fn handshake_era_rules() {
    let gw = Gateway::start("rmcp");
    let url = gw.mcp();
    let tok = gw.token();

    // initialize: a supported version is echoed, an unknown one gets the latest handshake version.
    for (asked, answered) in [
        ("2025-06-18", "2025-06-18"),
        ("2024-11-05", "2024-11-05"),
        ("2025-11-25", "2025-11-25"),
        ("1999-01-01", "2025-11-25"),
    ] {
        let r = post(
            &url,
            tok,
            &[],
            &rpc(
                1,
                "initialize",
                json!({"protocolVersion": asked, "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "0"}}),
            ),
        );
        assert_eq!(r.status, 200, "{r}");
        assert!(
            r.header("mcp-session-id").is_none(),
            "a stateless server issues no session id: {r}"
        );
        let result = r.result();
        assert_eq!(result["protocolVersion"], answered, "asked {asked}: {r}");
        assert!(result["serverInfo"]["name"].is_string(), "{r}");
        assert!(result["capabilities"]["tools"].is_object(), "{r}");
        assert_eq!(r.json()["id"], 1);
    }

    // Notifications and responses: 202, no body.
    for body in [
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
               "params": {"requestId": 7}}),
        json!({"jsonrpc": "2.0", "id": 9, "result": {}}),
    ] {
        let r = post(&url, tok, &[("MCP-Protocol-Version", "2025-11-25")], &body);
        assert_eq!(r.status, 202, "{body}: {r}");
        assert!(r.text.is_empty(), "202 must have no body: {r}");
    }

    // ping answers exactly {} (with and without the version header).
    let r = post_legacy(&url, tok, 5, "ping", json!({}));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.json(), json!({"jsonrpc": "2.0", "id": 5, "result": {}}));
    let r = post(
        &url,
        tok,
        &[],
        &json!({"jsonrpc": "2.0", "id": "p", "method": "ping"}),
    );
    assert_eq!(r.json()["result"], json!({}), "{r}");
    assert_eq!(r.json()["id"], "p", "string ids are echoed: {r}");

    // tools/list and tools/call in the handshake era: no modern fields added.
    let r = post_legacy(&url, tok, 2, "tools/list", json!({}));
    let result = r.result();
    assert!(result.get("resultType").is_none(), "{r}");
    assert!(result.get("ttlMs").is_none(), "{r}");
    assert!(
        tool_names(&result).contains(&"rmcp__echo".to_owned()),
        "{r}"
    );
    let r = post_legacy(
        &url,
        tok,
        3,
        "tools/call",
        json!({"name": "rmcp__add", "arguments": {"a": 20, "b": 22}}),
    );
    let result = r.result();
    assert_eq!(first_text(&result), "42", "{r}");
    // (The rmcp fixture speaks 2026-07-28 upstream, so its result may carry its own
    // `resultType`; that the gateway adds none for handshake clients is checked with the
    // handshake-era raw upstream in `unknown_fields_and_modern_upstreams`.)
    // The header absent entirely = 2025-03-26: still served.
    let r = post(
        &url,
        tok,
        &[],
        &rpc(
            4,
            "tools/call",
            json!({"name": "rmcp__echo", "arguments": {"message": "x"}}),
        ),
    );
    assert_eq!(first_text(&r.result()), "x", "{r}");

    // An unknown method in the handshake era: -32601 with HTTP 200.
    let r = post_legacy(&url, tok, 6, "resources/list", json!({}));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.error().0, -32601, "{r}");

    // GET / DELETE /mcp → 405.
    for method in ["GET", "DELETE"] {
        let auth = format!("Bearer {}", gw.token);
        let r = send(
            method,
            &url,
            &[("Accept", "text/event-stream"), ("Authorization", &auth)],
            Vec::new(),
        );
        assert_eq!(r.status, 405, "{method} /mcp: {r}");
        assert_eq!(r.header("allow"), Some("POST"), "{method} /mcp: {r}");
    }

    // Body limit: more than 4 MiB → 413. The server answers before reading such a body and
    // closes, so a client still writing may see a reset instead of the answer; a raw
    // connection that declares the length and waits for the answer is deterministic.
    let status = post_declaring_length(gw.dp.addr(), &gw.token, 4 * 1024 * 1024 + 1);
    assert_eq!(status, 413);
    // Exactly at the limit the body is read (and, being padding, is no JSON-RPC: 400).
    let status = post_declaring_length(gw.dp.addr(), &gw.token, 4 * 1024 * 1024);
    assert_eq!(status, 400);
    // Just under the limit is served.
    let pad = "b".repeat(3 * 1024 * 1024);
    let r = post(
        &url,
        tok,
        &[],
        &rpc(
            8,
            "tools/call",
            json!({"name": "rmcp__echo", "arguments": {"message": pad}}),
        ),
    );
    assert_eq!(r.status, 200, "HTTP {}", r.status);
    assert_eq!(first_text(&r.result()).len(), 3 * 1024 * 1024);

    let auth = format!("Bearer {}", gw.token);
    let ping = rpc(1, "ping", json!({})).to_string().into_bytes();
    // Content-Type must be application/json → 415.
    for ct in ["text/plain", "application/x-www-form-urlencoded"] {
        let r = send(
            "POST",
            &url,
            &[
                ("Content-Type", ct),
                ("Accept", JSON_AND_SSE),
                ("Authorization", &auth),
            ],
            ping.clone(),
        );
        assert_eq!(r.status, 415, "{ct}: {r}");
        assert_eq!(r.error().0, -32600, "{r}");
    }
    let r = send(
        "POST",
        &url,
        &[("Accept", JSON_AND_SSE), ("Authorization", &auth)],
        ping.clone(),
    );
    assert_eq!(r.status, 415, "no Content-Type: {r}");
    // With parameters it is still JSON.
    let r = send(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json; charset=utf-8"),
            ("Accept", JSON_AND_SSE),
            ("Authorization", &auth),
        ],
        ping.clone(),
    );
    assert_eq!(r.status, 200, "{r}");
    // Accept must allow JSON → 406.
    let r = send(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "text/html"),
            ("Authorization", &auth),
        ],
        ping.clone(),
    );
    assert_eq!(r.status, 406, "{r}");
    assert!(r.json()["error"].is_object(), "{r}");

    // Malformed JSON → 400 / -32700; a non-JSON-RPC object → 400 / -32600; batches → 400.
    let headers = [
        ("Content-Type", "application/json"),
        ("Accept", JSON_AND_SSE),
        ("Authorization", auth.as_str()),
    ];
    for (body, code) in [
        (
            &b"{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": "[..],
            -32700,
        ),
        (b"not json", -32700),
        (b"", -32700),
        (
            b"{\"jsonrpc\": \"1.0\", \"id\": 1, \"method\": \"ping\"}",
            -32600,
        ),
        (b"{\"id\": 1}", -32600),
        (
            b"[{\"jsonrpc\": \"2.0\", \"id\": 1, \"method\": \"ping\"}]",
            -32600,
        ),
    ] {
        let r = send("POST", &url, &headers, body.to_vec());
        assert_eq!(r.status, 400, "{}: {r}", String::from_utf8_lossy(body));
        assert_eq!(r.error().0, code, "{}: {r}", String::from_utf8_lossy(body));
        assert_eq!(r.json()["id"], Value::Null, "{r}");
    }

    // A version header that is no version at all → 400.
    let r = post(
        &url,
        tok,
        &[("MCP-Protocol-Version", "not-a-version")],
        &rpc(1, "tools/list", json!({})),
    );
    assert_eq!(r.status, 400, "{r}");

    // A foreign Origin → 403 (DNS-rebinding protection); loopback origins pass.
    let r = post(
        &url,
        tok,
        &[("Origin", "http://evil.example")],
        &rpc(1, "ping", json!({})),
    );
    assert_eq!(r.status, 403, "{r}");
    let r = post(
        &url,
        tok,
        &[("Origin", "http://localhost:3000")],
        &rpc(1, "ping", json!({})),
    );
    assert_eq!(r.status, 200, "{r}");
}

/// 2026-07-28: server/discover, `_meta` checks, header validation (incl. base64 and
/// whitespace), unsupported version, removed methods, resultType/ttlMs/cacheScope.
#[test]
fn modern_era_rules() {
    let gw = Gateway::start("rmcp");
    let url = gw.mcp();
    let tok = gw.token();

    // server/discover.
    let r = post_modern(&url, tok, 1, "server/discover", json!({}));
    assert_eq!(r.status, 200, "{r}");
    let d = r.result();
    let versions: Vec<&str> = d["supportedVersions"]
        .as_array()
        .unwrap_or_else(|| panic!("no supportedVersions: {d}"))
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(versions.contains(&MODERN), "{d}");
    assert!(versions.contains(&"2025-11-25"), "{d}");
    assert_eq!(d["resultType"], "complete", "{d}");
    assert!(d["ttlMs"].is_u64(), "{d}");
    assert!(
        d["cacheScope"] == "public" || d["cacheScope"] == "private",
        "{d}"
    );
    assert!(d["capabilities"]["tools"].is_object(), "{d}");
    let info = &d["_meta"]["io.modelcontextprotocol/serverInfo"];
    assert!(
        info["name"].is_string() && info["version"].is_string(),
        "{d}"
    );

    // Lists: resultType, ttlMs, cacheScope private (filtered per client), serverInfo stamp.
    let r = post_modern(&url, tok, 2, "tools/list", json!({}));
    let l = r.result();
    assert_eq!(l["resultType"], "complete", "{l}");
    assert!(l["ttlMs"].is_u64(), "{l}");
    assert_eq!(l["cacheScope"], "private", "{l}");
    assert_eq!(
        l["_meta"]["io.modelcontextprotocol/serverInfo"], *info,
        "{l}"
    );
    assert!(tool_names(&l).contains(&"rmcp__add".to_owned()), "{l}");
    let r = post_modern(&url, tok, 3, "prompts/list", json!({}));
    let p = r.result();
    assert_eq!(p["cacheScope"], "private", "{p}");
    assert_eq!(tool_names(&p), ["rmcp__greeting"], "{p}");

    // tools/call: the upstream's result gets resultType complete and the serverInfo stamp.
    let r = post_modern(
        &url,
        tok,
        4,
        "tools/call",
        json!({"name": "rmcp__echo", "arguments": {"message": "modern"}}),
    );
    assert_eq!(r.status, 200, "{r}");
    let c = r.result();
    assert_eq!(first_text(&c), "modern", "{c}");
    assert_eq!(c["resultType"], "complete", "{c}");
    assert_eq!(
        c["_meta"]["io.modelcontextprotocol/serverInfo"], *info,
        "{c}"
    );
    // prompts/get too.
    let r = post_modern(
        &url,
        tok,
        5,
        "prompts/get",
        json!({"name": "rmcp__greeting", "arguments": {"name": "Ada"}}),
    );
    let g = r.result();
    assert_eq!(g["resultType"], "complete", "{g}");
    assert!(g["messages"].to_string().contains("Ada"), "{g}");
    // A tool error stays a result (HTTP 200, isError), unknown tools are -32602 (HTTP 200).
    let r = post_modern(&url, tok, 6, "tools/call", json!({"name": "rmcp__fail"}));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.result()["isError"], true, "{r}");
    let r = post_modern(&url, tok, 7, "tools/call", json!({"name": "rmcp__nope"}));
    assert_eq!(r.status, 200, "{r}");
    assert_eq!(r.error().0, -32602, "{r}");

    let list = |meta: Option<Value>| {
        let mut params = json!({});
        if let Some(m) = meta {
            params["_meta"] = m;
        }
        rpc(10, "tools/list", params)
    };
    let headers = [
        ("MCP-Protocol-Version", MODERN),
        ("Mcp-Method", "tools/list"),
    ];

    // 1. _meta missing or malformed → 400 / -32602.
    for body in [
        list(None),
        list(Some(json!("text"))),
        list(Some(
            json!({"io.modelcontextprotocol/clientCapabilities": {}}),
        )),
        list(Some(
            json!({"io.modelcontextprotocol/protocolVersion": MODERN}),
        )),
        list(Some(
            json!({"io.modelcontextprotocol/protocolVersion": MODERN,
                         "io.modelcontextprotocol/clientCapabilities": "none"}),
        )),
        json!({"jsonrpc": "2.0", "id": 10, "method": "tools/list"}),
    ] {
        let r = post(&url, tok, &headers, &body);
        assert_eq!(r.status, 400, "{body}: {r}");
        assert_eq!(r.error().0, -32602, "{body}: {r}");
        assert_eq!(r.json()["id"], 10, "{r}");
    }

    // 2. headers missing, mismatched or invalid → 400 / -32020.
    let good = crate::dataplane_support::modern_rpc(
        11,
        "tools/call",
        json!({"name": "rmcp__echo", "arguments": {"message": "m"}}),
    );
    let b64 = |s: &str| {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    let echo_b64 = b64("rmcp__echo");
    let add_b64 = b64("rmcp__add");
    let mismatches: Vec<Vec<(&str, &str)>> = vec![
        vec![("MCP-Protocol-Version", MODERN), ("Mcp-Name", "rmcp__echo")],
        vec![
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/list"),
            ("Mcp-Name", "rmcp__echo"),
        ],
        vec![
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "TOOLS/CALL"),
            ("Mcp-Name", "rmcp__echo"),
        ],
        vec![
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/call"),
        ],
        vec![
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "rmcp__add"),
        ],
        vec![
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", &add_b64),
        ],
        vec![
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "=?base64?***?="),
        ],
        // The version header must equal the _meta version.
        vec![
            ("MCP-Protocol-Version", "2099-01-01"),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "rmcp__echo"),
        ],
    ];
    for h in &mismatches {
        let r = post(&url, tok, h, &good);
        assert_eq!(r.status, 400, "{h:?}: {r}");
        assert_eq!(r.error().0, -32020, "{h:?}: {r}");
    }
    // The base64 form that decodes to the body's name, and surrounding whitespace, are accepted.
    for h in [
        vec![
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", echo_b64.as_str()),
        ],
        vec![
            ("MCP-Protocol-Version", MODERN),
            ("Mcp-Method", " tools/call\t"),
            ("Mcp-Name", " rmcp__echo "),
        ],
    ] {
        let r = post(&url, tok, &h, &good);
        assert_eq!(r.status, 200, "{h:?}: {r}");
        assert_eq!(first_text(&r.result()), "m", "{h:?}: {r}");
    }

    // 3. unsupported version → 400 / -32022 with data.supported and data.requested.
    let mut old = rpc(12, "tools/list", json!({}));
    old["params"]["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2099-01-01",
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    let r = post(
        &url,
        tok,
        &[
            ("MCP-Protocol-Version", "2099-01-01"),
            ("Mcp-Method", "tools/list"),
        ],
        &old,
    );
    assert_eq!(r.status, 400, "{r}");
    assert_eq!(r.error().0, -32022, "{r}");
    let data = &r.json()["error"]["data"];
    let supported = data["supported"]
        .as_array()
        .unwrap_or_else(|| panic!("no data.supported: {r}"));
    assert!(supported.iter().any(|v| v == MODERN), "{r}");
    assert_eq!(data["requested"], "2099-01-01", "{r}");

    // 4. removed or unknown methods with the modern header → 404 / -32601.
    for method in ["initialize", "ping", "logging/setLevel", "no/such"] {
        let r = post_modern(&url, tok, 13, method, json!({}));
        assert_eq!(r.status, 404, "{method}: {r}");
        assert_eq!(r.error().0, -32601, "{method}: {r}");
    }
    // ...while server/discover without the modern header is a handshake-era unknown method.
    let r = post_legacy(&url, tok, 14, "server/discover", json!({}));
    assert_eq!(r.error().0, -32601, "{r}");
}

/// Enterprise auth and scope over raw HTTP: 401 + WWW-Authenticate, out of scope = unknown.
#[test]
fn auth_and_scope_rules() {
    let gw = Gateway::start("rmcp__echo");
    let url = gw.mcp();

    // Missing, unknown, malformed tokens → 401, WWW-Authenticate: Bearer, JSON-RPC error body.
    for auth in [
        None,
        Some("Bearer not-a-real-token-0123456789".to_owned()),
        Some(format!("Basic {}", gw.token)),
        Some("Bearer".to_owned()),
    ] {
        let mut headers = vec![
            ("Content-Type", "application/json"),
            ("Accept", JSON_AND_SSE),
            ("MCP-Protocol-Version", "2025-11-25"),
        ];
        if let Some(a) = &auth {
            headers.push(("Authorization", a));
        }
        let body = rpc(1, "tools/list", json!({})).to_string().into_bytes();
        let r = send("POST", &url, &headers, body);
        assert_eq!(r.status, 401, "{auth:?}: {r}");
        let www = r.header("www-authenticate").unwrap_or_default();
        assert!(www.starts_with("Bearer"), "{auth:?}: {r}");
        let v = r.json();
        assert_eq!(v["jsonrpc"], "2.0", "{r}");
        assert!(v["error"]["code"].is_i64(), "{r}");
    }
    // Modern requests too, and server/discover is not a way around it.
    let r = post_modern(&url, None, 1, "server/discover", json!({}));
    assert_eq!(r.status, 401, "{r}");
    assert!(r.header("www-authenticate").is_some(), "{r}");

    // Scope: only rmcp__echo is listed; both eras.
    let r = post_legacy(&url, gw.token(), 2, "tools/list", json!({}));
    assert_eq!(tool_names(&r.result()), ["rmcp__echo"], "{r}");
    let r = post_modern(&url, gw.token(), 2, "tools/list", json!({}));
    assert_eq!(tool_names(&r.result()), ["rmcp__echo"], "{r}");
    // A single-tool allow entry does not cover the server's prompts.
    let r = post_legacy(&url, gw.token(), 3, "prompts/list", json!({}));
    assert_eq!(tool_names(&r.result()), Vec::<String>::new(), "{r}");

    // Calling outside the scope = calling a tool that does not exist (same status, code,
    // message shape), in both eras.
    for modern in [false, true] {
        let call = |name: &str| {
            let params = json!({"name": name, "arguments": {"a": 1, "b": 2}});
            if modern {
                post_modern(&url, gw.token(), 4, "tools/call", params)
            } else {
                post_legacy(&url, gw.token(), 4, "tools/call", params)
            }
        };
        let hidden = call("rmcp__add");
        let missing = call("rmcp__zzz");
        assert_eq!(hidden.status, missing.status, "{hidden} vs {missing}");
        let (hc, hm) = hidden.error();
        let (mc, mm) = missing.error();
        assert_eq!(hc, mc, "{hidden} vs {missing}");
        assert_eq!(
            hm.replace("rmcp__add", "X"),
            mm.replace("rmcp__zzz", "X"),
            "out-of-scope and unknown tools must look alike"
        );
        assert_eq!(
            hidden.json()["error"].get("data"),
            missing.json()["error"].get("data")
        );
        let ok = call("rmcp__echo");
        assert_eq!(ok.status, 200, "{ok}");
        assert!(ok.json().get("result").is_some(), "{ok}");
        // Same for prompts.
        let get = |name: &str| {
            let params = json!({"name": name, "arguments": {"name": "x"}});
            if modern {
                post_modern(&url, gw.token(), 5, "prompts/get", params)
            } else {
                post_legacy(&url, gw.token(), 5, "prompts/get", params)
            }
        };
        let hidden = get("rmcp__greeting");
        let missing = get("rmcp__nogreeting");
        assert_eq!(hidden.status, missing.status, "{hidden} vs {missing}");
        assert_eq!(hidden.error().0, missing.error().0);
        assert_eq!(
            hidden.error().1.replace("rmcp__greeting", "X"),
            missing.error().1.replace("rmcp__nogreeting", "X")
        );
    }

    // A client with an empty allow list sees nothing and can call nothing.
    let none = gw
        .admin
        .json(&["create", "mcp-client", "nobody", "--allow", ""]);
    let nobody = access_token(&none);
    eventually("nobody's token accepted", SYNC_DEADLINE, || {
        (post_legacy(&url, Some(&nobody), 1, "tools/list", json!({})).status == 200).then_some(())
    });
    let r = post_legacy(&url, Some(&nobody), 1, "tools/list", json!({}));
    assert_eq!(tool_names(&r.result()), Vec::<String>::new(), "{r}");
    let r = post_legacy(
        &url,
        Some(&nobody),
        1,
        "tools/call",
        json!({"name": "rmcp__echo", "arguments": {"message": "x"}}),
    );
    assert_eq!(r.error().0, -32602, "{r}");
}

/// `/servers/<name>/mcp`: one upstream, original names, same auth and scope.
#[test]
fn per_server_endpoint() {
    let gw = Gateway::start("rmcp");
    let py = canopy_e2e::PythonServer::start(canopy_e2e::PyTransport::StreamableHttp {
        stateless: false,
    });
    gw.admin
        .ok(&["register", "--name", "py", "--url", &py.url()]);
    let both = gw
        .admin
        .json(&["create", "mcp-client", "both", "--allow", "rmcp, py__add"]);
    let both = access_token(&both);
    wait_for_tool(&gw.mcp(), Some(&both), "py__add");

    let rmcp_url = format!("{}/servers/rmcp/mcp", gw.dp.url());
    let py_url = format!("{}/servers/py/mcp", gw.dp.url());
    for modern in [false, true] {
        let req = |url: &str, tok: &str, method: &str, params: Value| {
            if modern {
                post_modern(url, Some(tok), 1, method, params)
            } else {
                post_legacy(url, Some(tok), 1, method, params)
            }
        };
        let r = req(&rmcp_url, &both, "tools/list", json!({}));
        let names = tool_names(&r.result());
        for n in ["echo", "add", "auth_header"] {
            assert!(names.contains(&n.to_owned()), "{n} missing: {r}");
        }
        assert!(names.iter().all(|n| !n.contains("__")), "{r}");
        let r = req(&rmcp_url, &both, "prompts/list", json!({}));
        assert_eq!(tool_names(&r.result()), ["greeting"], "{r}");
        let r = req(
            &rmcp_url,
            &both,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 1, "b": 2}}),
        );
        assert_eq!(first_text(&r.result()), "3", "{r}");
        if modern {
            assert_eq!(r.result()["resultType"], "complete", "{r}");
        }
        // The prefixed name is not a tool of this endpoint.
        let r = req(
            &rmcp_url,
            &both,
            "tools/call",
            json!({"name": "rmcp__add", "arguments": {"a": 1, "b": 2}}),
        );
        assert_eq!(r.error().0, -32602, "{r}");

        // py: only `add` is in scope.
        let r = req(&py_url, &both, "tools/list", json!({}));
        assert_eq!(tool_names(&r.result()), ["add"], "{r}");
        let hidden = req(
            &py_url,
            &both,
            "tools/call",
            json!({"name": "echo", "arguments": {"message": "x"}}),
        );
        let missing = req(
            &py_url,
            &both,
            "tools/call",
            json!({"name": "nope", "arguments": {"message": "x"}}),
        );
        assert_eq!(hidden.status, missing.status);
        assert_eq!(hidden.error().0, missing.error().0, "{hidden}");
        let r = req(
            &py_url,
            &both,
            "tools/call",
            json!({"name": "add", "arguments": {"a": 2, "b": 2}}),
        );
        assert_eq!(first_text(&r.result()), "4", "{r}");
    }

    // `agent` is scoped to rmcp only: /servers/py/mcp is as unknown to it as a missing server.
    let hidden = post_legacy(&py_url, gw.token(), 1, "tools/list", json!({}));
    let missing = post_legacy(
        &format!("{}/servers/ghost/mcp", gw.dp.url()),
        gw.token(),
        1,
        "tools/list",
        json!({}),
    );
    assert_eq!(hidden.status, missing.status, "{hidden} vs {missing}");
    assert_eq!(hidden.status, 404, "{hidden}");
    assert_eq!(
        hidden.error().1.replace("py", "X"),
        missing.error().1.replace("ghost", "X")
    );
    // Same auth: no token → 401; GET → 405.
    let r = post_legacy(&rmcp_url, None, 1, "tools/list", json!({}));
    assert_eq!(r.status, 401, "{r}");
    assert!(r.header("www-authenticate").is_some(), "{r}");
    let r = send("GET", &rmcp_url, &[], Vec::new());
    assert_eq!(r.status, 405, "{r}");
}

/// Fields outside the MCP schema, in a tool definition and in a call result, reach the client
/// unchanged (both eras); a 2026-07-28 upstream gets `_meta` and the SEP-2243 headers with its
/// own tool name, and the registered token instead of the client's.
#[test]
fn unknown_fields_and_modern_upstreams() {
    let gw = Gateway::start("rmcp");
    let raw = RawUpstream::start(false);
    let raw_modern = RawUpstream::start(true);
    let upstream_secret = "raw-upstream-secret-0123456789";
    gw.admin
        .ok(&["register", "--name", "raw", "--url", &raw.url()]);
    gw.admin.ok(&[
        "register",
        "--name",
        "rawmodern",
        "--url",
        &raw_modern.url(),
        "--bearer-token",
        upstream_secret,
    ]);
    let c = gw.admin.json(&[
        "create",
        "mcp-client",
        "rawclient",
        "--allow",
        "raw,rawmodern",
    ]);
    let tok = access_token(&c);
    let url = gw.mcp();
    wait_for_tool(&url, Some(&tok), "rawmodern__whoami");

    for modern in [false, true] {
        let req = |method: &str, params: Value| {
            if modern {
                post_modern(&url, Some(&tok), 1, method, params)
            } else {
                post_legacy(&url, Some(&tok), 1, method, params)
            }
        };
        let r = req("tools/list", json!({}));
        let list = r.result();
        let tools = list["tools"].as_array().expect("tools array");
        for name in ["raw__echo", "rawmodern__echo"] {
            let echo = tools
                .iter()
                .find(|t| t["name"] == name)
                .unwrap_or_else(|| panic!("{name} missing: {list}"));
            assert_eq!(echo["x-unknown"], raw_unknown_in_tool(), "{name}: {echo}");
            assert_eq!(
                echo["inputSchema"]["x-schema-extension"], "kept",
                "{name}: {echo}"
            );
            assert_eq!(echo["description"], "Echo the message back as text");
        }
        for name in ["raw__echo", "rawmodern__echo"] {
            let r = req(
                "tools/call",
                json!({"name": name, "arguments": {"message": "unchanged"}}),
            );
            let result = r.result();
            assert_eq!(first_text(&result), "unchanged", "{name}: {r}");
            assert_eq!(result["x-unknown"], raw_unknown_in_result(), "{name}: {r}");
            if modern {
                assert_eq!(result["resultType"], "complete", "{name}: {r}");
            } else if name == "raw__echo" {
                // Nothing is added for a handshake-era client.
                assert!(result.get("resultType").is_none(), "{name}: {r}");
                assert!(result.get("_meta").is_none(), "{name}: {r}");
            }
        }
        // What the 2026-07-28 upstream saw: its own tool name in Mcp-Name, _meta with the
        // version, and the registered token — never the client's.
        let r = req("tools/call", json!({"name": "rawmodern__whoami"}));
        let seen: Value = serde_json::from_str(first_text(&r.result())).expect("whoami JSON");
        assert_eq!(
            seen["authorization"],
            format!("Bearer {upstream_secret}"),
            "{seen}"
        );
        assert!(
            !seen.to_string().contains(&tok),
            "client token leaked: {seen}"
        );
        assert_eq!(seen["mcp-protocol-version"], MODERN, "{seen}");
        assert_eq!(seen["mcp-method"], "tools/call", "{seen}");
        assert_eq!(seen["mcp-name"], "whoami", "{seen}");
        assert_eq!(
            seen["meta"]["io.modelcontextprotocol/protocolVersion"], MODERN,
            "{seen}"
        );
        // The handshake-era upstream got no Authorization at all (none registered).
        let r = req("tools/call", json!({"name": "raw__whoami"}));
        let seen: Value = serde_json::from_str(first_text(&r.result())).expect("whoami JSON");
        assert_eq!(seen["authorization"], "none", "{seen}");
        // ...and no 2026-07-28 envelope in `_meta`, even for a modern client (handshake-era
        // servers may refuse enveloped requests; the Python SDK does).
        assert!(
            seen["meta"]
                .get("io.modelcontextprotocol/protocolVersion")
                .is_none(),
            "envelope forwarded to a handshake-era upstream: {seen}"
        );
    }
}

/// An SSE response when the upstream streams progress notifications before its result; a plain
/// JSON response for a client that does not accept SSE.
#[test]
fn progress_notifications_stream_as_sse() {
    let gw = Gateway::start("rmcp");
    let url = gw.mcp();
    let params = json!({"name": "rmcp__progress", "arguments": {"steps": 3},
                        "_meta": {"progressToken": "tok-1"}});
    let r = post_legacy(&url, gw.token(), 1, "tools/call", params.clone());
    assert_eq!(r.status, 200, "{r}");
    assert!(
        r.header("content-type")
            .is_some_and(|c| c.starts_with("text/event-stream")),
        "{r}"
    );
    let events: Vec<Value> = r
        .text
        .split("\n\n")
        .filter_map(|e| {
            let data: String = e
                .lines()
                .filter_map(|l| l.strip_prefix("data:"))
                .map(str::trim_start)
                .collect();
            (!data.is_empty()).then(|| serde_json::from_str(&data).expect("event JSON"))
        })
        .collect();
    let last = events.last().unwrap_or_else(|| panic!("no events: {r}"));
    assert_eq!(last["id"], 1, "{r}");
    assert!(last["result"].is_object(), "{r}");
    let progress: Vec<&Value> = events
        .iter()
        .filter(|e| e["method"] == "notifications/progress")
        .collect();
    assert!(!progress.is_empty(), "no progress events: {r}");
    assert!(
        progress
            .iter()
            .all(|p| p["params"]["progressToken"] == "tok-1"),
        "{r}"
    );

    // Accept: application/json only → one JSON response.
    let auth = format!("Bearer {}", gw.token);
    let r = send(
        "POST",
        &url,
        &[
            ("Content-Type", "application/json"),
            ("Accept", "application/json"),
            ("Authorization", &auth),
        ],
        rpc(2, "tools/call", params).to_string().into_bytes(),
    );
    assert_eq!(r.status, 200, "{r}");
    assert!(r.result().is_object(), "{r}");
}

/// /healthz, /readyz after sync, /metrics with request counters, auth failures, upstream
/// latency and the applied revision.
#[test]
fn ops_endpoints() {
    let gw = Gateway::start("rmcp");
    let url = gw.mcp();
    let (status, body) = gw.dp.get("/healthz").expect("healthz answers");
    assert_eq!(status, 200, "{body}");
    let (status, body) = gw.dp.get("/readyz").expect("readyz answers");
    assert_eq!(status, 200, "{body}");
    let ready: Value = serde_json::from_str(body.trim()).expect("readyz JSON");
    let revision = ready["revision"].as_u64().expect("readyz revision");
    assert!(revision > 0, "{ready}");

    let _ = post_legacy(
        &url,
        gw.token(),
        1,
        "tools/call",
        json!({"name": "rmcp__echo", "arguments": {"message": "m"}}),
    );
    let _ = post_legacy(
        &url,
        Some("wrong-token-0123456789abcdef"),
        1,
        "ping",
        json!({}),
    );
    let _ = post_modern(&url, gw.token(), 1, "tools/list", json!({}));

    let (status, text) = gw.dp.get("/metrics").expect("metrics answers");
    assert_eq!(status, 200);
    let at_least_one = |name: &str| {
        let v = metric(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
        assert!(v >= 1.0, "{name} = {v}");
    };
    at_least_one("canopy_requests_total{method=\"tools/call\",status=\"200\"}");
    at_least_one("canopy_requests_total{method=\"tools/list\",status=\"200\"}");
    at_least_one("canopy_auth_failures_total");
    at_least_one("canopy_upstream_request_duration_seconds_count{server=\"rmcp\"}");
    assert_eq!(metric(&text, "canopy_ready"), Some(1.0), "{text}");
    let applied = metric(&text, "canopy_sync_applied_revision")
        .unwrap_or_else(|| panic!("no applied revision:\n{text}"));
    assert!(applied >= revision as f64, "{applied} < {revision}");
    assert!(
        text.contains("canopy_sync_staleness_seconds"),
        "no staleness:\n{text}"
    );
    let unauthorized = text
        .lines()
        .any(|l| l.starts_with("canopy_requests_total{") && l.contains("status=\"401\""));
    assert!(unauthorized, "401s are not counted:\n{text}");
    let _ = &gw.cp;
    let _ = &gw.upstream;
}

/// `POST /mcp` over a raw connection with `Content-Length: len` and `len` bytes of spaces sent
/// only while the server has not answered yet; returns the status the server answered with.
fn post_declaring_length(addr: std::net::SocketAddr, token: &str, len: usize) -> u16 {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the data plane");
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .expect("read timeout");
    let head = format!(
        "POST /mcp HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Accept: application/json, text/event-stream\r\nAuthorization: Bearer {token}\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    stream
        .write_all(head.as_bytes())
        .expect("write request head");
    if len <= 4 * 1024 * 1024 {
        // Within the limit the server waits for the body.
        stream.write_all(&vec![b' '; len]).expect("write body");
    }
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw);
    text.lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP status line in {text:?}"))
}
