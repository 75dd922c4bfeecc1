//! Client for registered upstream MCP servers.
//!
//! PUBLIC API CONTRACT (other crates code against this; keep it stable):
//!
//! ```ignore
//! let up = Upstream::new(config);                 // cheap; connects lazily, Clone = shared pool
//! let d: Discovery = up.discover().await?;        // initialize/discover + tools/list + prompts/list (paginated)
//! let r: UpstreamResponse = up.request("tools/call", Some(&params_raw), None).await?;
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

mod discover;
mod event_stream;
mod handshake;
mod http;
mod modern;
mod mux;
mod rpc;
mod sse;
mod stdio;

use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;

use crate::jsonrpc::ErrorObject;

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
    /// given) for its response. `params` is passed through unchanged.
    pub async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
        timeout: Option<Duration>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let limit = timeout.unwrap_or_else(|| self.default_timeout());
        self.deadline(limit, async {
            match &*self.transport {
                Transport::Http(t) => t.request(method, params).await,
                Transport::Sse(t) => t.request(method, params).await,
                Transport::Stdio(t) => t.request(method, params).await,
                Transport::Invalid(reason) => Err(self.config_error(reason)),
            }
        })
        .await
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
