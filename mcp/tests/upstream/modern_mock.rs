//! A 2026-07-28-only server that validates `_meta` and the SEP-2243 headers like a
//! strict upstream, and serves definitions whose bytes must survive unchanged.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use canopy_mcp::upstream::Upstream;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

use crate::support::{http_cfg, raw, serve};

/// Served verbatim: `2.50` and the key order would not survive a parse/re-serialize.
pub const TOOL_DEF: &str = r#"{"name":"héllo","description":"greets","inputSchema":{"type":"object"},"x-vendor":{"keep":[1,2.50],"z":null,"a":true}}"#;
pub const CALL_RESULT: &str = r#"{"content":[{"type":"text","text":"hi"}],"resultType":"complete","x-extra":{"n":1.0e3,"b":"ü"}}"#;

#[derive(Default)]
struct Seen {
    bodies: Vec<Value>,
    headers: Vec<HeaderMap>,
}

fn err(status: StatusCode, id: &Value, code: i64, msg: &str) -> Response {
    (
        status,
        axum::Json(json!({"jsonrpc":"2.0","id":id,"error":{"code":code,"message":msg}})),
    )
        .into_response()
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

fn expected_name(v: &str) -> String {
    use base64::Engine as _;
    if v.is_ascii() {
        v.to_owned()
    } else {
        format!(
            "=?base64?{}?=",
            base64::engine::general_purpose::STANDARD.encode(v)
        )
    }
}

async fn mcp(State(seen): State<Arc<Mutex<Seen>>>, headers: HeaderMap, body: String) -> Response {
    let msg: Value = serde_json::from_str(&body).unwrap();
    let id = msg["id"].clone();
    let method = msg["method"].as_str().unwrap_or_default().to_owned();
    {
        let mut s = seen.lock().unwrap();
        s.bodies.push(msg.clone());
        s.headers.push(headers.clone());
    }
    if header(&headers, "authorization") != Some("Bearer modern-secret")
        || header(&headers, "x-api-key") != Some("k1")
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let meta = &msg["params"]["_meta"];
    if meta["io.modelcontextprotocol/protocolVersion"] != "2026-07-28"
        || !meta["io.modelcontextprotocol/clientCapabilities"].is_object()
    {
        return err(StatusCode::BAD_REQUEST, &id, -32602, "bad _meta");
    }
    if header(&headers, "mcp-protocol-version") != Some("2026-07-28")
        || header(&headers, "mcp-method") != Some(method.as_str())
    {
        return err(StatusCode::BAD_REQUEST, &id, -32020, "header mismatch");
    }
    let name_field = match method.as_str() {
        "tools/call" | "prompts/get" => Some(msg["params"]["name"].as_str().unwrap_or_default()),
        "resources/read" => Some(msg["params"]["uri"].as_str().unwrap_or_default()),
        _ => None,
    };
    if let Some(n) = name_field {
        if header(&headers, "mcp-name") != Some(expected_name(n).as_str()) {
            return err(StatusCode::BAD_REQUEST, &id, -32020, "Mcp-Name mismatch");
        }
    }
    let id_text = id.to_string();
    let result = match method.as_str() {
        "server/discover" => r#"{"supportedVersions":["2026-07-28"],"capabilities":{"tools":{}},"resultType":"complete","ttlMs":0,"cacheScope":"public"}"#.to_owned(),
        "tools/list" => format!(r#"{{"tools":[{TOOL_DEF}],"resultType":"complete","ttlMs":0,"cacheScope":"public"}}"#),
        "tools/call" if msg["params"]["name"] == "héllo" => CALL_RESULT.to_owned(),
        "tools/call" if msg["params"]["name"] == "slow" => {
            // Progress first, then the result, as an SSE response.
            let token = msg["params"]["_meta"]["progressToken"].clone();
            let note = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":token,"progress":1}});
            let body = format!(
                "event: message\ndata: {note}\n\nevent: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id_text},\"result\":{CALL_RESULT}}}\n\n"
            );
            return ([("content-type", "text/event-stream")], body).into_response();
        }
        "tools/call" => return err(StatusCode::OK, &id, -32602, "unknown tool"),
        _ => return err(StatusCode::NOT_FOUND, &id, -32601, "method not found"),
    };
    let body = format!(r#"{{"jsonrpc":"2.0","id":{id_text},"result":{result}}}"#);
    ([("content-type", "application/json")], body).into_response()
}

async fn spawn() -> (Upstream, Arc<Mutex<Seen>>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let router = axum::Router::new()
        .route("/mcp", axum::routing::post(mcp))
        .with_state(Arc::clone(&seen));
    let base = serve(router).await;
    let mut cfg = http_cfg("modern", format!("{base}/mcp"));
    cfg.bearer_token = Some("modern-secret".into());
    cfg.headers.insert("X-Api-Key".into(), "k1".into());
    (Upstream::new(cfg), seen)
}

#[tokio::test]
async fn discovers_in_modern_mode_and_keeps_definition_bytes() {
    let (up, seen) = spawn().await;
    let d = up.discover().await.unwrap();
    assert_eq!(d.protocol_version, "2026-07-28");
    assert_eq!(d.tools.len(), 1);
    assert_eq!(d.tools[0].get(), TOOL_DEF);
    assert!(
        d.prompts.is_empty(),
        "no prompts capability → no prompts/list"
    );
    let s = seen.lock().unwrap();
    let methods: Vec<&str> = s
        .bodies
        .iter()
        .map(|b| b["method"].as_str().unwrap())
        .collect();
    assert_eq!(
        methods,
        vec!["server/discover", "tools/list"],
        "no initialize, no prompts/list"
    );
}

#[tokio::test]
async fn call_gets_meta_headers_and_result_bytes() {
    let (up, seen) = spawn().await;
    let params = raw(r#"{"name":"héllo","arguments":{"x":[1,2]}}"#);
    let r = up.request("tools/call", Some(&params), None).await.unwrap();
    assert_eq!(r.outcome.unwrap().get(), CALL_RESULT);
    assert!(r.notifications.is_empty());
    let s = seen.lock().unwrap();
    let last = s.bodies.last().unwrap();
    assert_eq!(last["params"]["arguments"], json!({"x":[1,2]}));
    assert!(last["id"].is_u64(), "the gateway's own numeric id");
}

#[tokio::test]
async fn sse_reply_collects_progress_before_the_result() {
    let (up, _seen) = spawn().await;
    let params = raw(r#"{"name":"slow","_meta":{"progressToken":"tok-1"}}"#);
    let r = up.request("tools/call", Some(&params), None).await.unwrap();
    assert_eq!(r.outcome.unwrap().get(), CALL_RESULT);
    assert_eq!(r.notifications.len(), 1);
    let note: Value = serde_json::from_str(r.notifications[0].get()).unwrap();
    assert_eq!(note["method"], "notifications/progress");
    assert_eq!(note["params"]["progressToken"], "tok-1");
}

#[tokio::test]
async fn protocol_errors_with_http_status_are_relayed_as_jsonrpc_errors() {
    let (up, _seen) = spawn().await;
    let r = up
        .request("resources/templates/list", None, None)
        .await
        .unwrap();
    assert_eq!(r.outcome.unwrap_err().code, -32601);
    let r = up
        .request("tools/call", Some(&raw(r#"{"name":"other"}"#)), None)
        .await
        .unwrap();
    assert_eq!(r.outcome.unwrap_err().code, -32602);
}

#[tokio::test]
async fn concurrent_callers_get_their_own_answers() {
    let (up, seen) = spawn().await;
    let calls = (0..12).map(|_| {
        let up = up.clone();
        async move {
            up.request("tools/call", Some(&raw(r#"{"name":"héllo"}"#)), None)
                .await
                .unwrap()
        }
    });
    for r in futures::future::join_all(calls).await {
        assert_eq!(r.outcome.unwrap().get(), CALL_RESULT);
    }
    let s = seen.lock().unwrap();
    let discovers = s
        .bodies
        .iter()
        .filter(|b| b["method"] == "server/discover")
        .count();
    assert_eq!(
        discovers, 1,
        "era selection happens once for all concurrent first callers"
    );
    let mut ids: Vec<u64> = s.bodies.iter().map(|b| b["id"].as_u64().unwrap()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), s.bodies.len(), "every request got its own id");
}
