//! The HTTP listener: what a client can hold, and for how long.
//!
//! - **HTTP/1.1 only.** HTTP/2 (h2c) is not served: MCP clients and load balancers speak
//!   HTTP/1.1 to a backend, and h2 brings its own resource limits to get right (streams per
//!   connection, flow-control windows, resets) for no gain here.
//! - **Connection cap** (`--max-connections`): a connection past the cap is still accepted
//!   (the listener never stops accepting, so the backlog cannot fill) and answered at once
//!   with a canned 503 and closed — before any request is read.
//! - **Header read timeout** (`--header-read-timeout`): a connection must deliver a complete
//!   request head within it, counted from when the server starts waiting for one — the
//!   first request, and the next one on a kept-alive connection, so it is also the idle
//!   keep-alive timeout. Slow-loris connections (a request line and a header, then nothing)
//!   are closed by it.
//! - The body read timeout is applied where the body is read (`http/body.rs`).
//! - **Accept errors** such as EMFILE (out of file descriptors) pause accepting briefly
//!   instead of spinning; the pending connections wait in the kernel's backlog.
//!
//! Draining: on shutdown the listener stops accepting, asks every connection to finish its
//! in-flight request and close, and returns when all have.

use axum::extract::ConnectInfo;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};

pub const DEFAULT_MAX_CONNECTIONS: usize = 512;
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How long accepting pauses after a resource error (EMFILE, ENFILE, ENOMEM, ENOBUFS).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning per this interval while accept errors persist.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(5);

/// The whole answer to a connection past the cap.
const SHED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\n\
content-type: application/json\r\n\
retry-after: 1\r\n\
connection: close\r\n\
content-length: 97\r\n\
\r\n\
{\"jsonrpc\":\"2.0\",\"id\":null,\"error\":{\"code\":-32603,\"message\":\"too many connections; retry later\"}}";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenSettings {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
}

impl Default for ListenSettings {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
        }
    }
}

/// Serves `app` on `listener` until `stop` resolves, then drains (see the module docs).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ListenSettings,
    stop: impl Future<Output = ()>,
) {
    // `acquire_many` (the drain below) counts in u32.
    let max = settings
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let (draining_tx, draining) = watch::channel(false);
    let mut last_warn: Option<Instant> = None;
    tokio::pin!(stop);
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut stop => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                accept_failed(&e, &mut last_warn).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Best effort, never waits: a full socket buffer just means a bare close.
            let _ = tcp.try_write(SHED);
            continue;
        };
        // Replies and SSE events must not wait for the client's delayed ACK (Nagle).
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY on an accepted connection");
        }
        // The peer address rides on each request (the audit trail's client address).
        let service = tower::ServiceBuilder::new()
            .map_request(move |mut req: http::Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            })
            .service(app.clone());
        let conn = http.serve_connection(TokioIo::new(tcp), TowerToHyperService::new(service));
        let mut draining = draining.clone();
        tokio::spawn(async move {
            let _permit = permit;
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                // Only ever set once, to true (or the sender is gone: draining as well).
                _ = draining.changed() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                // Header timeouts, resets, malformed requests: the client's problem.
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    let _ = draining_tx.send(true);
    // Every connection task holds a permit until it ends.
    let _ = permits.acquire_many(max as u32).await;
}

async fn accept_failed(e: &std::io::Error, last_warn: &mut Option<Instant>) {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once would spin on the same error.
    let resource = matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12));
    if !resource {
        // Per-connection failures (e.g. the peer reset before accept): just go on.
        tracing::debug!(error = %e, "accept failed");
        return;
    }
    if last_warn.is_none_or(|t| t.elapsed() >= ACCEPT_WARN_EVERY) {
        tracing::warn!(error = %e, "cannot accept connections (pausing briefly); lower --max-connections below the file-descriptor limit");
        *last_warn = Some(Instant::now());
    }
    tokio::time::sleep(ACCEPT_PAUSE).await;
}

#[cfg(test)]
mod tests {
    use super::SHED;

    #[test]
    fn shed_reply_length_is_exact() {
        let text = std::str::from_utf8(SHED).unwrap_or_default();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.contains(&format!("content-length: {}", body.len())),
            "{}",
            body.len()
        );
        assert!(serde_json::from_str::<serde_json::Value>(body).is_ok());
    }
}
