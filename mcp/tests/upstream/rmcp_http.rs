//! The official Rust SDK as upstream: stateless (2026-07-28 capable) and stateful
//! (session, handshake era only).

use canopy_mcp::protocol::MODERN_VERSION;
use canopy_mcp::upstream::Upstream;
use rmcp::handler::server::{router::tool::ToolRouter, wrapper::Parameters};
use rmcp::model::{ProtocolVersion, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::{
    session::local::LocalSessionManager, StreamableHttpServerConfig, StreamableHttpService,
};
use rmcp::{schemars, tool, tool_handler, tool_router, ServerHandler};
use std::borrow::Cow;

use crate::support::{http_cfg, names, raw, result_json, serve};

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct EchoRequest {
    text: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
struct AddRequest {
    a: i64,
    b: i64,
}

#[derive(Debug, Clone)]
struct Fixture {
    #[allow(dead_code)] // read by the tool_handler macro
    tool_router: ToolRouter<Self>,
    handshake_only: bool,
}

#[tool_router]
impl Fixture {
    #[tool(description = "Echo the text back")]
    async fn echo(&self, Parameters(EchoRequest { text }): Parameters<EchoRequest>) -> String {
        text
    }

    #[tool(description = "Add two numbers")]
    async fn add(&self, Parameters(AddRequest { a, b }): Parameters<AddRequest>) -> String {
        (a + b).to_string()
    }
}

#[tool_handler]
impl ServerHandler for Fixture {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        if self.handshake_only {
            Cow::Borrowed(&[ProtocolVersion::V_2025_11_25, ProtocolVersion::V_2025_06_18])
        } else {
            Cow::Borrowed(&[ProtocolVersion::V_2026_07_28, ProtocolVersion::V_2025_11_25])
        }
    }
}

async fn spawn(stateful: bool, handshake_only: bool) -> String {
    let config = StreamableHttpServerConfig::default()
        .with_legacy_session_mode(stateful)
        .with_sse_keep_alive(None);
    let service: StreamableHttpService<Fixture, LocalSessionManager> = StreamableHttpService::new(
        move || {
            Ok(Fixture {
                tool_router: Fixture::tool_router(),
                handshake_only,
            })
        },
        Default::default(),
        config,
    );
    let base = serve(axum::Router::new().nest_service("/mcp", service)).await;
    format!("{base}/mcp")
}

fn text_of(v: &serde_json::Value) -> &str {
    v["content"][0]["text"].as_str().unwrap()
}

#[tokio::test]
async fn stateless_rmcp_uses_2026_07_28() {
    let up = Upstream::new(http_cfg("rmcp-stateless", spawn(false, false).await));
    let d = up.discover().await.unwrap();
    assert_eq!(d.protocol_version, MODERN_VERSION);
    assert_eq!(names(&d.tools), vec!["add", "echo"]);
    assert!(d.prompts.is_empty());

    let r = up
        .request(
            "tools/call",
            Some(&raw(r#"{"name":"add","arguments":{"a":2,"b":40}}"#)),
            None,
        )
        .await
        .unwrap();
    assert_eq!(text_of(&result_json(&r)), "42");
    up.shutdown().await;
}

#[tokio::test]
async fn stateful_rmcp_uses_a_handshake_session_shared_by_concurrent_callers() {
    let up = Upstream::new(http_cfg("rmcp-stateful", spawn(true, true).await));
    let d = up.discover().await.unwrap();
    assert_eq!(d.protocol_version, "2025-11-25");
    assert_eq!(names(&d.tools), vec!["add", "echo"]);

    let calls = (0..16).map(|i| {
        let up = up.clone();
        async move {
            let params = raw(&format!(
                r#"{{"name":"echo","arguments":{{"text":"msg-{i}"}}}}"#
            ));
            let r = up.request("tools/call", Some(&params), None).await.unwrap();
            assert_eq!(text_of(&result_json(&r)), format!("msg-{i}"));
        }
    });
    futures::future::join_all(calls).await;
    up.shutdown().await;
}

#[tokio::test]
async fn rmcp_error_for_unknown_tool_is_returned_raw() {
    let up = Upstream::new(http_cfg("rmcp-errors", spawn(false, false).await));
    let r = up
        .request(
            "tools/call",
            Some(&raw(r#"{"name":"nope","arguments":{}}"#)),
            None,
        )
        .await
        .unwrap();
    match r.outcome {
        // Either a JSON-RPC error or an isError result is acceptable SDK behaviour;
        // what matters is that it arrives as an answer, not a transport failure.
        Err(e) => assert!(e.code < 0),
        Ok(v) => assert!(v.get().contains("isError")),
    }
}
