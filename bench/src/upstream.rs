//! The bench upstream: a minimal, fast, stateless MCP server (hand-written axum JSON-RPC,
//! JSON responses only, no sessions): `initialize`, `notifications/*` (202), `ping`,
//! `server/discover` (unless handshake-only), `tools/list` (50 tools), `prompts/list`
//! (empty) and `tools/call echo`. Served by `canopy-bench-upstream` and, in-process, by
//! the criterion benches.

use axum::body::Bytes;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::Arc;

use crate::fixture::{self, MODERN};

/// The upstream's routes (`POST /mcp`; GET/DELETE → 405).
pub fn router(handshake_only: bool) -> Router {
    let wire = Arc::new(Wire {
        tools: fixture::tools_array(),
        handshake_only,
    });
    Router::new()
        .route("/mcp", post(mcp).get(not_allowed).delete(not_allowed))
        .with_state(wire)
}

async fn not_allowed() -> StatusCode {
    StatusCode::METHOD_NOT_ALLOWED
}

struct Wire {
    tools: String,
    handshake_only: bool,
}

#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    method: &'a str,
    #[serde(borrow)]
    params: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct CallParams<'a> {
    #[serde(borrow)]
    name: &'a str,
    #[serde(borrow)]
    arguments: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct EchoArgs<'a> {
    #[serde(borrow)]
    message: Option<&'a RawValue>,
}

fn json(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn reply(id: &RawValue, result: &str) -> Response {
    json(
        StatusCode::OK,
        format!(r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#, id.get()),
    )
}

fn error(id: Option<&RawValue>, code: i32, message: &str) -> Response {
    let id = id.map_or("null", RawValue::get);
    let msg = serde_json::to_string(message).unwrap_or_else(|_| "\"error\"".into());
    json(
        StatusCode::OK,
        format!(r#"{{"jsonrpc":"2.0","id":{id},"error":{{"code":{code},"message":{msg}}}}}"#),
    )
}

const SERVER_INFO: &str = r#"{"name":"canopy-bench-upstream","version":"1"}"#;

async fn mcp(
    axum::extract::State(w): axum::extract::State<Arc<Wire>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Ok(env) = serde_json::from_slice::<Envelope<'_>>(&body) else {
        return error(None, -32700, "parse error");
    };
    let Some(id) = env.id else {
        return StatusCode::ACCEPTED.into_response();
    };
    let modern = headers
        .get("mcp-protocol-version")
        .is_some_and(|v| v.as_bytes() == MODERN.as_bytes());
    let tail = if modern {
        r#","resultType":"complete""#
    } else {
        ""
    };
    match env.method {
        "initialize" => {
            #[derive(Deserialize)]
            struct Init<'a> {
                #[serde(rename = "protocolVersion")]
                version: Option<&'a str>,
            }
            let asked = env
                .params
                .and_then(|p| serde_json::from_str::<Init<'_>>(p.get()).ok())
                .and_then(|i| i.version);
            let version = asked
                .filter(|v| ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"].contains(v))
                .unwrap_or("2025-11-25");
            reply(
                id,
                &format!(
                    r#"{{"protocolVersion":"{version}","capabilities":{{"tools":{{}}}},"serverInfo":{SERVER_INFO}}}"#
                ),
            )
        }
        "ping" => reply(id, "{}"),
        "server/discover" if !w.handshake_only => reply(
            id,
            &format!(
                r#"{{"supportedVersions":["2025-11-25","{MODERN}"],"capabilities":{{"tools":{{}}}},"resultType":"complete","ttlMs":60000,"cacheScope":"public","_meta":{{"io.modelcontextprotocol/serverInfo":{SERVER_INFO}}}}}"#
            ),
        ),
        "tools/list" => reply(id, &w.tools_result(modern)),
        "prompts/list" => reply(id, &format!(r#"{{"prompts":[]{tail}}}"#)),
        "tools/call" => {
            let Some(call) = env
                .params
                .and_then(|p| serde_json::from_str::<CallParams<'_>>(p.get()).ok())
            else {
                return error(Some(id), -32602, "tools/call needs params.name");
            };
            if call.name != "echo" {
                return error(Some(id), -32602, &format!("unknown tool: {}", call.name));
            }
            let text = call
                .arguments
                .and_then(|a| serde_json::from_str::<EchoArgs<'_>>(a.get()).ok())
                .and_then(|a| a.message)
                .map_or("\"\"", RawValue::get);
            reply(
                id,
                &format!(
                    r#"{{"content":[{{"type":"text","text":{text}}}],"isError":false{tail}}}"#
                ),
            )
        }
        other => error(Some(id), -32601, &format!("method not found: {other}")),
    }
}

impl Wire {
    fn tools_result(&self, modern: bool) -> String {
        if modern {
            format!(
                r#"{{"tools":{},"resultType":"complete","ttlMs":60000,"cacheScope":"public"}}"#,
                self.tools
            )
        } else {
            format!(r#"{{"tools":{}}}"#, self.tools)
        }
    }
}
