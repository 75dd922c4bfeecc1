//! `canopy-bench-bare`: the baselines that stand in for the data plane.
//!
//! - `--body-file F` (the `tools/list` baseline): a bare axum handler that reads the request
//!   body and answers fixed bytes (captured once from the data plane at bench start).
//! - `--forward URL` (the floor of one HTTP hop for `tools/call`): a minimal forwarding
//!   proxy. Every POST's body goes unchanged (with its `content-type`, `accept` and
//!   `mcp-protocol-version` headers) to `URL` over pooled keep-alive HTTP/1.1 connections
//!   (hyper-util's legacy client, `TCP_NODELAY`); status, `content-type` and body bytes come
//!   back. No JSON parsing, no auth: what any HTTP gateway in the path pays at least.

use anyhow::{bail, Context};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderName, Method, Request, Response, StatusCode, Uri};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::Router;
use clap::{ArgGroup, Parser};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::net::SocketAddr;
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "canopy-bench-bare",
    about = "Bench baselines: a bare axum handler returning fixed bytes (--body-file), or a \
             minimal HTTP forwarding proxy (--forward)",
    group(ArgGroup::new("mode").required(true).args(["body_file", "forward"]))
)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:7802")]
    listen: SocketAddr,
    /// The response body to return for every POST.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// Forward every POST to this upstream URL (http://host:port/path) instead.
    #[arg(long, value_name = "URL", value_parser = http_url)]
    forward: Option<Uri>,
    /// With --forward: speak HTTP/2 (prior knowledge, one multiplexed connection) to the
    /// upstream instead of pooled HTTP/1.1 connections.
    #[arg(long, requires = "forward")]
    http2: bool,
}

/// `--forward`'s value: a plain-HTTP absolute URL (the connector speaks no TLS).
fn http_url(s: &str) -> Result<Uri, String> {
    let uri: Uri = s.parse().map_err(|e| format!("{e}"))?;
    if uri.scheme_str() != Some("http") || uri.authority().is_none() {
        return Err("expected an http://host:port/path URL".into());
    }
    Ok(uri)
}

/// Request headers passed on to the upstream (everything else is dropped).
const FORWARDED: [HeaderName; 3] = [
    header::CONTENT_TYPE,
    header::ACCEPT,
    HeaderName::from_static("mcp-protocol-version"),
];

#[derive(Clone)]
struct Forward {
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: Uri,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let app = match (args.body_file, args.forward) {
        (Some(file), None) => {
            let body = Bytes::from(
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?,
            );
            Router::new().fallback(post(move |_req: Bytes| {
                let body = body.clone();
                async move { ([(header::CONTENT_TYPE, "application/json")], body).into_response() }
            }))
        }
        (None, Some(upstream)) => {
            let mut connector = HttpConnector::new();
            connector.set_nodelay(true);
            let client = Client::builder(TokioExecutor::new())
                .http2_only(args.http2)
                .build(connector);
            Router::new()
                .fallback(post(forward))
                .with_state(Forward { client, upstream })
        }
        _ => bail!("exactly one of --body-file and --forward is required"),
    };
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    eprintln!("canopy-bench-bare listening on {}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(canopy_bench::procs::terminated())
        .await?;
    Ok(())
}

/// The forwarding handler: 502 with the reason when the upstream cannot be reached.
async fn forward(State(f): State<Forward>, headers: HeaderMap, body: Bytes) -> Response<Body> {
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = Method::POST;
    *req.uri_mut() = f.upstream.clone();
    for name in &FORWARDED {
        if let Some(v) = headers.get(name) {
            req.headers_mut().insert(name.clone(), v.clone());
        }
    }
    match relay(&f.client, req).await {
        Ok(resp) => resp,
        Err(e) => (StatusCode::BAD_GATEWAY, format!("upstream: {e:#}")).into_response(),
    }
}

async fn relay(
    client: &Client<HttpConnector, Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> anyhow::Result<Response<Body>> {
    let resp = client.request(req).await.context("sending to upstream")?;
    let (parts, body) = resp.into_parts();
    let bytes = body
        .collect()
        .await
        .context("reading the upstream's body")?
        .to_bytes();
    let mut out = Response::new(Body::from(bytes));
    *out.status_mut() = parts.status;
    if let Some(ct) = parts.headers.get(header::CONTENT_TYPE) {
        out.headers_mut().insert(header::CONTENT_TYPE, ct.clone());
    }
    Ok(out)
}
