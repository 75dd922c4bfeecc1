//! The pooled HTTP/1.1 client of streamable-HTTP upstreams: hyper-util's connection pool
//! with rustls (webpki roots) for `https://`.
//!
//! Why not reqwest here: every call to an upstream is on the data plane's request path, and
//! reqwest's conveniences (URL re-parsing, redirect and proxy handling, header merging) cost
//! measurable CPU per call there (see BENCHMARKS.md). Requests are built from a `Uri` parsed
//! once and a prepared header map. Environment proxy variables are not consulted: upstreams
//! are reached directly.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::time::Duration;

use canopy_core::error_chain as describe;

pub(crate) type Request = http::Request<Full<Bytes>>;
pub(crate) type Response = http::Response<hyper::body::Incoming>;

#[derive(Clone)]
pub(crate) struct Client {
    inner: hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<HttpConnector>,
        Full<Bytes>,
    >,
}

impl Client {
    pub(crate) fn new() -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let inner = hyper_util::client::legacy::Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            .build(https);
        Self { inner }
    }

    /// Sends `req`; the error text is one line with its causes and never names the URL's
    /// query or any header.
    pub(crate) async fn send(&self, req: Request) -> Result<Response, String> {
        self.inner.request(req).await.map_err(|e| describe(&e))
    }
}

/// A `method` request of `body` to `uri` with `headers`.
pub(crate) fn request(
    method: http::Method,
    uri: &http::Uri,
    headers: &http::HeaderMap,
    body: Vec<u8>,
) -> Request {
    let mut req = http::Request::new(Full::new(Bytes::from(body)));
    *req.method_mut() = method;
    *req.uri_mut() = uri.clone();
    *req.headers_mut() = headers.clone();
    req
}

/// The whole body, refused past `limit` bytes.
pub(crate) async fn body_bytes(resp: Response, limit: usize) -> Result<Bytes, BodyError> {
    match Limited::new(resp.into_body(), limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(BodyError::TooLarge),
        Err(e) => Err(BodyError::Read(describe(e.as_ref()))),
    }
}

#[derive(Debug)]
pub(crate) enum BodyError {
    TooLarge,
    Read(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refused_connection_is_one_readable_line() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .unwrap();
        let uri: http::Uri = format!("http://127.0.0.1:{port}/mcp").parse().unwrap();
        let err = Client::new()
            .send(request(
                http::Method::POST,
                &uri,
                &http::HeaderMap::new(),
                b"{}".to_vec(),
            ))
            .await
            .err()
            .unwrap();
        assert!(!err.contains('\n'), "{err}");
        assert!(err.to_lowercase().contains("refused"), "{err}");
    }
}
