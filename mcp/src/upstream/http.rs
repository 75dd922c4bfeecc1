//! Streamable HTTP upstreams, both protocol eras.
//!
//! Era selection happens once per connection: a 2026-07-28 `server/discover` probe; a
//! result listing 2026-07-28 selects modern mode (no handshake, `_meta` + headers on every
//! request), anything else falls back to the `initialize` handshake (session id and
//! negotiated version sent on every later request, re-initialized once on HTTP 404).
//!
//! The connection state is an `ArcSwapOption`: the request path only loads it. Setting it
//! up is serialized by a mutex that is never touched when a connection exists, so
//! concurrent first callers cause one handshake, not many.

mod client;
mod reply;

use arc_swap::ArcSwapOption;
use http::{HeaderMap, HeaderName, HeaderValue};
use serde_json::value::RawValue;
use std::sync::Arc;
use std::time::Duration;

use self::client::Request;
use self::reply::{Item, Read, Reply, ReplyEvents};
use super::budget::CallLimits;
use super::handshake::{self, ConnInfo};
use super::rpc::{self, IdGen};
use super::{describe_reqwest, modern, Streamed, UpstreamConfig, UpstreamError, UpstreamResponse};
use crate::protocol::{
    HEADER_METHOD, HEADER_NAME, HEADER_PROTOCOL_VERSION, HEADER_SESSION_ID, MODERN_VERSION,
};

pub(crate) struct HttpTransport {
    cfg: Arc<UpstreamConfig>,
    client: client::Client,
    uri: http::Uri,
    /// Credentials, registered headers, Accept and Content-Type.
    base: HeaderMap,
    ids: IdGen,
    state: ArcSwapOption<Session>,
    init: tokio::sync::Mutex<()>,
}

/// One established connection: which era, and the handshake's version and session.
#[derive(Debug)]
struct Session {
    modern: bool,
    info: ConnInfo,
    version: HeaderValue,
    session_id: Option<HeaderValue>,
}

/// An HTTP client tuned for long-lived pooled use, for the legacy SSE transport.
pub(crate) fn build_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(90))
        .tcp_keepalive(Duration::from_secs(30))
        .tcp_nodelay(true)
        // Like the streamable-HTTP client: upstreams are reached directly.
        .no_proxy()
        .build()
        .map_err(|e| format!("cannot create an HTTP client: {}", describe_reqwest(e)))
}

/// The registered URL, checked once.
pub(crate) fn parse_url(cfg: &UpstreamConfig) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(&cfg.url).map_err(|e| format!("invalid url: {e}"))?;
    match url.scheme() {
        "http" | "https" => Ok(url),
        other => Err(format!("url scheme '{other}' is not http or https")),
    }
}

/// Registered credentials and headers. Values are marked sensitive so they never show in
/// Debug output; errors name the header, never its value.
pub(crate) fn credential_headers(cfg: &UpstreamConfig) -> Result<HeaderMap, String> {
    let mut map = HeaderMap::new();
    for (k, v) in &cfg.headers {
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| format!("invalid header name '{k}'"))?;
        let mut value = HeaderValue::from_str(v)
            .map_err(|_| format!("value of header '{k}' is not a valid HTTP value"))?;
        value.set_sensitive(true);
        map.insert(name, value);
    }
    if let Some(token) = &cfg.bearer_token {
        let mut value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|_| "bearer token is not a valid HTTP header value".to_owned())?;
        value.set_sensitive(true);
        map.insert(http::header::AUTHORIZATION, value);
    }
    Ok(map)
}

/// An HTTP status error unless `status` is a success. Shared by the HTTP transports.
pub(crate) fn require_success(
    cfg: &UpstreamConfig,
    status: http::StatusCode,
) -> Result<(), UpstreamError> {
    if status.is_success() {
        Ok(())
    } else {
        Err(cfg.http_status(status.as_u16()))
    }
}

enum Sent {
    Done(Answer),
    /// HTTP 404 on a request that carried a session id: the session is gone.
    SessionExpired,
}

/// What a request got: the response, or a reply stream that sent a notification first.
pub(crate) enum Answer {
    Done(UpstreamResponse),
    /// Boxed: rare, and large next to a response.
    Streaming(Box<Streaming>),
}

/// The rest of a reply stream after its first notification, read on demand. Owns what it
/// needs to answer server-to-client requests on the same session (built only here, off
/// the common path).
pub(crate) struct Streaming {
    first: Option<Box<RawValue>>,
    rest: ReplyEvents,
    client: client::Client,
    uri: http::Uri,
    base: HeaderMap,
    session: Arc<Session>,
}

impl Streaming {
    pub(crate) async fn next(&mut self) -> Result<Streamed, UpstreamError> {
        if let Some(first) = self.first.take() {
            return Ok(Streamed::Notification(first));
        }
        loop {
            match self.rest.next().await? {
                Item::Notification(n) => return Ok(Streamed::Notification(n)),
                Item::Response(outcome) => return Ok(Streamed::Response(outcome)),
                Item::ServerRequest(answer) => {
                    let mut req =
                        client::request(http::Method::POST, &self.uri, &self.base, answer);
                    session_headers(&mut req, &self.session);
                    if let Err(e) = self.client.send(req).await {
                        tracing::debug!(error = %e, "refusing a server request failed");
                    }
                }
            }
        }
    }
}

fn session_headers(req: &mut Request, session: &Session) {
    let h = req.headers_mut();
    h.insert(HEADER_PROTOCOL_VERSION, session.version.clone());
    if let Some(sid) = &session.session_id {
        h.insert(HEADER_SESSION_ID, sid.clone());
    }
}

impl HttpTransport {
    pub(crate) fn new(cfg: Arc<UpstreamConfig>) -> Result<Self, String> {
        let url = parse_url(&cfg)?;
        let mut base = credential_headers(&cfg)?;
        base.insert(
            http::header::ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        base.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let uri = url
            .as_str()
            .parse::<http::Uri>()
            .map_err(|e| format!("invalid url: {e}"))?;
        Ok(Self {
            client: client::Client::new(),
            cfg,
            uri,
            base,
            ids: IdGen::new(),
            state: ArcSwapOption::empty(),
            init: tokio::sync::Mutex::new(()),
        })
    }

    fn server(&self) -> String {
        self.cfg.name.clone()
    }

    pub(crate) async fn connect(&self) -> Result<ConnInfo, UpstreamError> {
        Ok(self.session().await?.info.clone())
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
        limits: CallLimits,
    ) -> Result<Answer, UpstreamError> {
        let session = self.session().await?;
        match self.send(&session, method, params, limits).await? {
            Sent::Done(r) => Ok(r),
            Sent::SessionExpired => {
                tracing::info!(server = %self.cfg.name, "upstream session expired, initializing again");
                let fresh = self.reconnect(&session).await?;
                match self.send(&fresh, method, params, limits).await? {
                    Sent::Done(r) => Ok(r),
                    Sent::SessionExpired => Err(self.cfg.http_status(404)),
                }
            }
        }
    }

    pub(crate) async fn shutdown(&self) {
        let Some(session) = self.state.swap(None) else {
            return;
        };
        let Some(sid) = &session.session_id else {
            return;
        };
        // Best effort: tell a stateful server it can drop our session.
        let mut req = client::request(http::Method::DELETE, &self.uri, &self.base, Vec::new());
        let h = req.headers_mut();
        h.remove(http::header::CONTENT_TYPE);
        h.insert(HEADER_SESSION_ID, sid.clone());
        h.insert(HEADER_PROTOCOL_VERSION, session.version.clone());
        match tokio::time::timeout(Duration::from_secs(5), self.client.send(req)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(server = %self.cfg.name, error = %e, "closing upstream session failed");
            }
            Err(_) => {
                tracing::debug!(server = %self.cfg.name, "closing upstream session timed out");
            }
        }
    }

    async fn session(&self) -> Result<Arc<Session>, UpstreamError> {
        if let Some(s) = self.state.load_full() {
            return Ok(s);
        }
        let _guard = self.init.lock().await;
        if let Some(s) = self.state.load_full() {
            return Ok(s);
        }
        let s = Arc::new(self.establish().await?);
        self.state.store(Some(Arc::clone(&s)));
        Ok(s)
    }

    /// Replaces `stale` unless another caller already did.
    async fn reconnect(&self, stale: &Arc<Session>) -> Result<Arc<Session>, UpstreamError> {
        let _guard = self.init.lock().await;
        if let Some(cur) = self.state.load_full() {
            if !Arc::ptr_eq(&cur, stale) {
                return Ok(cur);
            }
        }
        self.state.store(None);
        let s = Arc::new(self.establish().await?);
        self.state.store(Some(Arc::clone(&s)));
        Ok(s)
    }

    async fn establish(&self) -> Result<Session, UpstreamError> {
        if let Some(info) = self.probe_modern().await? {
            tracing::debug!(server = %self.cfg.name, "upstream speaks 2026-07-28");
            return Ok(Session {
                modern: true,
                info,
                version: HeaderValue::from_static(MODERN_VERSION),
                session_id: None,
            });
        }
        self.handshake().await
    }

    /// `Ok(None)`: not a modern server, fall back to the handshake. Only failures that
    /// the handshake would hit too (unreachable, refused credentials) are errors.
    async fn probe_modern(&self) -> Result<Option<ConnInfo>, UpstreamError> {
        let id = self.ids.next();
        let body = rpc::encode(
            Some(id),
            "server/discover",
            Some(handshake::DISCOVER_PARAMS),
        );
        let mut req = self.post(body);
        let h = req.headers_mut();
        h.insert(
            HEADER_PROTOCOL_VERSION,
            HeaderValue::from_static(MODERN_VERSION),
        );
        h.insert(HEADER_METHOD, HeaderValue::from_static("server/discover"));
        let resp = self.send_raw(req).await?;
        let status = resp.status().as_u16();
        if status == 401 || status == 403 {
            return Err(self.cfg.http_status(status));
        }
        match reply::read_all(resp, id, &self.cfg, CallLimits::default()).await {
            Ok(Reply {
                response:
                    UpstreamResponse {
                        outcome: Ok(result),
                        ..
                    },
                ..
            }) => Ok(handshake::parse_discover(&result)),
            Ok(_) => Ok(None),
            Err(e) => {
                tracing::debug!(server = %self.cfg.name, error = %e, "server/discover probe failed; using the handshake");
                Ok(None)
            }
        }
    }

    async fn handshake(&self) -> Result<Session, UpstreamError> {
        let id = self.ids.next();
        let body = rpc::encode(Some(id), "initialize", Some(handshake::INITIALIZE_PARAMS));
        let resp = self.send_raw(self.post(body)).await?;
        let session_id = resp.headers().get(HEADER_SESSION_ID).cloned();
        let reply = reply::read_all(resp, id, &self.cfg, CallLimits::default()).await?;
        let info = handshake::read_initialize(&self.cfg, reply.response.outcome)?;
        let version = HeaderValue::from_str(&info.protocol_version).map_err(|_| {
            self.cfg
                .protocol_error("initialize answered an unusable protocolVersion".into())
        })?;
        let session = Session {
            modern: false,
            info,
            version,
            session_id,
        };
        let note = rpc::encode(None, "notifications/initialized", None);
        let resp = self
            .send_raw(self.with_session(self.post(note), &session))
            .await?;
        require_success(&self.cfg, resp.status())?;
        tracing::debug!(server = %self.cfg.name, version = %session.info.protocol_version, "upstream initialized");
        Ok(session)
    }

    async fn send(
        &self,
        session: &Arc<Session>,
        method: &str,
        params: Option<&RawValue>,
        limits: CallLimits,
    ) -> Result<Sent, UpstreamError> {
        let id = self.ids.next();
        let req = if session.modern {
            let shaped =
                modern::shape(method, params).map_err(|reason| UpstreamError::InvalidParams {
                    server: self.server(),
                    reason,
                })?;
            let method_value =
                modern::method_header(method).ok_or_else(|| UpstreamError::InvalidParams {
                    server: self.server(),
                    reason: "method is not a valid header value".into(),
                })?;
            let mut req = self.post(rpc::encode(Some(id), method, Some(&shaped.params)));
            let h = req.headers_mut();
            h.insert(HEADER_PROTOCOL_VERSION, session.version.clone());
            h.insert(HEADER_METHOD, method_value);
            if let Some(name) = shaped.name {
                let value =
                    modern::name_header(&name).ok_or_else(|| UpstreamError::InvalidParams {
                        server: self.server(),
                        reason: "name is not encodable".into(),
                    })?;
                h.insert(HEADER_NAME, value);
            }
            req
        } else {
            // A 2026-07-28 client's envelope must not reach a handshake-era server.
            let stripped = modern::without_envelope(params);
            let params = stripped.as_deref().or(params);
            self.with_session(
                self.post(rpc::encode(Some(id), method, params.map(RawValue::get))),
                session,
            )
        };
        let resp = self.send_raw(req).await?;
        if resp.status() == http::StatusCode::NOT_FOUND && session.session_id.is_some() {
            return Ok(Sent::SessionExpired);
        }
        let (answer, server_requests) = match reply::read(resp, id, &self.cfg, limits).await? {
            Read::Done(reply) => (Answer::Done(reply.response), reply.server_requests),
            Read::Streaming {
                first,
                server_requests,
                rest,
            } => (
                Answer::Streaming(Box::new(Streaming {
                    first: Some(first),
                    rest,
                    client: self.client.clone(),
                    uri: self.uri.clone(),
                    base: self.base.clone(),
                    session: Arc::clone(session),
                })),
                server_requests,
            ),
        };
        // Server-to-client requests (handshake era only): refuse each, on the same session,
        // so the server is not left waiting. Their answers carry nothing we need.
        for answer in server_requests {
            let post = self.with_session(self.post(answer), session);
            if let Err(e) = self.client.send(post).await {
                tracing::debug!(server = %self.cfg.name, error = %e, "refusing a server request failed");
            }
        }
        Ok(Sent::Done(answer))
    }

    fn post(&self, body: Vec<u8>) -> Request {
        let mut req = client::request(http::Method::POST, &self.uri, &self.base, body);
        if let Some(tp) = super::trace_context::current() {
            req.headers_mut().insert("traceparent", tp);
        }
        req
    }

    fn with_session(&self, mut req: Request, session: &Session) -> Request {
        session_headers(&mut req, session);
        req
    }

    async fn send_raw(&self, req: Request) -> Result<client::Response, UpstreamError> {
        self.client
            .send(req)
            .await
            .map_err(|reason| self.cfg.unreachable(reason))
    }
}
