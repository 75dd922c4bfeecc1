//! A handshake-era server with sessions: rejects `server/discover`, pages `tools/list`,
//! lacks `prompts/list` though it declares prompts, and can expire its session.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use canopy_mcp::upstream::{Upstream, UpstreamError};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use crate::support::{http_cfg, names, raw, result_json, serve};

#[derive(Default)]
struct Mock {
    inits: AtomicUsize,
    initialized_notes: AtomicUsize,
    session: Mutex<Option<String>>,
    expire: AtomicBool,
    looping: bool,
}

fn reply(id: &Value, result: Value) -> Response {
    axum::Json(json!({"jsonrpc":"2.0","id":id,"result":result})).into_response()
}

async fn mcp(State(m): State<Arc<Mock>>, headers: HeaderMap, body: String) -> Response {
    let msg: Value = serde_json::from_str(&body).unwrap();
    let id = msg["id"].clone();
    let method = msg["method"].as_str().unwrap_or_default();
    if method == "server/discover" {
        return (StatusCode::BAD_REQUEST, "unsupported").into_response();
    }
    if method == "initialize" {
        assert!(
            headers.get("mcp-protocol-version").is_none(),
            "initialize goes without the version header"
        );
        assert_eq!(msg["params"]["protocolVersion"], "2025-11-25");
        let n = m.inits.fetch_add(1, Ordering::SeqCst) + 1;
        let sid = format!("session-{n}");
        *m.session.lock().unwrap() = Some(sid.clone());
        m.expire.store(false, Ordering::SeqCst);
        let result = json!({"protocolVersion":"2025-06-18","capabilities":{"tools":{},"prompts":{}},"serverInfo":{"name":"mock","version":"1"}});
        return ([("mcp-session-id", sid)], reply(&id, result)).into_response();
    }
    let sid = headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let current = m.session.lock().unwrap().clone();
    if sid.is_none() || sid != current || m.expire.load(Ordering::SeqCst) {
        return (StatusCode::NOT_FOUND, "session expired").into_response();
    }
    assert_eq!(
        headers.get("mcp-protocol-version").unwrap(),
        "2025-06-18",
        "negotiated version on every request"
    );
    if method == "notifications/initialized" {
        m.initialized_notes.fetch_add(1, Ordering::SeqCst);
        return StatusCode::ACCEPTED.into_response();
    }
    match method {
        "tools/list" => {
            let cursor = msg["params"]["cursor"].as_str().unwrap_or("");
            let (tool, next) = match cursor {
                _ if m.looping => ("t", Some("again")),
                "" => ("t1", Some("c2")),
                "c2" => ("t2", Some("c3")),
                "c3" => ("t3", None),
                _ => panic!("unknown cursor {cursor}"),
            };
            let mut result = json!({"tools":[{"name":tool,"inputSchema":{"type":"object"}}]});
            if let Some(n) = next {
                result["nextCursor"] = json!(n);
            }
            reply(&id, result)
        }
        "prompts/list" => {
            axum::Json(json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"nope"}}))
                .into_response()
        }
        "tools/call" => reply(
            &id,
            json!({"content":[{"type":"text","text":msg["params"]["name"]}]}),
        ),
        _ => axum::Json(json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"nope"}}))
            .into_response(),
    }
}

async fn spawn(looping: bool) -> (Upstream, Arc<Mock>) {
    let mock = Arc::new(Mock {
        looping,
        ..Mock::default()
    });
    let router = axum::Router::new()
        .route("/mcp", axum::routing::post(mcp))
        .with_state(Arc::clone(&mock));
    let base = serve(router).await;
    (
        Upstream::new(http_cfg("classic", format!("{base}/mcp"))),
        mock,
    )
}

#[tokio::test]
async fn falls_back_to_handshake_and_follows_pagination() {
    let (up, mock) = spawn(false).await;
    let d = up.discover().await.unwrap();
    assert_eq!(d.protocol_version, "2025-06-18");
    assert_eq!(names(&d.tools), vec!["t1", "t2", "t3"]);
    assert!(
        d.prompts.is_empty(),
        "-32601 on prompts/list means no prompts"
    );
    assert_eq!(mock.inits.load(Ordering::SeqCst), 1);
    assert_eq!(mock.initialized_notes.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn expired_session_is_reinitialized_once() {
    let (up, mock) = spawn(false).await;
    let call = raw(r#"{"name":"x"}"#);
    let r = up.request("tools/call", Some(&call), None).await.unwrap();
    assert_eq!(result_json(&r)["content"][0]["text"], "x");
    mock.expire.store(true, Ordering::SeqCst);
    let r = up.request("tools/call", Some(&call), None).await.unwrap();
    assert_eq!(result_json(&r)["content"][0]["text"], "x");
    assert_eq!(mock.inits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn concurrent_first_callers_share_one_handshake() {
    let (up, mock) = spawn(false).await;
    let calls = (0..10).map(|_| {
        let up = up.clone();
        async move {
            up.request("tools/call", Some(&raw(r#"{"name":"y"}"#)), None)
                .await
                .unwrap()
        }
    });
    futures::future::join_all(calls).await;
    assert_eq!(mock.inits.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn looping_pagination_is_an_error() {
    let (up, _mock) = spawn(true).await;
    match up.discover().await {
        Err(UpstreamError::Protocol { server, reason }) => {
            assert_eq!(server, "classic");
            assert!(reason.contains("cursor"), "{reason}");
        }
        other => panic!("expected a protocol error, got {other:?}"),
    }
}
