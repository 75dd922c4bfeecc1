//! Reading request bodies: bounded in size and in time; and what a rejection leaves unread.
//!
//! A request refused before its body is read (401, 415, …) must not break the connection
//! for the next request: a small declared body is read and dropped (bounded, so an
//! unauthenticated client cannot make us read much), anything else gets `Connection: close`
//! so the client (or a load balancer's pool) knows not to reuse the connection.

use axum::body::Body;
use axum::response::Response;
use http::header::{CONNECTION, CONTENT_LENGTH};
use http::{HeaderMap, HeaderValue};
use std::time::Duration;

use super::reply::Failure;

/// The largest body a rejection reads to keep the connection open.
const DRAIN_MAX_BYTES: u64 = 64 * 1024;

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
}

/// The whole body: refused past `limit` bytes or when it does not arrive within `timeout`.
pub(super) async fn read(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    timeout: Duration,
) -> Result<bytes::Bytes, Failure> {
    if declared_length(headers).is_some_and(|n| n > limit as u64) {
        return Err(Failure::BodyTooLarge);
    }
    // A body already received completes on the first poll: no timer is registered then.
    let read = tokio::time::timeout(timeout, axum::body::to_bytes(body, limit));
    let Ok(result) = read.await else {
        return Err(Failure::BodyTimeout);
    };
    result.map_err(|e| {
        // `to_bytes` reports the limit as an error whose source is `LengthLimitError`.
        let mut src: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        while let Some(s) = src {
            if s.is::<http_body_util::LengthLimitError>() {
                return Failure::BodyTooLarge;
            }
            src = s.source();
        }
        Failure::BodyUnreadable
    })
}

/// `resp` for a request whose body was not read: the body is drained when small and quick,
/// else the connection is marked to close.
pub(super) async fn reject_unread(mut resp: Response, body: Body, timeout: Duration) -> Response {
    // The body's own exact length (its Content-Length on the wire).
    let drained = match http_body::Body::size_hint(&body).exact() {
        Some(0) => true,
        Some(n) if n <= DRAIN_MAX_BYTES => {
            let read = axum::body::to_bytes(body, DRAIN_MAX_BYTES as usize);
            matches!(tokio::time::timeout(timeout, read).await, Ok(Ok(_)))
        }
        // Chunked (no length) or too large to be worth reading.
        _ => false,
    };
    if !drained {
        close(&mut resp);
    }
    resp
}

/// Marks `resp` as the last on its connection.
pub(super) fn close(resp: &mut Response) {
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("close"));
}
