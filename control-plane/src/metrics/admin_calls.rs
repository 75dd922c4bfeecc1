//! Counting Admin API calls by result, as a tower layer in front of the gRPC router: no
//! handler needs to know, and the result is read where tonic puts it.
//!
//! Every Admin RPC is unary. tonic answers a failed one "trailers-only": the `grpc-status`
//! is in the response headers; a successful one has none there (its status 0 comes in the
//! trailers). So the headers tell ok from error without waiting for the body.

use super::families::ADMIN_RPCS;
use super::{Collect, Exposition};
use http::{Request, Response};
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::task::{Context, Poll};

const ADMIN_PATH: &str = "/canopy.v1.Admin/";

#[derive(Debug, Default)]
pub struct AdminCalls {
    ok: AtomicU64,
    error: AtomicU64,
}

impl AdminCalls {
    pub fn record(&self, ok: bool) {
        if ok { &self.ok } else { &self.error }.fetch_add(1, Relaxed);
    }

    /// (ok, error) so far.
    pub fn counts(&self) -> (u64, u64) {
        (self.ok.load(Relaxed), self.error.load(Relaxed))
    }
}

impl Collect for AdminCalls {
    fn collect(&self, out: &mut Exposition) {
        let (ok, error) = self.counts();
        out.family(&ADMIN_RPCS)
            .labelled(&[("result", "ok")], ok)
            .labelled(&[("result", "error")], error);
    }
}

/// The layer for `tonic::transport::Server::layer`.
#[derive(Debug, Clone)]
pub struct AdminCallsLayer(pub Arc<AdminCalls>);

impl<S> tower::Layer<S> for AdminCallsLayer {
    type Service = CountAdminCalls<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CountAdminCalls {
            inner,
            calls: Arc::clone(&self.0),
        }
    }
}

#[derive(Debug, Clone)]
pub struct CountAdminCalls<S> {
    inner: S,
    calls: Arc<AdminCalls>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<S, B, RB> tower::Service<Request<B>> for CountAdminCalls<S>
where
    S: tower::Service<Request<B>, Response = Response<RB>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let admin = req.uri().path().starts_with(ADMIN_PATH);
        let call = self.inner.call(req);
        if !admin {
            return Box::pin(call);
        }
        let calls = Arc::clone(&self.calls);
        Box::pin(async move {
            let result = call.await;
            calls.record(result.as_ref().is_ok_and(|r| succeeded(r.headers())));
            result
        })
    }
}

fn succeeded(headers: &http::HeaderMap) -> bool {
    headers
        .get("grpc-status")
        .is_none_or(|s| s.as_bytes() == b"0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_tell_ok_from_error() {
        let mut h = http::HeaderMap::new();
        assert!(succeeded(&h));
        h.insert("grpc-status", http::HeaderValue::from_static("0"));
        assert!(succeeded(&h));
        h.insert("grpc-status", http::HeaderValue::from_static("16"));
        assert!(!succeeded(&h));
    }
}
