//! Client for registered upstream MCP servers.
//!
//! PUBLIC API CONTRACT (other crates code against this; keep it stable):
//!
//! ```ignore
//! let up = Upstream::new(config);                 // cheap; connects lazily, Clone = shared pool
//! let d: Discovery = up.discover().await?;        // initialize/discover + tools/list + prompts/list (paginated)
//! let r: UpstreamResponse = up.request("tools/call", Some(&params_raw), None).await?;
//! // Or, without keeping notifications: relay them as they arrive (bounded per call).
//! match up.call("tools/call", Some(&params_raw), None, CallLimits::default()).await? {
//!     Call::Done(r) => { /* the response (and any notifications that came with it) */ }
//!     Call::Streaming(mut s) => while let Streamed::Notification(n) = s.next().await? { /* … */ },
//! }
//! up.shutdown().await;                             // stops stdio children, closes sessions
//! ```
//!
//! One module per transport: `http` (streamable HTTP, both eras), `sse` (legacy
//! HTTP+SSE), `stdio` (child process). Shared pieces: `rpc` (ids, encoding,
//! classification), `mux` (routing responses by id on shared streams),
//! `event_stream` (SSE parser), `handshake`/`modern` (era specifics),
//! `discover` (paginated listing).
//!
//! Every call has a deadline. Errors name the server and never contain secrets (bearer
//! token, header values, env values).

mod budget;
mod discover;
mod event_stream;
mod handshake;
mod http;
mod modern;
mod mux;
mod rpc;
mod sse;
mod stdio;
mod trace_context;

use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

use crate::jsonrpc::ErrorObject;

pub use budget::{CallLimits, DEFAULT_MAX_CALL_BYTES, DEFAULT_MAX_CALL_NOTIFICATIONS};
pub use trace_context::with_traceparent;

pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    StreamableHttp,
    Sse,
    Stdio,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::StreamableHttp => "streamable_http",
            TransportKind::Sse => "sse",
            TransportKind::Stdio => "stdio",
        }
    }
}

/// Everything needed to reach one upstream. Holds secrets: its Debug output redacts them.
#[derive(Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// The registered server name (used in errors and logs).
    pub name: String,
    pub transport: TransportKind,
    pub url: String,
    /// Sent as `Authorization: Bearer …` to HTTP upstreams.
    pub bearer_token: Option<String>,
    pub headers: BTreeMap<String, String>,
    pub command: String,
    pub args: Vec<String>,
    pub env: BTreeMap<String, String>,
    /// Deadline of every call to this upstream.
    pub timeout: Duration,
}

impl std::fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("name", &self.name)
            .field("transport", &self.transport)
            .field("url", &self.url)
            .field(
                "bearer_token",
                &self.bearer_token.as_ref().map(|_| "<redacted>"),
            )
            .field("headers", &self.headers.keys().collect::<Vec<_>>())
            .field("command", &self.command)
            .field("args", &self.args)
            .field("env", &self.env.keys().collect::<Vec<_>>())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// What discovery found: full, raw JSON definitions (unknown fields preserved).
#[derive(Debug)]
pub struct Discovery {
    pub protocol_version: String,
    pub tools: Vec<Box<RawValue>>,
    pub prompts: Vec<Box<RawValue>>,
}

/// The upstream's answer to one request.
#[derive(Debug)]
pub struct UpstreamResponse {
    /// Notifications (progress, log messages) the upstream sent before its response,
    /// in order, raw.
    pub notifications: Vec<Box<RawValue>>,
    /// `Ok(result)` or the upstream's JSON-RPC error, both raw.
    pub outcome: Result<Box<RawValue>, ErrorObject>,
}

/// A call under way: answered, or streaming notifications before its response.
pub enum Call {
    Done(UpstreamResponse),
    /// The upstream sent a notification before its response; read the rest with
    /// [`ResponseStream::next`]. Nothing is buffered: the upstream is read only as fast as
    /// the caller pulls.
    Streaming(ResponseStream),
}

/// One message of a [`ResponseStream`].
#[derive(Debug)]
pub enum Streamed {
    /// A notification, the whole message raw.
    Notification(Box<RawValue>),
    /// The end of the stream: `Ok(result)` or the upstream's JSON-RPC error, raw.
    Response(Result<Box<RawValue>, ErrorObject>),
}

/// The rest of a call whose upstream streams notifications. Keeps the call's deadline and
/// [`CallLimits`]; dropping it abandons the call (the upstream connection is closed).
pub struct ResponseStream {
    inner: Box<http::Streaming>,
    server: Arc<UpstreamConfig>,
    deadline: tokio::time::Instant,
    timeout: Duration,
}

impl ResponseStream {
    /// The next message; after a [`Streamed::Response`] or an error there is nothing more.
    pub async fn next(&mut self) -> Result<Streamed, UpstreamError> {
        match tokio::time::timeout_at(self.deadline, self.inner.next()).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                server: self.server.name.clone(),
                timeout: self.timeout,
            }),
        }
    }

    /// The registered name of the upstream.
    pub fn server(&self) -> &str {
        &self.server.name
    }
}

#[derive(Debug, Error)]
pub enum UpstreamError {
    #[error("upstream '{server}' is unreachable: {reason}")]
    Unreachable { server: String, reason: String },
    #[error("upstream '{server}' did not answer within {timeout:?}")]
    Timeout { server: String, timeout: Duration },
    #[error("upstream '{server}' broke the MCP protocol: {reason}")]
    Protocol { server: String, reason: String },
    #[error("upstream '{server}' rejected the request: HTTP {status}")]
    HttpStatus { server: String, status: u16 },
    #[error("upstream '{server}' could not be started: {reason}")]
    Spawn { server: String, reason: String },
    /// The upstream sent more before its response than [`CallLimits`] allow.
    #[error("upstream '{server}' exceeded the per-call limit: {reason}")]
    CallLimit { server: String, reason: String },
    #[error("upstream '{server}' answered {method} with error {code}: {message}")]
    Rpc {
        server: String,
        method: String,
        code: i64,
        message: String,
    },
    /// The registration cannot work (bad URL, header that is not a valid HTTP value, …).
    #[error("upstream '{server}' is misconfigured: {reason}")]
    Config { server: String, reason: String },
    /// The caller's request cannot be sent as is (e.g. `params` not an object in 2026-07-28).
    #[error("request to upstream '{server}' is invalid: {reason}")]
    InvalidParams { server: String, reason: String },
}

/// A connection (pool) to one upstream. Clone is cheap and shares the connection.
#[derive(Clone)]
pub struct Upstream {
    config: Arc<UpstreamConfig>,
    transport: Arc<Transport>,
}

// One per upstream, behind an `Arc`: the variants' size difference costs nothing, and
// boxing the HTTP one would add a pointer chase to every call.
#[allow(clippy::large_enum_variant)]
enum Transport {
    Http(http::HttpTransport),
    Sse(sse::SseTransport),
    Stdio(stdio::StdioTransport),
    /// The config cannot work; every call reports why.
    Invalid(String),
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    pub fn new(config: UpstreamConfig) -> Self {
        let config = Arc::new(config);
        let transport = match config.transport {
            TransportKind::StreamableHttp => http::HttpTransport::new(Arc::clone(&config))
                .map_or_else(Transport::Invalid, Transport::Http),
            TransportKind::Sse => sse::SseTransport::new(Arc::clone(&config))
                .map_or_else(Transport::Invalid, Transport::Sse),
            TransportKind::Stdio => {
                Transport::Stdio(stdio::StdioTransport::new(Arc::clone(&config)))
            }
        };
        Self {
            config,
            transport: Arc::new(transport),
        }
    }

    pub fn config(&self) -> &UpstreamConfig {
        &self.config
    }

    /// The deadline used when a call gives none. A zero `timeout` means the default.
    pub fn default_timeout(&self) -> Duration {
        if self.config.timeout.is_zero() {
            DEFAULT_TIMEOUT
        } else {
            self.config.timeout
        }
    }

    /// Connects (handshake or discover), lists tools and prompts following pagination.
    pub async fn discover(&self) -> Result<Discovery, UpstreamError> {
        discover::run(self).await
    }

    /// Connects if needed and returns the negotiated protocol version.
    pub async fn protocol_version(&self) -> Result<String, UpstreamError> {
        Ok(self.connect().await?.protocol_version)
    }

    async fn connect(&self) -> Result<handshake::ConnInfo, UpstreamError> {
        let limit = self.default_timeout();
        self.deadline(limit, async {
            match &*self.transport {
                Transport::Http(t) => t.connect().await,
                Transport::Sse(t) => t.connect().await,
                Transport::Stdio(t) => t.connect().await,
                Transport::Invalid(reason) => Err(self.config_error(reason)),
            }
        })
        .await
    }

    /// Sends one request and waits (bounded by the configured timeout, or `timeout` when
    /// given) for its response, keeping the notifications that come before it (within the
    /// default [`CallLimits`]). `params` is passed through unchanged.
    pub async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
        timeout: Option<Duration>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        match self
            .call(method, params, timeout, CallLimits::default())
            .await?
        {
            Call::Done(r) => Ok(r),
            Call::Streaming(mut stream) => {
                let mut notifications = Vec::new();
                loop {
                    match stream.next().await? {
                        Streamed::Notification(n) => notifications.push(n),
                        Streamed::Response(outcome) => {
                            return Ok(UpstreamResponse {
                                notifications,
                                outcome,
                            })
                        }
                    }
                }
            }
        }
    }

    /// Sends one request. Returns the response, or — when a streamable-HTTP upstream sends
    /// a notification first — a stream of the rest, so the caller decides what to keep.
    /// Shared-stream transports (stdio, legacy SSE) always answer `Done`: their progress
    /// notifications are collected per call, within `limits`. The deadline (the configured
    /// timeout, or `timeout`) covers the whole call, stream included.
    pub async fn call(
        &self,
        method: &str,
        params: Option<&RawValue>,
        timeout: Option<Duration>,
        limits: CallLimits,
    ) -> Result<Call, UpstreamError> {
        let limit = timeout.unwrap_or_else(|| self.default_timeout());
        let deadline = tokio::time::Instant::now() + limit;
        let answer = self
            .deadline(limit, async {
                match &*self.transport {
                    Transport::Http(t) => t.request(method, params, limits).await,
                    Transport::Sse(t) => t
                        .request(method, params, limits)
                        .await
                        .map(http::Answer::Done),
                    Transport::Stdio(t) => t
                        .request(method, params, limits)
                        .await
                        .map(http::Answer::Done),
                    Transport::Invalid(reason) => Err(self.config_error(reason)),
                }
            })
            .await?;
        Ok(match answer {
            http::Answer::Done(r) => Call::Done(r),
            http::Answer::Streaming(inner) => Call::Streaming(ResponseStream {
                inner,
                server: Arc::clone(&self.config),
                deadline,
                timeout: limit,
            }),
        })
    }

    /// Stops child processes and closes sessions.
    pub async fn shutdown(&self) {
        match &*self.transport {
            Transport::Http(t) => t.shutdown().await,
            Transport::Sse(t) => t.shutdown(),
            Transport::Stdio(t) => t.shutdown().await,
            Transport::Invalid(_) => {}
        }
    }

    async fn deadline<T>(
        &self,
        limit: Duration,
        fut: impl std::future::Future<Output = Result<T, UpstreamError>>,
    ) -> Result<T, UpstreamError> {
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => r,
            Err(_) => Err(UpstreamError::Timeout {
                server: self.config.name.clone(),
                timeout: limit,
            }),
        }
    }

    fn config_error(&self, reason: &str) -> UpstreamError {
        UpstreamError::Config {
            server: self.config.name.clone(),
            reason: reason.to_owned(),
        }
    }
}

/// Errors naming this upstream, shared by the transports.
impl UpstreamConfig {
    pub(crate) fn unreachable(&self, reason: String) -> UpstreamError {
        UpstreamError::Unreachable {
            server: self.name.clone(),
            reason,
        }
    }

    pub(crate) fn protocol_error(&self, reason: String) -> UpstreamError {
        UpstreamError::Protocol {
            server: self.name.clone(),
            reason,
        }
    }

    pub(crate) fn http_status(&self, status: u16) -> UpstreamError {
        UpstreamError::HttpStatus {
            server: self.name.clone(),
            status,
        }
    }
}

impl UpstreamConfig {
    /// A streamable-HTTP upstream with defaults (no credentials, 60 s deadline).
    pub fn streamable_http(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self::base(name.into(), TransportKind::StreamableHttp, url.into())
    }

    /// A legacy HTTP+SSE upstream with defaults.
    pub fn sse(name: impl Into<String>, url: impl Into<String>) -> Self {
        Self::base(name.into(), TransportKind::Sse, url.into())
    }

    /// A stdio upstream with defaults.
    pub fn stdio(name: impl Into<String>, command: impl Into<String>, args: Vec<String>) -> Self {
        Self {
            command: command.into(),
            args,
            ..Self::base(name.into(), TransportKind::Stdio, String::new())
        }
    }

    fn base(name: String, transport: TransportKind, url: String) -> Self {
        Self {
            name,
            transport,
            url,
            bearer_token: None,
            headers: BTreeMap::new(),
            command: String::new(),
            args: Vec::new(),
            env: BTreeMap::new(),
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Error text of a reqwest failure with its causes, without the URL (which may carry
/// query credentials).
pub(crate) fn describe_reqwest(e: reqwest::Error) -> String {
    canopy_core::error_chain(&e.without_url())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send_sync<T: Send + Sync>(_: &T) {}
    fn assert_send<T: Send>(_: T) {}

    /// The data plane spawns calls onto a multi-threaded runtime.
    #[test]
    fn upstream_and_its_futures_are_send() {
        let up = Upstream::new(UpstreamConfig::streamable_http(
            "s",
            "http://127.0.0.1:9/mcp",
        ));
        assert_send_sync(&up);
        assert_send(up.request("tools/list", None, None));
        assert_send(up.discover());
        assert_send(up.shutdown());
    }

    #[test]
    fn zero_timeout_means_default() {
        let mut cfg = UpstreamConfig::stdio("s", "true", vec![]);
        cfg.timeout = Duration::ZERO;
        assert_eq!(Upstream::new(cfg).default_timeout(), DEFAULT_TIMEOUT);
    }
}
