//! Reading the reply to one POST: a JSON body (object or batch array) or an SSE stream
//! that carries notifications and ends with our response.
//!
//! An SSE reply is read only until the first notification: from there on the caller pulls
//! messages one at a time ([`ReplyEvents::next`]), so nothing accumulates here and a slow
//! reader slows the upstream down (the body is read only when asked for).

use serde_json::value::RawValue;
use std::sync::Arc;

use super::super::budget::{Budget, CallLimits};
use super::super::event_stream::ResponseEvents;
use super::super::rpc::{self, Incoming};
use super::super::{UpstreamConfig, UpstreamError, UpstreamResponse};
use super::client::{self, BodyError, Response};

/// Largest JSON reply body we accept.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub(crate) type Outcome = Result<Box<RawValue>, crate::jsonrpc::ErrorObject>;

pub(crate) struct Reply {
    pub response: UpstreamResponse,
    /// Answers to send back for server-to-client requests seen on the way.
    pub server_requests: Vec<Vec<u8>>,
}

/// What reading a reply found.
pub(crate) enum Read {
    /// The response (with what came before it, for JSON and batch replies).
    Done(Reply),
    /// An event stream that sent a notification before the response.
    Streaming {
        first: Box<RawValue>,
        /// Answers to server-to-client requests seen before `first`.
        server_requests: Vec<Vec<u8>>,
        rest: ReplyEvents,
    },
}

/// One message of an event-stream reply, after the first notification.
pub(crate) enum Item {
    Notification(Box<RawValue>),
    /// The answer to send back for a server-to-client request.
    ServerRequest(Vec<u8>),
    Response(Outcome),
}

/// The rest of an event-stream reply, read on demand.
pub(crate) struct ReplyEvents {
    events: ResponseEvents<hyper::body::Incoming>,
    id: u64,
    cfg: Arc<UpstreamConfig>,
    budget: Budget,
}

impl ReplyEvents {
    /// The next message; an error when the stream ends (or breaks) before the response or
    /// a per-call limit is crossed.
    pub(crate) async fn next(&mut self) -> Result<Item, UpstreamError> {
        loop {
            let ev = self
                .events
                .next()
                .await
                .map_err(|e| protocol(&self.cfg.name, e.to_string()))?;
            let Some(ev) = ev else {
                return Err(protocol(
                    &self.cfg.name,
                    "event stream ended before the response".into(),
                ));
            };
            if ev.event != "message" || ev.data.trim().is_empty() {
                continue;
            }
            match classify(&ev.data, self.id, &self.cfg.name, &mut self.budget)? {
                Some(item) => return Ok(item),
                None => continue,
            }
        }
    }
}

/// Reads until the response, keeping every notification (bounded by `limits`). For the
/// handshake and the era probe, whose replies are small.
pub(crate) async fn read_all(
    resp: Response,
    id: u64,
    cfg: &Arc<UpstreamConfig>,
    limits: CallLimits,
) -> Result<Reply, UpstreamError> {
    match read(resp, id, cfg, limits).await? {
        Read::Done(r) => Ok(r),
        Read::Streaming {
            first,
            server_requests,
            mut rest,
        } => {
            let mut reply = Reply {
                response: UpstreamResponse {
                    notifications: vec![first],
                    outcome: Ok(Box::default()),
                },
                server_requests,
            };
            loop {
                match rest.next().await? {
                    Item::Notification(n) => reply.response.notifications.push(n),
                    Item::ServerRequest(a) => reply.server_requests.push(a),
                    Item::Response(outcome) => {
                        reply.response.outcome = outcome;
                        return Ok(reply);
                    }
                }
            }
        }
    }
}

pub(crate) async fn read(
    resp: Response,
    id: u64,
    cfg: &Arc<UpstreamConfig>,
    limits: CallLimits,
) -> Result<Read, UpstreamError> {
    let server = cfg.name.as_str();
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut budget = Budget::new(limits);
    let mut notifications = Vec::new();
    let mut server_requests = Vec::new();
    let done = |notifications, server_requests, outcome| {
        Read::Done(Reply {
            response: UpstreamResponse {
                notifications,
                outcome,
            },
            server_requests,
        })
    };
    if !status.is_success() {
        // 2026-07-28 servers answer protocol errors with 400/404 and a JSON-RPC error body:
        // relay that error object rather than a bare status.
        if ctype.starts_with("application/json") {
            if let Ok(body) = body_bytes(resp, server).await {
                if let Ok(text) = std::str::from_utf8(&body) {
                    if let Ok(Incoming::Response {
                        outcome: Err(e), ..
                    }) = rpc::classify(text)
                    {
                        return Ok(done(notifications, server_requests, Err(e)));
                    }
                }
            }
        }
        return Err(UpstreamError::HttpStatus {
            server: server.to_owned(),
            status: status.as_u16(),
        });
    }
    if ctype.starts_with("text/event-stream") {
        let mut rest = ReplyEvents {
            events: ResponseEvents::new(resp.into_body()),
            id,
            cfg: Arc::clone(cfg),
            budget,
        };
        loop {
            match rest.next().await? {
                Item::ServerRequest(a) => server_requests.push(a),
                Item::Response(outcome) => {
                    return Ok(done(notifications, server_requests, outcome))
                }
                Item::Notification(first) => {
                    return Ok(Read::Streaming {
                        first,
                        server_requests,
                        rest,
                    })
                }
            }
        }
    }
    if ctype.starts_with("application/json") {
        let body = body_bytes(resp, server).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| protocol(server, "response body is not UTF-8".into()))?;
        if text.trim_start().starts_with('[') {
            let batch: Vec<&RawValue> = serde_json::from_str(text.trim_start())
                .map_err(|_| protocol(server, "response body is not JSON".into()))?;
            for msg in batch {
                match classify(msg.get(), id, server, &mut budget)? {
                    Some(Item::Notification(n)) if budget.keeps() => notifications.push(n),
                    Some(Item::Notification(_)) | None => {}
                    Some(Item::ServerRequest(a)) => server_requests.push(a),
                    Some(Item::Response(outcome)) => {
                        return Ok(done(notifications, server_requests, outcome))
                    }
                }
            }
            return Err(protocol(
                server,
                "batch reply has no response to our request".into(),
            ));
        }
        return match classify(text, id, server, &mut budget)? {
            Some(Item::Response(outcome)) => Ok(done(notifications, server_requests, outcome)),
            _ => Err(protocol(
                server,
                "reply is not the response to our request".into(),
            )),
        };
    }
    Err(protocol(
        server,
        if ctype.is_empty() {
            format!("HTTP {} reply without a body type", status.as_u16())
        } else {
            format!("unexpected reply content type '{ctype}'")
        },
    ))
}

/// One message: our response, or what came before it (counted against `budget`).
/// `None` for a response to another request.
fn classify(
    text: &str,
    id: u64,
    server: &str,
    budget: &mut Budget,
) -> Result<Option<Item>, UpstreamError> {
    let over = |reason| UpstreamError::CallLimit {
        server: server.to_owned(),
        reason,
    };
    match rpc::classify(text).map_err(|r| protocol(server, r))? {
        Incoming::Response {
            id: Some(got),
            outcome,
        } if got == id => Ok(Some(Item::Response(outcome))),
        Incoming::Response { .. } => {
            tracing::debug!(server = %server, "ignoring a response to another request");
            budget.take(text.len(), false).map_err(over)?;
            Ok(None)
        }
        Incoming::Notification { raw, .. } => {
            budget.take(text.len(), true).map_err(over)?;
            Ok(Some(Item::Notification(raw)))
        }
        Incoming::Request { id, method } => {
            budget.take(text.len(), false).map_err(over)?;
            Ok(Some(Item::ServerRequest(rpc::method_not_found_reply(
                &id, &method,
            ))))
        }
    }
}

fn protocol(server: &str, reason: String) -> UpstreamError {
    UpstreamError::Protocol {
        server: server.to_owned(),
        reason,
    }
}

async fn body_bytes(resp: Response, server: &str) -> Result<bytes::Bytes, UpstreamError> {
    client::body_bytes(resp, MAX_BODY_BYTES)
        .await
        .map_err(|e| match e {
            BodyError::TooLarge => UpstreamError::Protocol {
                server: server.to_owned(),
                reason: format!("reply body exceeds {MAX_BODY_BYTES} bytes"),
            },
            BodyError::Read(reason) => UpstreamError::Unreachable {
                server: server.to_owned(),
                reason,
            },
        })
}
