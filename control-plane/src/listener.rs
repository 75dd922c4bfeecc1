//! The gRPC listener: how many connections, and how long a silent one is kept.
//!
//! - **Connection cap** (`--max-connections`): past it a new connection is accepted and
//!   closed at once (an HTTP/2 client sees the connection drop and retries with backoff);
//!   accepting never stops, so the kernel's backlog cannot fill behind slow clients.
//! - **First-byte timeout** (`--handshake-timeout`): a connection that sends nothing (no
//!   TLS hello, no HTTP/2 preface) within it is closed. After the handshake, HTTP/2
//!   keep-alive pings (see `server.rs`) close peers that stop answering.
//! - **Accept errors** such as EMFILE pause accepting briefly instead of spinning (tonic's
//!   own accept loop would retry at once).

use futures::Stream;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::transport::server::{Connected, TcpConnectInfo};

pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long accepting pauses after a resource error (EMFILE, ENFILE, ENOMEM, ENOBUFS).
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// At most one warning per this interval while accept errors persist.
const ACCEPT_WARN_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerLimits {
    pub max_connections: usize,
    pub handshake_timeout: Duration,
}

impl Default for ListenerLimits {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The accepted connections of `listener`, within `limits`. Never yields an error.
pub fn incoming(
    listener: TcpListener,
    limits: ListenerLimits,
) -> impl Stream<Item = Result<Conn, io::Error>> {
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
    let state = (listener, Arc::new(Semaphore::new(max)), None::<Instant>);
    futures::stream::unfold(
        state,
        move |(listener, permits, mut last_warn)| async move {
            loop {
                let tcp = match listener.accept().await {
                    Ok((tcp, _)) => tcp,
                    Err(e) => {
                        accept_failed(&e, &mut last_warn).await;
                        continue;
                    }
                };
                let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                    tracing::debug!("connection cap reached; closing a new connection");
                    continue;
                };
                // A live change to a data plane is a small HTTP/2 frame: no Nagle delay.
                if let Err(e) = tcp.set_nodelay(true) {
                    tracing::debug!(error = %e, "could not set TCP_NODELAY");
                }
                let conn = Conn {
                    tcp,
                    first_byte: Some(Box::pin(tokio::time::sleep(limits.handshake_timeout))),
                    _permit: permit,
                };
                return Some((Ok(conn), (listener, permits, last_warn)));
            }
        },
    )
}

async fn accept_failed(e: &io::Error, last_warn: &mut Option<Instant>) {
    // EMFILE, ENFILE, ENOBUFS, ENOMEM: retrying at once would spin on the same error.
    let resource = matches!(e.raw_os_error(), Some(23 | 24 | 105 | 12));
    if !resource {
        tracing::debug!(error = %e, "accept failed");
        return;
    }
    if last_warn.is_none_or(|t| t.elapsed() >= ACCEPT_WARN_EVERY) {
        tracing::warn!(error = %e, "cannot accept connections (pausing briefly); lower --max-connections below the file-descriptor limit");
        *last_warn = Some(Instant::now());
    }
    tokio::time::sleep(ACCEPT_PAUSE).await;
}

/// An accepted connection: holds its place under the cap until dropped, and fails its
/// first read when nothing arrives within the handshake timeout.
pub struct Conn {
    tcp: TcpStream,
    /// Running until the first byte arrives.
    first_byte: Option<Pin<Box<tokio::time::Sleep>>>,
    _permit: OwnedSemaphorePermit,
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let filled = buf.filled().len();
        let r = Pin::new(&mut this.tcp).poll_read(cx, buf);
        let Some(deadline) = this.first_byte.as_mut() else {
            return r;
        };
        match r {
            Poll::Ready(_) if buf.filled().len() > filled => this.first_byte = None,
            Poll::Pending if deadline.as_mut().poll(cx).is_ready() => {
                return Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no data within the handshake timeout",
                )));
            }
            _ => {}
        }
        r
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.tcp.connect_info()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests: a panic is the failure report

    use super::*;
    use futures::StreamExt;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn past_the_cap_connections_are_closed_and_silent_ones_time_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let limits = ListenerLimits {
            max_connections: 1,
            handshake_timeout: Duration::from_millis(200),
        };
        let mut conns = Box::pin(incoming(listener, limits));
        let _a = TcpStream::connect(addr).await.unwrap();
        let mut first = conns.next().await.unwrap().unwrap();
        // Past the cap: accepted and closed, so the client reads EOF (or a reset).
        let mut b = TcpStream::connect(addr).await.unwrap();
        let pending = tokio::spawn(async move { conns.next().await.map(|c| c.is_ok()) });
        let mut byte = [0u8; 1];
        assert!(matches!(b.read(&mut byte).await, Ok(0) | Err(_)));
        // The held one sent nothing: its first read fails at the handshake timeout.
        let err = first.read(&mut byte).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(first);
        pending.abort();
    }
}
