#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! In-process router tests: `router(dp).oneshot(request)` against a state built
//! directly, with a real (in-process) upstream for forwarded calls.

mod audit;
mod fuzz;
mod mock;
mod oauth;

use axum::body::Body;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use std::sync::Arc;
use tower::ServiceExt;

use crate::app::{DataPlane, HttpSettings};
use crate::state::tests_support::{client, install, server, snapshot};
use canopy_proto::v1 as pb;

const ALICE: &str = "alice-token-0123456789"; // allow: gh, prompts of gh
const BOB: &str = "bob-token-0123456789"; // allow: gh__echo only
const MODERN: &str = "2026-07-28";

struct Env {
    dp: Arc<DataPlane>,
    mock: mock::Mock,
}

async fn env_with(settings: HttpSettings, mode: pb::Mode) -> Env {
    env_full(settings, mode, None, pb::AuditPayload::Off).await
}

/// `env_with` plus an audit trail and the `gh` server's audit payload setting.
async fn env_full(
    settings: HttpSettings,
    mode: pb::Mode,
    audit: Option<Arc<crate::audit::Audit>>,
    gh_payload: pb::AuditPayload,
) -> Env {
    let mock = mock::start().await;
    let dp = DataPlane::with_audit(settings, audit);
    let mut gh = server("gh", &mock.url, &["echo", "progress", "fail", "input"]);
    gh.tools_json.push(
        r#"{"name":"odd","x-vendor":{"n":1.50,"s":"é"},"inputSchema":{"type":"object"}}"#.into(),
    );
    gh.prompts_json = vec![r#"{"name":"greet","arguments":[]}"#.into()];
    if let Some(spec) = gh.spec.as_mut() {
        spec.bearer_token = "upstream-secret".into();
        spec.timeout_ms = 5_000;
        spec.audit_payload = gh_payload as i32;
    }
    let jira = server("jira", &mock.url, &["create"]);
    let mut down = server("down", "http://127.0.0.1:9/mcp", &["x"]);
    if let Some(spec) = down.spec.as_mut() {
        spec.timeout_ms = 2_000;
    }
    let mut snap = snapshot(
        7,
        vec![
            client("alice", ALICE, &["gh", "down"]),
            client("bob", BOB, &["gh__echo"]),
        ],
        vec![gh, jira, down],
    );
    snap.mode = mode as i32;
    install(&dp.state, snap);
    Env { dp, mock }
}

async fn env() -> Env {
    env_with(HttpSettings::default(), pb::Mode::Enterprise).await
}

struct Req {
    method: &'static str,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
}

impl Req {
    /// A handshake-era POST /mcp with alice's token.
    fn post(body: impl Into<String>) -> Self {
        Req {
            method: "POST",
            path: "/mcp".into(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                (
                    "accept".into(),
                    "application/json, text/event-stream".into(),
                ),
                ("authorization".into(), format!("Bearer {ALICE}")),
            ],
            body: body.into(),
        }
    }

    fn rpc(method: &str, params: Value) -> Self {
        Self::post(json!({"jsonrpc":"2.0","id":1,"method":method,"params":params}).to_string())
    }

    /// A 2026-07-28 request: version header, `_meta`, `Mcp-Method` and `Mcp-Name`.
    fn modern(method: &str, mut params: Value) -> Self {
        params["_meta"] = json!({
            "io.modelcontextprotocol/protocolVersion": MODERN,
            "io.modelcontextprotocol/clientCapabilities": {}
        });
        let name = params["name"].as_str().map(str::to_owned);
        let mut r = Self::rpc(method, params)
            .header("mcp-protocol-version", MODERN)
            .header("mcp-method", method);
        if let Some(n) = name {
            r = r.header("mcp-name", &n);
        }
        r
    }

    fn header(mut self, k: &str, v: &str) -> Self {
        self.headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
        self.headers.push((k.into(), v.into()));
        self
    }

    fn without(mut self, k: &str) -> Self {
        self.headers.retain(|(hk, _)| !hk.eq_ignore_ascii_case(k));
        self
    }

    fn token(self, t: &str) -> Self {
        self.header("authorization", &format!("Bearer {t}"))
    }

    fn path(mut self, p: &str) -> Self {
        self.path = p.into();
        self
    }

    async fn send(self, dp: &Arc<DataPlane>) -> Resp {
        let mut b = Request::builder().method(self.method).uri(&self.path);
        for (k, v) in &self.headers {
            b = b.header(k, v);
        }
        let resp = crate::http::router(dp.clone())
            .oneshot(b.body(Body::from(self.body)).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        Resp {
            status,
            headers,
            text: String::from_utf8(bytes.to_vec()).unwrap(),
        }
    }
}

#[derive(Debug)]
struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    text: String,
}

impl Resp {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error_code(&self) -> i64 {
        self.json()["error"]["code"]
            .as_i64()
            .unwrap_or_else(|| panic!("no error: {}", self.text))
    }

    fn tool_names(&self) -> Vec<String> {
        let v = self.json();
        v["result"]["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap().to_owned())
            .collect()
    }
}

// ------------------------------------------------------------ handshake era

#[tokio::test]
async fn initialize_echoes_supported_versions_and_falls_back() {
    let e = env().await;
    let r = Req::rpc("initialize", json!({"protocolVersion":"2025-03-26","capabilities":{},"clientInfo":{"name":"t","version":"1"}}))
        .without("mcp-protocol-version")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.headers.get("mcp-session-id").is_none());
    let v = r.json();
    assert_eq!(v["result"]["protocolVersion"], "2025-03-26");
    assert_eq!(v["result"]["capabilities"]["tools"]["listChanged"], false);
    assert_eq!(v["result"]["capabilities"]["prompts"]["listChanged"], false);
    assert_eq!(v["result"]["serverInfo"]["name"], "canopy");
    let r = Req::rpc("initialize", json!({"protocolVersion":"1999-01-01"}))
        .send(&e.dp)
        .await;
    assert_eq!(r.json()["result"]["protocolVersion"], "2025-11-25");
}

#[tokio::test]
async fn notifications_and_responses_get_202() {
    let e = env().await;
    let r = Req::post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert!(r.text.is_empty());
    let r = Req::post(r#"{"jsonrpc":"2.0","id":5,"result":{}}"#)
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn ping_is_exactly_empty_object() {
    let e = env().await;
    let r = Req::post(r#"{"jsonrpc":"2.0","id":"p-1","method":"ping"}"#)
        .header("mcp-protocol-version", "2025-06-18")
        .send(&e.dp)
        .await;
    assert_eq!(r.text, r#"{"jsonrpc":"2.0","id":"p-1","result":{}}"#);
}

#[tokio::test]
async fn unknown_method_and_malformed_bodies() {
    let e = env().await;
    let r = Req::rpc("resources/list", json!({})).send(&e.dp).await;
    assert_eq!((r.status, r.error_code()), (StatusCode::OK, -32601));
    let r = Req::post("{not json").send(&e.dp).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, -32700)
    );
    let r = Req::post(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#)
        .send(&e.dp)
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, -32600)
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("batch"));
    let r = Req::post(r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#)
        .send(&e.dp)
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, -32600)
    );
}

#[tokio::test]
async fn ids_other_than_strings_and_numbers_are_invalid_requests() {
    let e = env().await;
    for id in [r#"{"a":1}"#, "[1]", "true", "false"] {
        let r = Req::post(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#))
            .send(&e.dp)
            .await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::BAD_REQUEST, -32600),
            "{id}"
        );
        assert_eq!(r.json()["id"], Value::Null, "{id}");
    }
    for id in [r#""s""#, "7", "-1.5"] {
        let r = Req::post(format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#))
            .send(&e.dp)
            .await;
        assert!(r.json()["result"].is_object(), "{id}: {}", r.text);
    }
}

#[tokio::test]
async fn errors_repeat_at_most_a_bounded_part_of_the_input() {
    let e = env().await;
    let huge = "m".repeat(3 * 1024 * 1024);
    let r = Req::rpc(&huge, json!({})).send(&e.dp).await;
    assert_eq!(r.error_code(), -32601);
    let msg = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(msg.starts_with("Method not found: mmm"), "{msg}");
    assert!(msg.ends_with('…') && msg.len() < 200, "{} bytes", msg.len());
    assert!(r.text.len() < 400, "{} bytes", r.text.len());
    // The same bound for names and header values.
    let r = Req::rpc("tools/call", json!({"name": huge}))
        .send(&e.dp)
        .await;
    assert!(r.text.len() < 400, "{} bytes", r.text.len());
    let long = "é".repeat(300);
    let r = Req::modern("tools/call", json!({"name":"gh__echo","arguments":{}}))
        .header("mcp-name", &format!("=?base64?{}?=", b64(&long)))
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.text.len() < 600, "{}", r.text);
}

fn b64(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test]
async fn a_rejection_before_the_body_drains_a_small_one_or_closes_the_connection() {
    let e = env().await;
    let small = Req::rpc("ping", json!({}))
        .header("content-type", "text/plain")
        .send(&e.dp)
        .await;
    assert_eq!(small.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert!(small.headers.get("connection").is_none());
    let big = Req::post("x".repeat(1024 * 1024))
        .header("content-type", "text/plain")
        .send(&e.dp)
        .await;
    assert_eq!(big.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(big.headers.get("connection").unwrap(), "close");
    let too_large = Req::post("x".repeat(5 * 1024 * 1024)).send(&e.dp).await;
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(too_large.headers.get("connection").unwrap(), "close");
}

#[tokio::test]
async fn invalid_protocol_version_header_is_400() {
    let e = env().await;
    let r = Req::rpc("tools/list", json!({}))
        .header("mcp-protocol-version", "garbage")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn http_level_checks() {
    let e = env_with(
        HttpSettings {
            max_body_bytes: 64,
            ..Default::default()
        },
        pb::Mode::Enterprise,
    )
    .await;
    for m in ["GET", "DELETE"] {
        let mut r = Req::post("");
        r.method = m;
        let r = r.send(&e.dp).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED, "{m}");
    }
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"x":"{}"}}}}"#,
        "a".repeat(100)
    );
    assert_eq!(
        Req::post(big).send(&e.dp).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    assert_eq!(
        Req::post(ping)
            .header("content-type", "text/plain")
            .send(&e.dp)
            .await
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    assert_eq!(
        Req::post(ping)
            .without("content-type")
            .send(&e.dp)
            .await
            .status,
        StatusCode::UNSUPPORTED_MEDIA_TYPE
    );
    let ok = Req::post(ping)
        .header("content-type", "application/json; charset=utf-8")
        .send(&e.dp)
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(
        Req::post(ping)
            .header("accept", "text/html")
            .send(&e.dp)
            .await
            .status,
        StatusCode::NOT_ACCEPTABLE
    );
    assert_eq!(
        Req::post(ping)
            .header("accept", "*/*")
            .send(&e.dp)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        Req::post(ping).without("accept").send(&e.dp).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn origin_rules() {
    let settings = HttpSettings {
        allowed_origins: vec!["https://app.example".into()],
        ..Default::default()
    };
    let e = env_with(settings, pb::Mode::Enterprise).await;
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let r = Req::post(ping)
        .header("origin", "https://evil.example")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.json()["error"].is_object());
    for ok in [
        "http://localhost:5173",
        "http://127.0.0.1:8080",
        "https://app.example",
    ] {
        assert_eq!(
            Req::post(ping)
                .header("origin", ok)
                .send(&e.dp)
                .await
                .status,
            StatusCode::OK,
            "{ok}"
        );
    }
}

// ------------------------------------------------------------ auth and scope

#[tokio::test]
async fn missing_or_unknown_token_is_401_with_www_authenticate() {
    let e = env().await;
    for r in [
        Req::rpc("tools/list", json!({})).without("authorization"),
        Req::rpc("tools/list", json!({})).token("not-a-real-token-123"),
    ] {
        let r = r.send(&e.dp).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        let www = r.headers.get("www-authenticate").unwrap().to_str().unwrap();
        assert!(
            www.starts_with("Bearer ")
                && www.ends_with(
                    "resource_metadata=\"http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp\""
                ),
            "{www}"
        );
        assert!(r.json()["error"]["code"].is_i64());
    }
    assert_eq!(
        e.dp.state
            .metrics
            .auth_failures
            .load(std::sync::atomic::Ordering::Relaxed),
        2
    );
}

#[tokio::test]
async fn bearer_scheme_is_case_insensitive_and_takes_one_space() {
    let e = env().await;
    for value in [format!("bearer {ALICE}"), format!("BEARER {ALICE}")] {
        let r = Req::rpc("tools/list", json!({}))
            .header("authorization", &value)
            .send(&e.dp)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{value}");
    }
    for value in [
        format!("Bearer  {ALICE}"),
        format!("Bearer{}{ALICE}", " ".repeat(100)),
        format!("Bearer {ALICE} extra"),
    ] {
        let r = Req::rpc("tools/list", json!({}))
            .header("authorization", &value)
            .send(&e.dp)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{value}");
    }
}

#[tokio::test]
async fn lists_are_filtered_by_scope_and_keep_unknown_fields() {
    let e = env().await;
    let r = Req::rpc("tools/list", json!({})).send(&e.dp).await;
    let names = r.tool_names();
    assert!(names.contains(&"gh__echo".to_string()) && names.contains(&"gh__odd".to_string()));
    assert!(!names.iter().any(|n| n.starts_with("jira__")), "{names:?}");
    // The definition reaches the client byte for byte apart from its name.
    assert!(
        r.text.contains(
            r#"{"name":"gh__odd","x-vendor":{"n":1.50,"s":"é"},"inputSchema":{"type":"object"}}"#
        ),
        "{}",
        r.text
    );

    let r = Req::rpc("tools/list", json!({}))
        .token(BOB)
        .send(&e.dp)
        .await;
    assert_eq!(r.tool_names(), vec!["gh__echo"]);
    let r = Req::rpc("prompts/list", json!({})).send(&e.dp).await;
    assert_eq!(r.json()["result"]["prompts"][0]["name"], "gh__greet");
    let r = Req::rpc("prompts/list", json!({}))
        .token(BOB)
        .send(&e.dp)
        .await;
    assert_eq!(r.json()["result"]["prompts"], json!([]));
}

#[tokio::test]
async fn out_of_scope_and_unknown_tools_get_the_same_error() {
    let e = env().await;
    let call =
        |name: &str| Req::rpc("tools/call", json!({"name": name, "arguments": {}})).token(BOB);
    let out_of_scope = call("gh__fail").send(&e.dp).await;
    let other_server = call("jira__create").send(&e.dp).await;
    let unknown = call("gh__nope").send(&e.dp).await;
    let garbage = call("nosuchthing").send(&e.dp).await;
    for (r, n) in [
        (&out_of_scope, "gh__fail"),
        (&other_server, "jira__create"),
        (&unknown, "gh__nope"),
        (&garbage, "nosuchthing"),
    ] {
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(
            r.text,
            format!(
                r#"{{"jsonrpc":"2.0","id":1,"error":{{"code":-32602,"message":"Unknown tool: {n}"}}}}"#
            )
        );
    }
    assert!(e
        .mock
        .seen
        .calls
        .lock()
        .unwrap()
        .iter()
        .all(|(_, m, _)| m != "tools/call"));
}

#[tokio::test]
async fn development_mode_needs_no_token_and_shows_everything() {
    let e = env_with(HttpSettings::default(), pb::Mode::Development).await;
    let r = Req::rpc("tools/list", json!({}))
        .without("authorization")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.tool_names().contains(&"jira__create".to_string()));
    let r = Req::modern("tools/list", json!({}))
        .without("authorization")
        .send(&e.dp)
        .await;
    assert_eq!(r.json()["result"]["cacheScope"], "public");
}

// ------------------------------------------------------------ forwarding

#[tokio::test]
async fn tools_call_forwards_original_name_and_relays_result_bytes() {
    let e = env().await;
    let body = r#"{"jsonrpc":"2.0","id":"abc-1","method":"tools/call","params":{"name":"gh__echo","arguments":{"n":1.50}}}"#;
    let r = Req::post(body).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        r.text,
        format!(
            r#"{{"jsonrpc":"2.0","id":"abc-1","result":{}}}"#,
            mock::ECHO_RESULT
        )
    );
    let calls = e.mock.seen.calls.lock().unwrap();
    let (auth, _, params) = calls.iter().find(|(_, m, _)| m == "tools/call").unwrap();
    assert_eq!(params["name"], "echo");
    assert_eq!(params["arguments"]["n"], 1.5);
    // The registered credential goes upstream, never the client's token.
    assert_eq!(auth.as_deref(), Some("Bearer upstream-secret"));
    assert!(calls
        .iter()
        .all(|(a, _, _)| a.as_deref() != Some(&format!("Bearer {ALICE}"))));
}

#[tokio::test]
async fn upstream_errors_are_relayed_and_failures_name_the_server() {
    let e = env().await;
    let r = Req::rpc("tools/call", json!({"name":"gh__fail"}))
        .send(&e.dp)
        .await;
    assert_eq!(
        r.text,
        r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32000,"message":"boom","data":{"why":"x"}}}"#
    );
    let started = std::time::Instant::now();
    let r = Req::rpc("tools/call", json!({"name":"down__x"}))
        .send(&e.dp)
        .await;
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    assert_eq!((r.status, r.error_code()), (StatusCode::OK, -32603));
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("down"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn prompts_get_forwards() {
    let e = env().await;
    let r = Req::rpc("prompts/get", json!({"name":"gh__greet"}))
        .send(&e.dp)
        .await;
    assert_eq!(
        r.text,
        r#"{"jsonrpc":"2.0","id":1,"result":{"messages":[],"x-p":true}}"#
    );
    let r = Req::rpc("prompts/get", json!({"name":"gh__greet"}))
        .token(BOB)
        .send(&e.dp)
        .await;
    assert_eq!(r.json()["error"]["message"], "Unknown prompt: gh__greet");
}

#[tokio::test]
async fn upstream_notifications_become_sse_when_accepted() {
    let e = env().await;
    let params = json!({"name":"gh__progress","_meta":{"progressToken":"tok-9"}});
    let r = Req::rpc("tools/call", params.clone()).send(&e.dp).await;
    assert_eq!(r.headers.get("content-type").unwrap(), "text/event-stream");
    let events: Vec<&str> = r.text.split("\n\n").filter(|s| !s.is_empty()).collect();
    assert_eq!(events.len(), 2, "{}", r.text);
    assert!(events[0].contains("notifications/progress") && events[0].contains("tok-9"));
    assert!(events[1].contains(r#""id":1"#) && events[1].contains("result"));
    let r = Req::rpc("tools/call", params)
        .header("accept", "application/json")
        .send(&e.dp)
        .await;
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    assert!(r.json()["result"].is_object());
}

#[tokio::test]
async fn notifications_past_the_call_limits_end_the_call_with_an_error_naming_the_server() {
    let settings = HttpSettings {
        call_limits: canopy_mcp::upstream::CallLimits {
            max_bytes: 1024 * 1024,
            max_notifications: 5,
            ..Default::default()
        },
        ..HttpSettings::default()
    };
    let e = env_with(settings, pb::Mode::Enterprise).await;
    let call = |steps: u64| {
        Req::rpc(
            "tools/call",
            json!({"name":"gh__progress","arguments":{"steps":steps},"_meta":{"progressToken":"t"}}),
        )
    };
    let events = |r: &Resp| -> Vec<Value> {
        r.text
            .split("\n\n")
            .filter(|s| !s.is_empty())
            .map(|ev| serde_json::from_str(ev.split_once("data: ").unwrap().1).unwrap())
            .collect()
    };

    // Within the limits: every notification, then the result.
    let r = call(3).send(&e.dp).await;
    assert_eq!(r.headers.get("content-type").unwrap(), "text/event-stream");
    let ev = events(&r);
    assert_eq!(ev.len(), 4, "{}", r.text);
    assert_eq!(ev[2]["params"]["progress"], 3);
    assert_eq!(ev[3]["result"]["content"], json!([]));

    // Past them: what was relayed, then an error naming the server, with the client's id.
    let r = call(50).send(&e.dp).await;
    let ev = events(&r);
    assert_eq!(ev.len(), 6, "{}", r.text);
    let last = &ev[5];
    assert_eq!(last["id"], 1);
    assert_eq!(last["error"]["code"], -32603);
    let msg = last["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("'gh'") && msg.contains("5 notifications"),
        "{msg}"
    );

    // A JSON-only client: notifications dropped, the same limits.
    let r = call(3)
        .header("accept", "application/json")
        .send(&e.dp)
        .await;
    assert_eq!(r.headers.get("content-type").unwrap(), "application/json");
    assert_eq!(r.json()["result"]["content"], json!([]));
    let r = call(50)
        .header("accept", "application/json")
        .send(&e.dp)
        .await;
    assert_eq!(r.error_code(), -32603);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'gh'"));
}

// ------------------------------------------------------------ per-server endpoint

#[tokio::test]
async fn per_server_endpoint_uses_unprefixed_names() {
    let e = env().await;
    let r = Req::rpc("tools/list", json!({}))
        .path("/servers/gh/mcp")
        .send(&e.dp)
        .await;
    let names = r.tool_names();
    assert!(
        names.contains(&"echo".to_string()) && !names.iter().any(|n| n.contains("__")),
        "{names:?}"
    );
    let r = Req::rpc("tools/list", json!({}))
        .path("/servers/gh/mcp")
        .token(BOB)
        .send(&e.dp)
        .await;
    assert_eq!(r.tool_names(), vec!["echo"]);
    let r = Req::rpc("tools/call", json!({"name":"echo"}))
        .path("/servers/gh/mcp")
        .send(&e.dp)
        .await;
    assert_eq!(r.json()["result"]["x-unknown"]["keep"][1], 2.5);
    let r = Req::rpc("tools/call", json!({"name":"gh__echo"}))
        .path("/servers/gh/mcp")
        .send(&e.dp)
        .await;
    assert_eq!(r.error_code(), -32602);
    let r = Req::rpc("tools/call", json!({"name":"fail"}))
        .path("/servers/gh/mcp")
        .token(BOB)
        .send(&e.dp)
        .await;
    assert_eq!(r.json()["error"]["message"], "Unknown tool: fail");

    let unknown = Req::rpc("tools/list", json!({}))
        .path("/servers/nope/mcp")
        .send(&e.dp)
        .await;
    let hidden = Req::rpc("tools/list", json!({}))
        .path("/servers/jira/mcp")
        .token(BOB)
        .send(&e.dp)
        .await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(hidden.status, StatusCode::NOT_FOUND);
    assert_eq!(hidden.json()["error"]["message"], "Unknown server: jira");
    let unauth = Req::rpc("tools/list", json!({}))
        .path("/servers/gh/mcp")
        .without("authorization")
        .send(&e.dp)
        .await;
    assert_eq!(unauth.status, StatusCode::UNAUTHORIZED);
    let mut get = Req::post("").path("/servers/gh/mcp");
    get.method = "GET";
    assert_eq!(get.send(&e.dp).await.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn resources_and_completion_pass_through_on_a_whole_server_only() {
    let e = env().await;
    let read = || Req::rpc("resources/read", json!({"uri":"test://b"}));
    let r = read().path("/servers/gh/mcp").send(&e.dp).await;
    assert_eq!(
        r.text,
        format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{}}}"#,
            mock::RESOURCE_RESULT
        )
    );
    let seen = e.mock.seen.calls.lock().unwrap().clone();
    assert!(seen
        .iter()
        .any(|(_, m, p)| m == "resources/read" && p["uri"] == "test://b"));
    // The upstream's own errors are relayed (the mock has no completions).
    let r = Req::rpc("completion/complete", json!({}))
        .path("/servers/gh/mcp")
        .send(&e.dp)
        .await;
    assert_eq!(r.error_code(), -32601);
    // A client allowed single tools of the server does not reach its resources.
    let r = read().path("/servers/gh/mcp").token(BOB).send(&e.dp).await;
    assert_eq!(r.error_code(), -32601);
    // The aggregate endpoint has no resources (URIs are not namespaced per server).
    assert_eq!(read().send(&e.dp).await.error_code(), -32601);
    // 2026-07-28: the relayed result gets resultType and the serverInfo stamp.
    let r = Req::modern("resources/read", json!({"uri":"test://b"}))
        .header("mcp-name", "test://b")
        .path("/servers/gh/mcp")
        .send(&e.dp)
        .await;
    let v = r.json();
    assert_eq!(v["result"]["resultType"], "complete", "{}", r.text);
    assert_eq!(v["result"]["contents"][0]["blob"], "iVBORw0K");
    let r = Req::modern("resources/list", json!({})).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

// ------------------------------------------------------------ 2026-07-28

#[tokio::test]
async fn server_discover() {
    let e = env().await;
    let r = Req::modern("server/discover", json!({})).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json()["result"].clone();
    assert!(v["supportedVersions"]
        .as_array()
        .unwrap()
        .contains(&json!(MODERN)));
    assert_eq!(v["resultType"], "complete");
    assert!(v["ttlMs"].is_u64());
    assert!(v["cacheScope"].is_string());
    assert_eq!(v["capabilities"]["tools"]["listChanged"], false);
    assert_eq!(
        v["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "canopy"
    );
}

#[tokio::test]
async fn modern_meta_is_checked_first() {
    let e = env().await;
    let no_meta = Req::rpc("tools/list", json!({}))
        .header("mcp-protocol-version", MODERN)
        .header("mcp-method", "tools/list");
    let r = no_meta.send(&e.dp).await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, -32602)
    );
    // _meta is checked before the headers: missing both still says -32602.
    let r = Req::rpc("tools/list", json!({}))
        .header("mcp-protocol-version", MODERN)
        .send(&e.dp)
        .await;
    assert_eq!(r.error_code(), -32602);
    let bad_caps = Req::rpc(
        "tools/list",
        json!({"_meta":{"io.modelcontextprotocol/protocolVersion":MODERN,"io.modelcontextprotocol/clientCapabilities":3}}),
    )
    .header("mcp-protocol-version", MODERN)
    .header("mcp-method", "tools/list");
    assert_eq!(bad_caps.send(&e.dp).await.error_code(), -32602);
}

#[tokio::test]
async fn modern_headers_must_match_the_body() {
    let e = env().await;
    let cases = [
        Req::modern("tools/list", json!({})).without("mcp-method"),
        Req::modern("tools/list", json!({})).header("mcp-method", "TOOLS/LIST"),
        Req::modern("tools/list", json!({})).header("mcp-method", "prompts/list"),
        Req::modern("tools/call", json!({"name":"gh__echo"})).without("mcp-name"),
        Req::modern("tools/call", json!({"name":"gh__echo"})).header("mcp-name", "gh__fail"),
        Req::modern("tools/call", json!({"name":"gh__echo"})).header("mcp-name", "=?base64?!!!?="),
        Req::modern("prompts/get", json!({"name":"gh__greet"})).header("mcp-name", "x"),
        Req::modern("tools/list", json!({})).header("mcp-protocol-version", "2025-13-01"),
    ];
    for (i, c) in cases.into_iter().enumerate() {
        let r = c.send(&e.dp).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::BAD_REQUEST, -32020),
            "case {i}: {}",
            r.text
        );
    }
    // Whitespace around values is tolerated; the base64 form is decoded.
    let r = Req::modern("tools/list", json!({}))
        .header("mcp-method", "  tools/list\t")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = Req::modern("tools/call", json!({"name":"gh__echo"}))
        .header("mcp-name", "=?base64?Z2hfX2VjaG8=?=")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = Req::modern("tools/call", json!({"name":"gh__echo"}))
        .header("mcp-protocol-version", " 2026-07-28 ")
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

#[tokio::test]
async fn modern_unsupported_version_lists_supported() {
    let e = env().await;
    let mut params = json!({});
    params["_meta"] = json!({"io.modelcontextprotocol/protocolVersion":"2099-01-01","io.modelcontextprotocol/clientCapabilities":{}});
    let r = Req::rpc("tools/list", params)
        .header("mcp-protocol-version", "2099-01-01")
        .header("mcp-method", "tools/list")
        .send(&e.dp)
        .await;
    assert_eq!(
        (r.status, r.error_code()),
        (StatusCode::BAD_REQUEST, -32022)
    );
    let data = &r.json()["error"]["data"];
    assert_eq!(data["requested"], "2099-01-01");
    assert!(data["supported"]
        .as_array()
        .unwrap()
        .contains(&json!(MODERN)));
}

#[tokio::test]
async fn modern_removed_methods_are_404() {
    let e = env().await;
    for m in [
        "initialize",
        "ping",
        "logging/setLevel",
        "resources/subscribe",
        "nope/nope",
    ] {
        let r = Req::modern(m, json!({})).send(&e.dp).await;
        assert_eq!(
            (r.status, r.error_code()),
            (StatusCode::NOT_FOUND, -32601),
            "{m}"
        );
    }
}

#[tokio::test]
async fn modern_lists_carry_ttl_and_private_scope() {
    let e = env().await;
    let r = Req::modern("tools/list", json!({})).send(&e.dp).await;
    let v = r.json()["result"].clone();
    assert_eq!(v["resultType"], "complete");
    assert_eq!(v["cacheScope"], "private");
    assert!(v["ttlMs"].as_u64().unwrap() > 0);
    assert_eq!(
        v["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "canopy"
    );
    assert!(r.text.contains(r#""x-vendor":{"n":1.50,"s":"é"}"#));
    let r = Req::modern("prompts/list", json!({})).send(&e.dp).await;
    assert_eq!(r.json()["result"]["cacheScope"], "private");
}

#[tokio::test]
async fn modern_results_get_result_type_and_stamp() {
    let e = env().await;
    let r = Req::modern("tools/call", json!({"name":"gh__echo"}))
        .send(&e.dp)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let v = r.json()["result"].clone();
    assert_eq!(v["resultType"], "complete");
    assert_eq!(
        v["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "canopy"
    );
    assert!(
        r.text.contains(r#""x-unknown":{"keep":[1,2.50,"é"]}"#),
        "{}",
        r.text
    );
    // input_required from upstream passes unchanged.
    let r = Req::modern("tools/call", json!({"name":"gh__input"}))
        .send(&e.dp)
        .await;
    assert_eq!(r.json()["result"]["resultType"], "input_required");
    assert!(r
        .text
        .contains(r#""inputRequests":{"a":{"method":"elicitation/create"}}"#));
    // Out of scope is the same -32602 in the modern era too.
    let r = Req::modern("tools/call", json!({"name":"jira__create"}))
        .send(&e.dp)
        .await;
    assert_eq!((r.status, r.error_code()), (StatusCode::OK, -32602));
}

// ------------------------------------------------------------ readiness and ops

#[tokio::test]
async fn not_ready_until_state_and_stale_beyond_max() {
    let dp = DataPlane::new(HttpSettings::default());
    let r = Req::rpc("tools/list", json!({})).send(&dp).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    let mut ready = Req::post("").path("/readyz");
    ready.method = "GET";
    assert_eq!(
        ready.send(&dp).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let mut health = Req::post("").path("/healthz");
    health.method = "GET";
    assert_eq!(health.send(&dp).await.status, StatusCode::OK);

    let settings = HttpSettings {
        max_staleness: Some(std::time::Duration::from_millis(1)),
        ..Default::default()
    };
    let e = env_with(settings, pb::Mode::Enterprise).await;
    e.dp.state.status.set_last_contact(0);
    let r = Req::rpc("tools/list", json!({})).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    e.dp.state.status.set_connected(true);
    let r = Req::rpc("tools/list", json!({})).send(&e.dp).await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn readyz_and_metrics_report_sync_and_requests() {
    let e = env().await;
    Req::rpc("tools/list", json!({})).send(&e.dp).await;
    Req::rpc("tools/call", json!({"name":"gh__echo"}))
        .send(&e.dp)
        .await;
    let mut ready = Req::post("").path("/readyz");
    ready.method = "GET";
    let r = ready.send(&e.dp).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.json()["revision"], 7);
    assert!(r.json()["staleness_seconds"].is_number());
    let mut m = Req::post("").path("/metrics");
    m.method = "GET";
    let r = m.send(&e.dp).await;
    assert!(
        r.text
            .contains(r#"canopy_requests_total{method="tools/list",status="200"} 1"#),
        "{}",
        r.text
    );
    assert!(
        r.text
            .contains(r#"canopy_upstream_request_duration_seconds_count{server="gh"} 1"#),
        "{}",
        r.text
    );
    assert!(r.text.contains("canopy_sync_applied_revision 7"));
    assert!(r.text.contains("canopy_sync_staleness_seconds"));
}
