//! Reading the reply to one POST: a JSON body (object or batch array) or an SSE stream
//! that carries notifications and ends with our response.

use super::super::event_stream::ResponseEvents;
use super::super::rpc::{self, Incoming};
use super::super::{UpstreamError, UpstreamResponse};
use super::client::{self, BodyError, Response};

/// Largest JSON reply body we accept.
pub(crate) const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

pub(crate) struct Reply {
    pub response: UpstreamResponse,
    /// Answers to send back for server-to-client requests seen on the way.
    pub server_requests: Vec<Vec<u8>>,
}

pub(crate) async fn read(resp: Response, id: u64, server: &str) -> Result<Reply, UpstreamError> {
    let status = resp.status();
    let ctype = resp
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut state = State {
        id,
        server,
        notifications: Vec::new(),
        server_requests: Vec::new(),
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
                        return Ok(state.finish(Err(e)));
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
        let mut events = ResponseEvents::new(resp.into_body());
        loop {
            let ev = events
                .next()
                .await
                .map_err(|e| state.protocol(e.to_string()))?;
            let Some(ev) = ev else {
                return Err(state.protocol("event stream ended before the response".into()));
            };
            if ev.event != "message" || ev.data.trim().is_empty() {
                continue;
            }
            if let Some(outcome) = state.take(&ev.data)? {
                return Ok(state.finish(outcome));
            }
        }
    }
    if ctype.starts_with("application/json") {
        let body = body_bytes(resp, server).await?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| state.protocol("response body is not UTF-8".into()))?;
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            let batch: Vec<&serde_json::value::RawValue> = serde_json::from_str(trimmed)
                .map_err(|_| state.protocol("response body is not JSON".into()))?;
            for msg in batch {
                if let Some(outcome) = state.take(msg.get())? {
                    return Ok(state.finish(outcome));
                }
            }
            return Err(state.protocol("batch reply has no response to our request".into()));
        }
        return match state.take(text)? {
            Some(outcome) => Ok(state.finish(outcome)),
            None => Err(state.protocol("reply is not the response to our request".into())),
        };
    }
    Err(state.protocol(if ctype.is_empty() {
        format!("HTTP {} reply without a body type", status.as_u16())
    } else {
        format!("unexpected reply content type '{ctype}'")
    }))
}

/// Collects messages until the response with our id.
struct State<'a> {
    id: u64,
    server: &'a str,
    notifications: Vec<Box<serde_json::value::RawValue>>,
    server_requests: Vec<Vec<u8>>,
}

type Outcome = Result<Box<serde_json::value::RawValue>, crate::jsonrpc::ErrorObject>;

impl State<'_> {
    /// Takes one message; returns the outcome once our response arrived.
    fn take(&mut self, text: &str) -> Result<Option<Outcome>, UpstreamError> {
        match rpc::classify(text).map_err(|r| self.protocol(r))? {
            Incoming::Response {
                id: Some(id),
                outcome,
            } if id == self.id => Ok(Some(outcome)),
            Incoming::Response { .. } => {
                tracing::debug!(server = %self.server, "ignoring a response to another request");
                Ok(None)
            }
            Incoming::Notification { raw, .. } => {
                self.notifications.push(raw);
                Ok(None)
            }
            Incoming::Request { id, method } => {
                self.server_requests
                    .push(rpc::method_not_found_reply(&id, &method));
                Ok(None)
            }
        }
    }

    fn finish(self, outcome: Outcome) -> Reply {
        Reply {
            response: UpstreamResponse {
                notifications: self.notifications,
                outcome,
            },
            server_requests: self.server_requests,
        }
    }

    fn protocol(&self, reason: String) -> UpstreamError {
        UpstreamError::Protocol {
            server: self.server.to_owned(),
            reason,
        }
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
