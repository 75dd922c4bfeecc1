#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! A minimal handshake-era MCP upstream on 127.0.0.1:0 for router tests: JSON answers,
//! one SSE answer (`progress`), and a record of what it received.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub struct Seen {
    /// (authorization header, method, params) of every request.
    pub calls: Mutex<Vec<(Option<String>, String, Value)>>,
}

pub struct Mock {
    pub url: String,
    pub seen: Arc<Seen>,
}

/// A result with a field no MCP schema knows, odd number formatting included.
pub const ECHO_RESULT: &str = r#"{"content":[{"type":"text","text":"hi"}],"x-unknown":{"keep":[1,2.50,"é"]},"isError":false}"#;

/// A `resources/read` result, relayed byte for byte on `/servers/<name>/mcp`.
pub const RESOURCE_RESULT: &str =
    r#"{"contents":[{"uri":"test://b","mimeType":"image/png","blob":"iVBORw0K"}],"x-r":1.50}"#;

async fn handle(State(seen): State<Arc<Seen>>, headers: HeaderMap, body: Bytes) -> Response {
    let Ok(msg) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let method = msg["method"].as_str().unwrap_or_default().to_owned();
    let id = msg.get("id").cloned();
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    seen.calls
        .lock()
        .unwrap()
        .push((auth, method.clone(), msg["params"].clone()));
    let Some(id) = id else {
        return StatusCode::ACCEPTED.into_response();
    };
    let reply = |result: &str| {
        let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{result}}}"#);
        ([("content-type", "application/json")], body).into_response()
    };
    match method.as_str() {
        "initialize" => reply(
            r#"{"protocolVersion":"2025-06-18","capabilities":{"tools":{},"prompts":{}},"serverInfo":{"name":"mock","version":"1"}}"#,
        ),
        "tools/call" => match msg["params"]["name"].as_str() {
            Some("echo") => reply(ECHO_RESULT),
            Some("progress") => {
                let token = msg["params"]["_meta"]["progressToken"].clone();
                let steps = msg["params"]["arguments"]["steps"].as_u64().unwrap_or(1);
                let mut body = String::new();
                for step in 1..=steps {
                    let note = json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":token,"progress":step}});
                    body.push_str(&format!("event: message\ndata: {note}\n\n"));
                }
                body.push_str(&format!(
                    "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[]}}}}\n\n"
                ));
                ([("content-type", "text/event-stream")], body).into_response()
            }
            Some("input") => reply(
                r#"{"resultType":"input_required","inputRequests":{"a":{"method":"elicitation/create"}}}"#,
            ),
            Some("fail") => {
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32000,"message":"boom","data":{{"why":"x"}}}}}}"#
                );
                ([("content-type", "application/json")], body).into_response()
            }
            _ => reply(r#"{"content":[],"isError":true}"#),
        },
        "prompts/get" => reply(r#"{"messages":[],"x-p":true}"#),
        "resources/read" => reply(RESOURCE_RESULT),
        _ => {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":-32601,"message":"Method not found"}}}}"#
            );
            ([("content-type", "application/json")], body).into_response()
        }
    }
}

pub async fn start() -> Mock {
    let seen = Arc::new(Seen::default());
    let app = Router::new()
        .route("/mcp", post(handle))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Mock {
        url: format!("http://{addr}/mcp"),
        seen,
    }
}
