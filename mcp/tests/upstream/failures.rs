//! Upstreams that hang, answer garbage, fail with HTTP errors or are not there. Errors
//! must name the server and never show secrets.

use axum::http::StatusCode;
use axum::response::IntoResponse;
use canopy_mcp::upstream::{TransportKind, Upstream, UpstreamConfig, UpstreamError};
use std::time::Duration;

use crate::support::{http_cfg, raw, serve};

const TOKEN: &str = "tok-very-secret-1234567890";
const HEADER_SECRET: &str = "hdr-very-secret-0987654321";
const ENV_SECRET: &str = "env-very-secret-5555555555";

fn with_secrets(mut cfg: UpstreamConfig) -> UpstreamConfig {
    cfg.bearer_token = Some(TOKEN.into());
    cfg.headers.insert("X-Secret".into(), HEADER_SECRET.into());
    cfg.env.insert("SECRET".into(), ENV_SECRET.into());
    cfg
}

fn assert_no_secret(text: &str) {
    for s in [TOKEN, HEADER_SECRET, ENV_SECRET] {
        assert!(!text.contains(s), "secret leaked in: {text}");
    }
}

fn check(err: &UpstreamError, server: &str) {
    let shown = err.to_string();
    assert!(
        shown.contains(server),
        "error does not name the server: {shown}"
    );
    assert_no_secret(&shown);
    assert_no_secret(&format!("{err:?}"));
}

#[tokio::test]
async fn hanging_upstream_times_out() {
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            std::future::pending::<()>().await;
            StatusCode::OK
        }),
    );
    let url = format!("{}/mcp", serve(router).await);
    let up = Upstream::new(with_secrets(http_cfg("sleepy", url)));
    let err = up
        .request("tools/list", None, Some(Duration::from_millis(300)))
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
    check(&err, "sleepy");
}

#[tokio::test]
async fn configured_timeout_applies_to_discover() {
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            std::future::pending::<()>().await;
            StatusCode::OK
        }),
    );
    let url = format!("{}/mcp", serve(router).await);
    let mut cfg = http_cfg("sleepy2", url);
    cfg.timeout = Duration::from_millis(300);
    let err = Upstream::new(cfg).discover().await.unwrap_err();
    assert!(matches!(err, UpstreamError::Timeout { .. }), "{err:?}");
}

#[tokio::test]
async fn garbage_body_is_a_protocol_error() {
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async {
            ([("content-type", "application/json")], "<html>oops</html>").into_response()
        }),
    );
    let url = format!("{}/mcp", serve(router).await);
    let up = Upstream::new(with_secrets(http_cfg("garbage", url)));
    let err = up.discover().await.unwrap_err();
    assert!(matches!(err, UpstreamError::Protocol { .. }), "{err:?}");
    check(&err, "garbage");
}

#[tokio::test]
async fn http_500_is_reported_with_its_status() {
    let router = axum::Router::new().route(
        "/mcp",
        axum::routing::post(|| async { StatusCode::INTERNAL_SERVER_ERROR }),
    );
    let url = format!("{}/mcp", serve(router).await);
    let up = Upstream::new(with_secrets(http_cfg("broken", url)));
    let err = up.request("tools/list", None, None).await.unwrap_err();
    assert!(
        matches!(err, UpstreamError::HttpStatus { status: 500, .. }),
        "{err:?}"
    );
    check(&err, "broken");
}

#[tokio::test]
async fn unreachable_upstream() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let up = Upstream::new(with_secrets(http_cfg("gone", format!("http://{addr}/mcp"))));
    let err = up.discover().await.unwrap_err();
    assert!(matches!(err, UpstreamError::Unreachable { .. }), "{err:?}");
    check(&err, "gone");
}

#[tokio::test]
async fn bad_config_is_reported_without_secrets() {
    let mut cfg = with_secrets(http_cfg("badcfg", "ftp://x/".into()));
    cfg.headers
        .insert("X-Bad".into(), format!("{HEADER_SECRET}\n"));
    let up = Upstream::new(cfg);
    assert_no_secret(&format!("{up:?}"));
    let err = up
        .request("tools/list", Some(&raw("{}")), None)
        .await
        .unwrap_err();
    assert!(matches!(err, UpstreamError::Config { .. }), "{err:?}");
    check(&err, "badcfg");

    let mut cfg = with_secrets(http_cfg("badhdr", "http://127.0.0.1:9/".into()));
    cfg.headers
        .insert("X-Bad".into(), format!("{HEADER_SECRET}\n"));
    let err = Upstream::new(cfg).discover().await.unwrap_err();
    assert!(matches!(err, UpstreamError::Config { .. }), "{err:?}");
    check(&err, "badhdr");
}

#[test]
fn config_debug_redacts() {
    let cfg = with_secrets(UpstreamConfig::stdio("s", "cmd", vec![]));
    assert_eq!(cfg.transport, TransportKind::Stdio);
    assert_no_secret(&format!("{cfg:?}"));
}
