//! Routing of responses to waiting callers on transports where one stream carries every
//! request (stdio, legacy HTTP+SSE).
//!
//! The lock is a plain mutex held only for map operations, never across `.await`.
//! Progress notifications are routed to the caller whose request carried the same
//! `_meta.progressToken`; other notifications (log messages, list changes) belong to no
//! single request and are logged.

use serde_json::value::RawValue;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

use super::budget::{Budget, CallLimits};
use super::rpc::{self, Incoming};
use super::{UpstreamConfig, UpstreamError, UpstreamResponse};

/// What a waiter gets: the response, or why there is none.
pub(crate) type Reply = Result<UpstreamResponse, Failed>;

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Failed {
    /// The connection went away (the reason).
    Closed(String),
    /// The call crossed its [`CallLimits`] (which one).
    Limit(String),
}

impl Failed {
    pub(crate) fn into_error(self, cfg: &UpstreamConfig) -> UpstreamError {
        match self {
            Failed::Closed(reason) => cfg.unreachable(reason),
            Failed::Limit(reason) => UpstreamError::CallLimit {
                server: cfg.name.clone(),
                reason,
            },
        }
    }
}

struct Waiter {
    tx: oneshot::Sender<Reply>,
    notes: Vec<Box<RawValue>>,
    budget: Budget,
    token: Option<String>,
}

#[derive(Default)]
struct Inner {
    waiters: HashMap<u64, Waiter>,
    tokens: HashMap<String, u64>,
    closed: Option<String>,
}

pub(crate) struct Mux {
    server: Arc<str>,
    inner: Mutex<Inner>,
}

/// What the reader must do after a message was delivered.
pub(crate) enum Action {
    None,
    /// Send this reply (to a server-to-client request) back upstream.
    Reply(Vec<u8>),
}

impl Mux {
    pub(crate) fn new(server: Arc<str>) -> Arc<Self> {
        Arc::new(Self {
            server,
            inner: Mutex::new(Inner::default()),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding this lock cannot leave the maps inconsistent in a way
        // that matters more than losing the whole connection, so keep going.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a waiter for `id`. Fails with the close reason when the connection is gone.
    pub(crate) fn register(
        self: &Arc<Self>,
        id: u64,
        token: Option<String>,
        limits: CallLimits,
    ) -> Result<Ticket, String> {
        let (tx, rx) = oneshot::channel();
        let mut inner = self.lock();
        if let Some(reason) = &inner.closed {
            return Err(reason.clone());
        }
        if let Some(t) = &token {
            inner.tokens.insert(t.clone(), id);
        }
        inner.waiters.insert(
            id,
            Waiter {
                tx,
                notes: Vec::new(),
                budget: Budget::new(limits),
                token,
            },
        );
        Ok(Ticket {
            mux: Arc::clone(self),
            id,
            rx,
        })
    }

    /// True once [`Mux::close`] ran: the connection must be replaced.
    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    /// Fails every pending caller with `reason` and refuses new ones.
    pub(crate) fn close(&self, reason: String) {
        let waiters = {
            let mut inner = self.lock();
            if inner.closed.is_none() {
                inner.closed = Some(reason.clone());
            }
            inner.tokens.clear();
            std::mem::take(&mut inner.waiters)
        };
        for (_, w) in waiters {
            let _ = w.tx.send(Err(Failed::Closed(reason.clone())));
        }
    }

    /// Delivers one message text from the upstream.
    pub(crate) fn deliver(&self, text: &str) -> Action {
        match rpc::classify(text) {
            Ok(Incoming::Response {
                id: Some(id),
                outcome,
            }) => {
                let waiter = {
                    let mut inner = self.lock();
                    let w = inner.waiters.remove(&id);
                    if let Some(t) = w.as_ref().and_then(|w| w.token.as_ref()) {
                        inner.tokens.remove(t);
                    }
                    w
                };
                match waiter {
                    // The caller may have timed out meanwhile: nothing to do then.
                    Some(w) => {
                        let _ = w.tx.send(Ok(UpstreamResponse {
                            notifications: w.notes,
                            outcome,
                        }));
                    }
                    None => {
                        tracing::debug!(server = %self.server, id, "response for no pending request")
                    }
                }
                Action::None
            }
            Ok(Incoming::Response { id: None, .. }) => {
                tracing::warn!(server = %self.server, "upstream answered with an id we never sent");
                Action::None
            }
            Ok(Incoming::Notification { method, raw }) => {
                if method == "notifications/progress" {
                    if let Some(token) = rpc::notification_progress_token(&raw) {
                        let mut inner = self.lock();
                        if let Some(id) = inner.tokens.get(&token).copied() {
                            if let Some(w) = inner.waiters.get_mut(&id) {
                                match w.budget.take(raw.get().len(), true) {
                                    Ok(()) if w.budget.keeps() => w.notes.push(raw),
                                    Ok(()) => {}
                                    // Over the limit: the caller fails now, and what it
                                    // collected is freed.
                                    Err(reason) => {
                                        inner.tokens.remove(&token);
                                        if let Some(w) = inner.waiters.remove(&id) {
                                            drop(inner);
                                            let _ = w.tx.send(Err(Failed::Limit(reason)));
                                        }
                                    }
                                }
                                return Action::None;
                            }
                        }
                    }
                }
                tracing::debug!(server = %self.server, %method, "upstream notification not tied to a request");
                Action::None
            }
            Ok(Incoming::Request { id, method }) => {
                tracing::debug!(server = %self.server, %method, "refusing server-to-client request");
                Action::Reply(rpc::method_not_found_reply(&id, &method))
            }
            Err(reason) => {
                tracing::warn!(server = %self.server, %reason, "ignoring unreadable message from upstream");
                Action::None
            }
        }
    }
}

/// A registered waiter. Dropping it (e.g. on timeout) unregisters it.
pub(crate) struct Ticket {
    mux: Arc<Mux>,
    id: u64,
    rx: oneshot::Receiver<Reply>,
}

impl Ticket {
    pub(crate) async fn wait(&mut self) -> Reply {
        match (&mut self.rx).await {
            Ok(r) => r,
            Err(_) => Err(Failed::Closed("connection closed".to_owned())),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut inner = self.mux.lock();
        if let Some(w) = inner.waiters.remove(&self.id) {
            if let Some(t) = w.token {
                inner.tokens.remove(&t);
            }
        }
    }
}

#[cfg(test)]
mod tests;
