//! Closing every Sync stream at shutdown.
//!
//! A Sync stream never ends on its own, so a graceful drain would wait for it until the
//! grace period ran out. At shutdown the server closes them first ([`StreamCloser::close`]):
//! each session ends with `UNAVAILABLE`, and its data plane reconnects, to this control
//! plane once it is back or to another one. Then only unary calls are left to drain.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::watch;

#[derive(Clone)]
pub struct StreamCloser {
    closing: watch::Sender<bool>,
    /// Sessions that have not ended yet.
    open: Arc<watch::Sender<usize>>,
    /// How many were open when [`StreamCloser::close`] was called.
    at_close: Arc<AtomicUsize>,
    /// Sessions registered since the start (for `/metrics`).
    opened: Arc<AtomicU64>,
}

impl Default for StreamCloser {
    fn default() -> Self {
        Self {
            closing: watch::Sender::new(false),
            open: Arc::new(watch::Sender::new(0)),
            at_close: Arc::new(AtomicUsize::new(0)),
            opened: Arc::new(AtomicU64::new(0)),
        }
    }
}

impl StreamCloser {
    /// Registers a session; it ends when [`OpenStream::closing`] resolves.
    pub(crate) fn open(&self) -> OpenStream {
        self.open.send_modify(|n| *n += 1);
        self.opened.fetch_add(1, Ordering::Relaxed);
        OpenStream {
            closing: self.closing.subscribe(),
            open: Arc::clone(&self.open),
        }
    }

    /// Tells every session (and any that starts later) to end; returns how many were open.
    pub fn close(&self) -> usize {
        // Counted before the word goes out: a session that hears it ends at once.
        let open = *self.open.borrow();
        self.at_close.store(open, Ordering::Relaxed);
        self.closing.send_replace(true);
        open
    }

    /// Sessions open now.
    pub fn open_now(&self) -> usize {
        *self.open.borrow()
    }

    /// Sessions registered since the start.
    pub fn opened_total(&self) -> u64 {
        self.opened.load(Ordering::Relaxed)
    }

    /// What [`StreamCloser::close`] returned.
    pub fn closed_at_shutdown(&self) -> usize {
        self.at_close.load(Ordering::Relaxed)
    }

    /// Resolves once every session has ended.
    pub async fn closed(&self) {
        let _ = self.open.subscribe().wait_for(|n| *n == 0).await;
    }
}

/// One session's registration; dropping it counts the session as ended.
pub(crate) struct OpenStream {
    closing: watch::Receiver<bool>,
    open: Arc<watch::Sender<usize>>,
}

impl OpenStream {
    /// Resolves when the server shuts down (at once if it already does).
    pub async fn closing(&mut self) {
        let _ = self.closing.wait_for(|c| *c).await;
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.open.send_modify(|n| *n = n.saturating_sub(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn close_reaches_open_and_later_sessions_and_counts_them() {
        let closer = StreamCloser::default();
        let mut a = closer.open();
        let mut b = closer.open();
        assert_eq!(closer.close(), 2);
        assert_eq!(closer.closed_at_shutdown(), 2);
        a.closing().await;
        b.closing().await;
        drop(a);
        let mut late = closer.open();
        late.closing().await;
        drop((b, late));
        closer.closed().await;
        assert_eq!(closer.close(), 0);
    }
}
