//! A legacy HTTP+SSE (2024-11-05) server: GET /sse streams an `endpoint` event and then
//! every response; POST /messages accepts requests with 202.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::IntoResponse;
use canopy_mcp::upstream::{Upstream, UpstreamConfig, UpstreamError};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;

use crate::support::{names, raw, result_json, serve};

#[derive(Default)]
struct Mock {
    gets: AtomicUsize,
    stream: Mutex<Option<mpsc::UnboundedSender<String>>>,
    /// Replies the client sent to our server-to-client requests.
    client_replies: Mutex<Vec<Value>>,
    /// Held back `ask` call waiting for the client's reply.
    waiting_ask: Mutex<Option<Value>>,
}

async fn sse(State(m): State<Arc<Mock>>) -> impl IntoResponse {
    m.gets.fetch_add(1, Ordering::SeqCst);
    let (tx, rx) = mpsc::unbounded_channel::<String>();
    *m.stream.lock().unwrap() = Some(tx);
    let first = futures::stream::once(async {
        Ok::<_, Infallible>(
            Event::default()
                .event("endpoint")
                .data("/messages?session_id=abc"),
        )
    });
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        let data = rx.recv().await?;
        Some((
            Ok::<_, Infallible>(Event::default().event("message").data(data)),
            rx,
        ))
    });
    Sse::new(futures::StreamExt::chain(first, rest))
}

fn push(m: &Mock, v: Value) {
    if let Some(tx) = m.stream.lock().unwrap().as_ref() {
        let _ = tx.send(v.to_string());
    }
}

async fn messages(State(m): State<Arc<Mock>>, body: String) -> StatusCode {
    let msg: Value = serde_json::from_str(&body).unwrap();
    let id = msg["id"].clone();
    let Some(method) = msg["method"].as_str() else {
        // A reply to our server-to-client request: answer the held `ask` call.
        m.client_replies.lock().unwrap().push(msg.clone());
        if let Some(ask_id) = m.waiting_ask.lock().unwrap().take() {
            let code = msg["error"]["code"].clone();
            push(
                &m,
                json!({"jsonrpc":"2.0","id":ask_id,"result":{"content":[{"type":"text","text":format!("refused {code}")}]}}),
            );
        }
        return StatusCode::ACCEPTED;
    };
    let result = match method {
        "initialize" => {
            json!({"protocolVersion":"2024-11-05","capabilities":{"tools":{},"prompts":{}},"serverInfo":{"name":"legacy","version":"1"}})
        }
        "notifications/initialized" => return StatusCode::ACCEPTED,
        "tools/list" => {
            json!({"tools":[{"name":"echo","inputSchema":{"type":"object"}},{"name":"ask","inputSchema":{"type":"object"}}]})
        }
        "prompts/list" => json!({"prompts":[{"name":"greet","x-custom":1}]}),
        "tools/call" => match msg["params"]["name"].as_str() {
            Some("echo") => {
                if let Some(token) = msg["params"]["_meta"].get("progressToken") {
                    push(
                        &m,
                        json!({"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":token,"progress":0.5}}),
                    );
                }
                json!({"content":[{"type":"text","text":msg["params"]["arguments"]["text"]}]})
            }
            Some("ask") => {
                *m.waiting_ask.lock().unwrap() = Some(id.clone());
                push(
                    &m,
                    json!({"jsonrpc":"2.0","id":"srv-1","method":"sampling/createMessage","params":{}}),
                );
                return StatusCode::ACCEPTED;
            }
            Some("drop") => {
                // Close the stream without answering.
                m.stream.lock().unwrap().take();
                return StatusCode::ACCEPTED;
            }
            _ => return StatusCode::BAD_REQUEST,
        },
        _ => return StatusCode::BAD_REQUEST,
    };
    push(&m, json!({"jsonrpc":"2.0","id":id,"result":result}));
    StatusCode::ACCEPTED
}

async fn spawn() -> (Upstream, Arc<Mock>) {
    let mock = Arc::new(Mock::default());
    let router = axum::Router::new()
        .route("/sse", axum::routing::get(sse))
        .route("/messages", axum::routing::post(messages))
        .with_state(Arc::clone(&mock));
    let base = serve(router).await;
    let mut cfg = UpstreamConfig::sse("legacy", format!("{base}/sse"));
    cfg.timeout = Duration::from_secs(20);
    (Upstream::new(cfg), mock)
}

#[tokio::test]
async fn discover_and_call_over_legacy_sse() {
    let (up, _mock) = spawn().await;
    let d = up.discover().await.unwrap();
    assert_eq!(d.protocol_version, "2024-11-05");
    assert_eq!(names(&d.tools), vec!["ask", "echo"]);
    assert_eq!(d.prompts.len(), 1);
    assert_eq!(d.prompts[0].get(), r#"{"name":"greet","x-custom":1}"#);

    let calls = (0..8).map(|i| {
        let up = up.clone();
        async move {
            let p = raw(&format!(r#"{{"name":"echo","arguments":{{"text":"m{i}"}},"_meta":{{"progressToken":"p{i}"}}}}"#));
            let r = up.request("tools/call", Some(&p), None).await.unwrap();
            assert_eq!(result_json(&r)["content"][0]["text"], format!("m{i}"));
            assert_eq!(r.notifications.len(), 1, "own progress only");
            let n: Value = serde_json::from_str(r.notifications[0].get()).unwrap();
            assert_eq!(n["params"]["progressToken"], format!("p{i}"));
        }
    });
    futures::future::join_all(calls).await;
    up.shutdown().await;
}

#[tokio::test]
async fn server_requests_are_refused_with_method_not_found() {
    let (up, mock) = spawn().await;
    let r = up
        .request("tools/call", Some(&raw(r#"{"name":"ask"}"#)), None)
        .await
        .unwrap();
    assert_eq!(result_json(&r)["content"][0]["text"], "refused -32601");
    let replies = mock.client_replies.lock().unwrap();
    assert_eq!(replies[0]["id"], "srv-1");
}

#[tokio::test]
async fn stream_end_fails_pending_and_reconnects() {
    let (up, mock) = spawn().await;
    let err = up
        .request("tools/call", Some(&raw(r#"{"name":"drop"}"#)), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, UpstreamError::Unreachable { ref server, .. } if server == "legacy"),
        "{err:?}"
    );
    let r = up
        .request(
            "tools/call",
            Some(&raw(r#"{"name":"echo","arguments":{"text":"back"}}"#)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(result_json(&r)["content"][0]["text"], "back");
    assert_eq!(mock.gets.load(Ordering::SeqCst), 2);
}
