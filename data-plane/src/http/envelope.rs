//! The only parsing on the request path: the JSON-RPC envelope and the few `params`
//! members routing needs (`name`, `uri`, `_meta`), all borrowed from the body.

use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

use super::reply::Failure;

#[derive(Deserialize)]
pub(crate) struct Envelope<'a> {
    #[serde(borrow, default)]
    pub jsonrpc: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub id: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub method: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    pub params: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub error: Option<&'a RawValue>,
}

pub(crate) enum Message<'a> {
    Request {
        id: &'a RawValue,
        method: Cow<'a, str>,
        params: Option<&'a RawValue>,
    },
    /// Notifications and responses: accepted, nothing to answer.
    NoReply { method: Option<Cow<'a, str>> },
}

impl<'a> Envelope<'a> {
    pub(crate) fn parse(body: &'a [u8]) -> Result<Self, Failure> {
        match body.iter().find(|b| !b.is_ascii_whitespace()) {
            Some(b'[') => return Err(Failure::BatchUnsupported),
            Some(b'{') => {}
            _ => return Err(Failure::Parse),
        }
        serde_json::from_slice(body).map_err(|e| match e.classify() {
            serde_json::error::Category::Data => {
                Failure::InvalidRequest("malformed JSON-RPC envelope")
            }
            _ => Failure::Parse,
        })
    }

    pub(crate) fn classify(self) -> Result<Message<'a>, Failure> {
        if self.jsonrpc.as_deref() != Some("2.0") {
            return Err(Failure::InvalidRequest("jsonrpc must be \"2.0\""));
        }
        // JSON-RPC 2.0 ids are strings or numbers (`null` reads as absent above).
        if self.id.is_some_and(|id| !is_string_or_number(id)) {
            return Err(Failure::InvalidRequest("id must be a string or a number"));
        }
        match (self.id, self.method) {
            (Some(id), Some(method)) => Ok(Message::Request {
                id,
                method,
                params: self.params,
            }),
            (None, Some(method)) => Ok(Message::NoReply {
                method: Some(method),
            }),
            (Some(_), None) if self.result.is_some() || self.error.is_some() => {
                Ok(Message::NoReply { method: None })
            }
            _ => Err(Failure::InvalidRequest(
                "neither a request, a notification nor a response",
            )),
        }
    }
}

/// The raw value is already valid JSON, so its first byte tells its type.
fn is_string_or_number(id: &RawValue) -> bool {
    matches!(id.get().as_bytes().first(), Some(b'"' | b'-' | b'0'..=b'9'))
}

/// The members of `params` routing looks at; everything else is skipped unread.
#[derive(Deserialize, Default)]
pub(crate) struct Params<'a> {
    #[serde(borrow, default)]
    pub name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    pub uri: Option<&'a RawValue>,
    #[serde(rename = "_meta", borrow, default)]
    pub meta: Option<&'a RawValue>,
    #[serde(rename = "protocolVersion", borrow, default)]
    pub protocol_version: Option<&'a RawValue>,
}

impl<'a> Params<'a> {
    /// `None` when params is present but not an object.
    pub(crate) fn parse(params: Option<&'a RawValue>) -> Option<Self> {
        match params {
            None => Some(Self::default()),
            Some(p) => serde_json::from_str(p.get()).ok(),
        }
    }
}
