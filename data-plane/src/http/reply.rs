//! Writing JSON-RPC responses, and the one place that maps failures to a JSON-RPC code
//! and an HTTP status (STYLE §3).

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use canopy_mcp::jsonrpc::{code, ErrorObject};
use canopy_mcp::protocol::SUPPORTED_VERSIONS;
use canopy_mcp::upstream::UpstreamError;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, WWW_AUTHENTICATE};
use http::{HeaderValue, StatusCode};
use serde_json::value::RawValue;

use crate::audit::Refusal;
use crate::json::push_str;
use canopy_proto::v1::AuditOutcome;

/// The most bytes of a client's input (a method, tool or server name, a header value) an
/// error repeats: a 3 MB method name must not come back as a 3 MB error.
pub(crate) const ECHO_MAX_BYTES: usize = 128;

/// Client input as an error repeats it: cut to [`ECHO_MAX_BYTES`] (on a character
/// boundary) with `…` marking the cut. Shown with `Display`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Echo<'a>(pub &'a str);

impl std::fmt::Display for Echo<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.len() <= ECHO_MAX_BYTES {
            return f.write_str(self.0);
        }
        let mut end = ECHO_MAX_BYTES;
        while !self.0.is_char_boundary(end) {
            end -= 1;
        }
        f.write_str(&self.0[..end])?;
        f.write_str("…")
    }
}

/// An owned [`Echo`]: what a [`Failure`] keeps of client input.
#[derive(Debug)]
pub(crate) struct Echoed(String);

impl Echoed {
    pub(crate) fn new(input: &str) -> Self {
        Self(Echo(input).to_string())
    }
}

impl std::fmt::Display for Echoed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Everything a request can fail with before or instead of a result.
#[derive(Debug)]
pub(crate) enum Failure {
    OriginForbidden,
    UnsupportedMediaType,
    NotAcceptable,
    NotReady,
    Stale,
    /// `--audit-required` and audit events cannot be kept (queue or spool full).
    AuditUnavailable,
    /// 401 (no token, or one that is not valid) or 403 (valid, a required scope missing),
    /// with the RFC 9728 / RFC 6750 challenge.
    Auth {
        kind: Challenge,
        metadata_url: String,
        /// Space-separated scopes to ask for; empty = no `scope` parameter.
        scope: String,
    },
    UnknownServer(Echoed),
    BodyTooLarge,
    /// The body did not arrive within `--body-read-timeout`.
    BodyTimeout,
    BodyUnreadable,
    Parse,
    InvalidRequest(&'static str),
    BatchUnsupported,
    /// 2026-07-28: `_meta` missing or malformed.
    BadMeta(&'static str),
    /// 2026-07-28: a header missing, invalid or disagreeing with the body (values quoted
    /// with [`Echo`]).
    HeaderMismatch(String),
    UnsupportedVersion(Echoed),
    /// `modern`: removed/unknown methods are 404 there, a plain JSON-RPC error before.
    MethodNotFound {
        method: Echoed,
        modern: bool,
    },
    InvalidParams(&'static str),
    /// Out of scope and nonexistent look the same on purpose.
    UnknownTool(Echoed),
    /// The caller's scope is empty (e.g. a signed-in person no access rule matches).
    NoAccess,
    UnknownPrompt(Echoed),
    Upstream(UpstreamError),
}

impl Failure {
    fn status_code_message(&self) -> (StatusCode, i64, String) {
        use Failure::*;
        match self {
            OriginForbidden => (
                StatusCode::FORBIDDEN,
                code::INVALID_REQUEST,
                "Origin not allowed".into(),
            ),
            UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code::INVALID_REQUEST,
                "Content-Type must be application/json".into(),
            ),
            NotAcceptable => (
                StatusCode::NOT_ACCEPTABLE,
                code::INVALID_REQUEST,
                "Accept must allow application/json".into(),
            ),
            NotReady => (
                StatusCode::SERVICE_UNAVAILABLE,
                code::INTERNAL_ERROR,
                "data plane has no state from the control plane yet".into(),
            ),
            Stale => (
                StatusCode::SERVICE_UNAVAILABLE,
                code::INTERNAL_ERROR,
                "data plane state is older than --max-staleness; refusing to serve".into(),
            ),
            AuditUnavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                code::INTERNAL_ERROR,
                "the audit trail cannot keep events (control plane unreachable and the audit \
                 spool full); refusing to serve until it can (--audit-required)"
                    .into(),
            ),
            Auth {
                kind: Challenge::InsufficientScope,
                scope,
                ..
            } => (
                StatusCode::FORBIDDEN,
                code::INVALID_REQUEST,
                format!("Forbidden: the access token lacks a required scope ({scope})"),
            ),
            Auth { .. } => (
                StatusCode::UNAUTHORIZED,
                code::INVALID_REQUEST,
                "Unauthorized: missing, invalid or expired bearer token".into(),
            ),
            UnknownServer(s) => (
                StatusCode::NOT_FOUND,
                code::INVALID_REQUEST,
                format!("Unknown server: {s}"),
            ),
            BodyTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                code::INVALID_REQUEST,
                "request body too large".into(),
            ),
            BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                code::INVALID_REQUEST,
                "request body not received in time".into(),
            ),
            BodyUnreadable => (
                StatusCode::BAD_REQUEST,
                code::PARSE_ERROR,
                "could not read request body".into(),
            ),
            Parse => (
                StatusCode::BAD_REQUEST,
                code::PARSE_ERROR,
                "Parse error".into(),
            ),
            InvalidRequest(m) => (
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                format!("Invalid Request: {m}"),
            ),
            BatchUnsupported => (
                StatusCode::BAD_REQUEST,
                code::INVALID_REQUEST,
                "Invalid Request: JSON-RPC batches are not supported; send one message per POST"
                    .into(),
            ),
            BadMeta(m) => (
                StatusCode::BAD_REQUEST,
                code::INVALID_PARAMS,
                format!("Invalid params: {m}"),
            ),
            HeaderMismatch(m) => (StatusCode::BAD_REQUEST, code::HEADER_MISMATCH, m.clone()),
            UnsupportedVersion(v) => (
                StatusCode::BAD_REQUEST,
                code::UNSUPPORTED_VERSION,
                format!("Unsupported protocol version: {v}"),
            ),
            MethodNotFound { method, modern } => (
                if *modern {
                    StatusCode::NOT_FOUND
                } else {
                    StatusCode::OK
                },
                code::METHOD_NOT_FOUND,
                format!("Method not found: {method}"),
            ),
            InvalidParams(m) => (
                StatusCode::OK,
                code::INVALID_PARAMS,
                format!("Invalid params: {m}"),
            ),
            UnknownTool(n) => (
                StatusCode::OK,
                code::INVALID_PARAMS,
                format!("Unknown tool: {n}"),
            ),
            NoAccess => (
                StatusCode::OK,
                code::INVALID_PARAMS,
                "Forbidden: your token grants no server or tool (no access rule matches you); \
                 ask an admin (`canopy explain access`)"
                    .into(),
            ),
            UnknownPrompt(n) => (
                StatusCode::OK,
                code::INVALID_PARAMS,
                format!("Unknown prompt: {n}"),
            ),
            // The message names the server (UpstreamError's Display does).
            Upstream(e) => (StatusCode::OK, code::INTERNAL_ERROR, e.to_string()),
        }
    }

    fn data(&self) -> Option<Vec<u8>> {
        match self {
            Failure::UnsupportedVersion(v) => {
                let mut d = b"{\"supported\":[".to_vec();
                for (i, s) in SUPPORTED_VERSIONS.iter().enumerate() {
                    if i > 0 {
                        d.push(b',');
                    }
                    push_str(&mut d, s);
                }
                d.extend_from_slice(b"],\"requested\":");
                push_str(&mut d, &v.0);
                d.push(b'}');
                Some(d)
            }
            _ => None,
        }
    }

    /// How the audit trail records this failure: outcome, `error.type` and the JSON-RPC
    /// code the client gets.
    pub(crate) fn refusal(&self) -> Refusal {
        use Failure::*;
        let (outcome, error_type) = match self {
            OriginForbidden => (AuditOutcome::Denied, "origin_forbidden"),
            UnsupportedMediaType => (AuditOutcome::Error, "unsupported_media_type"),
            NotAcceptable => (AuditOutcome::Error, "not_acceptable"),
            NotReady => (AuditOutcome::Error, "not_ready"),
            Stale => (AuditOutcome::Error, "stale_state"),
            AuditUnavailable => (AuditOutcome::Error, "audit_unavailable"),
            Auth {
                kind: Challenge::InsufficientScope,
                ..
            } => (AuditOutcome::Denied, "forbidden"),
            Auth { .. } => (AuditOutcome::Denied, "unauthorized"),
            UnknownServer(_) => (AuditOutcome::Error, "unknown_server"),
            BodyTooLarge => (AuditOutcome::Error, "too_large"),
            BodyTimeout => (AuditOutcome::Error, "body_timeout"),
            BodyUnreadable => (AuditOutcome::Error, "body_unreadable"),
            Parse => (AuditOutcome::Error, "parse_error"),
            InvalidRequest(_) => (AuditOutcome::Error, "invalid_request"),
            BatchUnsupported => (AuditOutcome::Error, "batch_unsupported"),
            BadMeta(_) | InvalidParams(_) => (AuditOutcome::Error, "invalid_params"),
            HeaderMismatch(_) => (AuditOutcome::Error, "header_mismatch"),
            UnsupportedVersion(_) => (AuditOutcome::Error, "unsupported_version"),
            MethodNotFound { .. } => (AuditOutcome::Error, "method_not_found"),
            UnknownTool(_) => (AuditOutcome::Error, "unknown_tool"),
            NoAccess => (AuditOutcome::Denied, "no_access"),
            UnknownPrompt(_) => (AuditOutcome::Error, "unknown_prompt"),
            Upstream(e) => (
                AuditOutcome::Error,
                match e {
                    UpstreamError::Unreachable { .. } => "upstream_unreachable",
                    UpstreamError::Timeout { .. } => "upstream_timeout",
                    UpstreamError::Protocol { .. } => "upstream_protocol",
                    UpstreamError::HttpStatus { .. } => "upstream_http_status",
                    UpstreamError::Spawn { .. } => "upstream_spawn",
                    UpstreamError::CallLimit { .. } => "upstream_call_limit",
                    UpstreamError::Rpc { .. } => "upstream_rpc_error",
                    UpstreamError::Config { .. } => "upstream_config",
                    UpstreamError::InvalidParams { .. } => "upstream_invalid_params",
                },
            ),
        };
        Refusal {
            outcome,
            error_type,
            jsonrpc_code: self.status_code_message().1,
        }
    }

    /// The JSON-RPC error message alone, for a reply whose status line is already sent
    /// (the end of an SSE stream).
    pub(crate) fn write(&self, out: &mut Vec<u8>, id: Option<&RawValue>) {
        let (_, code, message) = self.status_code_message();
        write_error(out, id, code, &message, self.data().as_deref());
    }

    pub(crate) fn into_response(self, id: Option<&RawValue>) -> Response {
        let (status, code, message) = self.status_code_message();
        let data = self.data();
        let mut body = Vec::with_capacity(96 + message.len());
        write_error(&mut body, id, code, &message, data.as_deref());
        let mut resp = json(status, body);
        if let Failure::Auth {
            kind,
            metadata_url,
            scope,
        } = &self
        {
            if let Ok(v) = HeaderValue::from_str(&challenge(*kind, metadata_url, scope)) {
                resp.headers_mut().insert(WWW_AUTHENTICATE, v);
            }
        }
        resp
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// No bearer token: no `error` (RFC 6750 §3.1).
    Missing,
    Invalid,
    InsufficientScope,
}

/// `Bearer resource_metadata="…", scope="…"` (RFC 9728 §5.1), with `error` when a token
/// was presented.
fn challenge(kind: Challenge, metadata_url: &str, scope: &str) -> String {
    let mut out = String::with_capacity(96 + metadata_url.len() + scope.len());
    out.push_str("Bearer ");
    match kind {
        Challenge::Missing => {}
        Challenge::Invalid => out.push_str("error=\"invalid_token\", "),
        Challenge::InsufficientScope => out.push_str("error=\"insufficient_scope\", "),
    }
    // Both are built from configuration (the public URL, scope names), never from the
    // request; quotes and backslashes cannot occur in them, but are dropped to be sure.
    let quoted = |s: &str| s.replace(['"', '\\'], "");
    out.push_str("resource_metadata=\"");
    out.push_str(&quoted(metadata_url));
    out.push('"');
    if !scope.is_empty() {
        out.push_str(", scope=\"");
        out.push_str(&quoted(scope));
        out.push('"');
    }
    out
}

fn write_id(out: &mut Vec<u8>, id: Option<&RawValue>) {
    out.extend_from_slice(b"{\"jsonrpc\":\"2.0\",\"id\":");
    match id {
        Some(id) => out.extend_from_slice(id.get().as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
}

pub(crate) fn write_error(
    out: &mut Vec<u8>,
    id: Option<&RawValue>,
    code: i64,
    message: &str,
    data: Option<&[u8]>,
) {
    write_id(out, id);
    out.extend_from_slice(b",\"error\":{\"code\":");
    out.extend_from_slice(code.to_string().as_bytes());
    out.extend_from_slice(b",\"message\":");
    push_str(out, message);
    if let Some(d) = data {
        out.extend_from_slice(b",\"data\":");
        out.extend_from_slice(d);
    }
    out.extend_from_slice(b"}}");
}

/// An upstream's JSON-RPC error, relayed with the client's id.
pub(crate) fn write_upstream_error(out: &mut Vec<u8>, id: &RawValue, e: &ErrorObject) {
    write_error(
        out,
        Some(id),
        e.code,
        &e.message,
        e.data.as_deref().map(|d| d.get().as_bytes()),
    );
}

/// `{"jsonrpc":"2.0","id":…,"result":` — the caller writes the result and then `}`.
pub(crate) fn open_result(out: &mut Vec<u8>, id: &RawValue) {
    write_id(out, Some(id));
    out.extend_from_slice(b",\"result\":");
}

pub(crate) fn json(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut r = Response::new(Body::from(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// A JSON response made of a per-request head, a shared chunk (e.g. the cached tools list,
/// not copied) and a tail. The length is exact, so it is sent with a `Content-Length`.
pub(crate) fn json_parts(head: Vec<u8>, shared: Bytes, tail: Bytes) -> Response {
    let body = Parts {
        parts: [Bytes::from(head), shared, tail],
        next: 0,
    };
    let mut r = Response::new(Body::new(body));
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

struct Parts {
    parts: [Bytes; 3],
    next: usize,
}

impl http_body::Body for Parts {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        while let Some(part) = this.parts.get_mut(this.next) {
            let chunk = std::mem::take(part);
            this.next += 1;
            if !chunk.is_empty() {
                return std::task::Poll::Ready(Some(Ok(http_body::Frame::data(chunk))));
            }
        }
        std::task::Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        self.rest().all(|b| b.is_empty())
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::SizeHint::with_exact(self.rest().map(|b| b.len() as u64).sum())
    }
}

impl Parts {
    fn rest(&self) -> impl Iterator<Item = &Bytes> {
        self.parts.get(self.next..).unwrap_or_default().iter()
    }
}

pub(crate) fn accepted() -> Response {
    let mut r = Response::new(Body::empty());
    *r.status_mut() = StatusCode::ACCEPTED;
    r
}

/// An SSE stream: each relayed notification as one event, then the response.
pub(crate) fn sse(notifications: &[Box<RawValue>], response: &[u8]) -> Response {
    let mut out = Vec::with_capacity(response.len() + 64 * (notifications.len() + 1));
    for n in notifications {
        push_event(&mut out, n.get().as_bytes());
    }
    push_event(&mut out, response);
    sse_body(Body::from(out))
}

/// A `text/event-stream` response with `body` (already framed as events).
pub(crate) fn sse_body(body: Body) -> Response {
    let mut r = Response::new(body);
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/event-stream"));
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

pub(crate) fn push_event(out: &mut Vec<u8>, data: &[u8]) {
    out.extend_from_slice(b"event: message\n");
    // JSON text may contain raw newlines between tokens; SSE needs one `data:` per line.
    for line in data.split(|&b| b == b'\n') {
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(line.strip_suffix(b"\r").unwrap_or(line));
        out.push(b'\n');
    }
    out.push(b'\n');
}
