//! JSON-RPC plumbing shared by every transport: our own request ids, encoding outgoing
//! messages without reshaping `params`, and classifying what an upstream sends back.
//!
//! Only the envelope is parsed. `params` and `result` stay raw; a notification is kept
//! as the whole raw message so the data plane can relay it unchanged.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::jsonrpc::{code, ErrorObject, IncomingMessage};

/// Per-upstream id source. Ids are ours, never the client's, so concurrent callers (and
/// different clients reusing the same ids) can never collide on one connection.
#[derive(Debug)]
pub(crate) struct IdGen(AtomicU64);

impl IdGen {
    pub(crate) fn new() -> Self {
        Self(AtomicU64::new(1))
    }

    pub(crate) fn next(&self) -> u64 {
        // Relaxed: uniqueness is all we need, not ordering with other memory.
        self.0.fetch_add(1, Ordering::Relaxed)
    }
}

/// Encodes a request (`id` given) or notification. `params` is copied byte for byte.
pub(crate) fn encode(id: Option<u64>, method: &str, params: Option<&str>) -> Vec<u8> {
    let mut out = Vec::with_capacity(48 + method.len() + params.map_or(0, str::len));
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\"");
    if let Some(id) = id {
        out.extend_from_slice(b",\"id\":");
        out.extend_from_slice(id.to_string().as_bytes());
    }
    out.extend_from_slice(b",\"method\":");
    push_json_str(&mut out, method);
    if let Some(p) = params {
        out.extend_from_slice(b",\"params\":");
        out.extend_from_slice(p.as_bytes());
    }
    out.push(b'}');
    out
}

/// The answer we give to a server-to-client request: the gateway is stateless and has
/// no client to relay sampling/elicitation/roots to.
pub(crate) fn method_not_found_reply(id: &RawValue, method: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(128 + method.len());
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    out.extend_from_slice(id.get().as_bytes());
    out.extend_from_slice(b",\"error\":{\"code\":");
    out.extend_from_slice(code::METHOD_NOT_FOUND.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    push_json_str(
        &mut out,
        &format!("the gateway does not serve client requests ({method})"),
    );
    out.extend_from_slice(b"}}");
    out
}

fn push_json_str(out: &mut Vec<u8>, s: &str) {
    // Serializing a str into a Vec has no failure mode (no I/O, no non-string keys).
    let _ = serde_json::to_writer(&mut *out, s);
}

/// One message received from an upstream, classified.
#[derive(Debug)]
pub(crate) enum Incoming {
    Response {
        /// Our numeric id, `None` when the upstream echoed something we never sent.
        id: Option<u64>,
        outcome: Result<Box<RawValue>, ErrorObject>,
    },
    Notification {
        method: String,
        /// The whole message, raw.
        raw: Box<RawValue>,
    },
    /// A server-to-client request (sampling, elicitation, roots, ping).
    Request { id: Box<RawValue>, method: String },
}

/// Classifies one JSON text. Errors say what is wrong without echoing the body.
pub(crate) fn classify(text: &str) -> Result<Incoming, String> {
    let text = text.trim();
    let msg: IncomingMessage = serde_json::from_str(text)
        .map_err(|e| format!("invalid JSON-RPC message ({})", e.classify_str()))?;
    match (msg.id, msg.method) {
        (Some(id), Some(method)) => Ok(Incoming::Request { id, method }),
        (None, Some(method)) => {
            // Copied only for notifications, which are rare next to responses.
            let raw = RawValue::from_string(text.to_owned())
                .map_err(|e| format!("invalid notification ({})", e.classify_str()))?;
            Ok(Incoming::Notification { method, raw })
        }
        (id, None) => {
            let outcome = match (msg.result, msg.error) {
                (Some(r), None) => Ok(r),
                (None, Some(e)) => Err(e),
                _ => return Err("response has neither exactly one of result and error".into()),
            };
            Ok(Incoming::Response {
                id: id.as_deref().and_then(parse_id),
                outcome,
            })
        }
    }
}

/// Our ids are numbers; tolerate an upstream that echoes them as strings.
pub(crate) fn parse_id(id: &RawValue) -> Option<u64> {
    let s = id.get().trim();
    let s = s
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(s);
    s.parse().ok()
}

trait ClassifyStr {
    fn classify_str(&self) -> &'static str;
}

impl ClassifyStr for serde_json::Error {
    fn classify_str(&self) -> &'static str {
        match self.classify() {
            serde_json::error::Category::Io => "i/o error",
            serde_json::error::Category::Syntax => "syntax error",
            serde_json::error::Category::Data => "unexpected shape",
            serde_json::error::Category::Eof => "truncated",
        }
    }
}

/// Raw text of `params._meta.progressToken`, used to route progress notifications on
/// transports where one stream carries every request (stdio, legacy SSE).
pub(crate) fn request_progress_token(params: Option<&RawValue>) -> Option<String> {
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(rename = "_meta", borrow, default)]
        meta: Option<Meta<'a>>,
    }
    #[derive(Deserialize)]
    struct Meta<'a> {
        #[serde(rename = "progressToken", borrow, default)]
        token: Option<&'a RawValue>,
    }
    let p = params?;
    // Cheap pre-check keeps the common call free of a second parse.
    if !p.get().contains("progressToken") {
        return None;
    }
    let parsed: Params<'_> = serde_json::from_str(p.get()).ok()?;
    Some(parsed.meta?.token?.get().trim().to_owned())
}

/// Raw text of `params.progressToken` of a `notifications/progress`.
pub(crate) fn notification_progress_token(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Msg<'a> {
        #[serde(borrow, default)]
        params: Option<Params<'a>>,
    }
    #[derive(Deserialize)]
    struct Params<'a> {
        #[serde(rename = "progressToken", borrow, default)]
        token: Option<&'a RawValue>,
    }
    let m: Msg<'_> = serde_json::from_str(raw.get()).ok()?;
    Some(m.params?.token?.get().trim().to_owned())
}

#[cfg(test)]
mod tests;
