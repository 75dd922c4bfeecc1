//! Legacy HTTP+SSE upstreams (the 2024-11-05 transport).
//!
//! A GET opens the event stream; its `endpoint` event names the URL to POST messages to
//! (resolved against the registered URL and required to be on the same origin, so the
//! registered credentials never go elsewhere). Responses come back on the stream and are
//! routed by id to the waiting caller. When the stream ends, pending callers fail and
//! the next request reconnects and initializes again.

use arc_swap::ArcSwapOption;
use http::HeaderMap;
use serde_json::value::RawValue;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::budget::CallLimits;
use super::event_stream::ResponseEvents;
use super::handshake::{self, ConnInfo};
use super::http::{build_client, credential_headers, parse_url, require_success};
use super::mux::{Action, Mux};
use super::rpc::{self, IdGen};
use super::{describe_reqwest, UpstreamConfig, UpstreamError, UpstreamResponse};

pub(crate) struct SseTransport {
    cfg: Arc<UpstreamConfig>,
    client: reqwest::Client,
    url: reqwest::Url,
    creds: HeaderMap,
    ids: IdGen,
    state: ArcSwapOption<Conn>,
    init: tokio::sync::Mutex<()>,
}

struct Conn {
    post_url: reqwest::Url,
    mux: Arc<Mux>,
    info: ConnInfo,
    reader: JoinHandle<()>,
}

impl Conn {
    fn close(&self, reason: &str) {
        self.reader.abort();
        self.mux.close(reason.to_owned());
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        self.close("connection closed");
    }
}

/// A connection whose handshake is still under way.
struct Opening {
    post_url: reqwest::Url,
    mux: Arc<Mux>,
    reader: JoinHandle<()>,
}

impl SseTransport {
    pub(crate) fn new(cfg: Arc<UpstreamConfig>) -> Result<Self, String> {
        Ok(Self {
            url: parse_url(&cfg)?,
            creds: credential_headers(&cfg)?,
            client: build_client()?,
            cfg,
            ids: IdGen::new(),
            state: ArcSwapOption::empty(),
            init: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) async fn connect(&self) -> Result<ConnInfo, UpstreamError> {
        Ok(self.conn().await?.info.clone())
    }

    pub(crate) async fn request(
        &self,
        method: &str,
        params: Option<&RawValue>,
        limits: CallLimits,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let conn = self.conn().await?;
        // Legacy SSE is handshake era only: drop a 2026-07-28 client's envelope.
        let stripped = super::modern::without_envelope(params);
        let params = stripped.as_deref().or(params);
        self.call(&conn.post_url, &conn.mux, method, params, limits)
            .await
    }

    pub(crate) fn shutdown(&self) {
        if let Some(conn) = self.state.swap(None) {
            conn.close("upstream shut down");
        }
    }

    async fn conn(&self) -> Result<Arc<Conn>, UpstreamError> {
        if let Some(c) = self.state.load_full() {
            if !c.mux.is_closed() {
                return Ok(c);
            }
        }
        let _guard = self.init.lock().await;
        if let Some(c) = self.state.load_full() {
            if !c.mux.is_closed() {
                return Ok(c);
            }
        }
        self.state.store(None);
        let c = Arc::new(self.open().await?);
        self.state.store(Some(Arc::clone(&c)));
        Ok(c)
    }

    async fn open(&self) -> Result<Conn, UpstreamError> {
        let resp = self
            .client
            .get(self.url.clone())
            .headers(self.creds.clone())
            .header(http::header::ACCEPT, "text/event-stream")
            .send()
            .await
            .map_err(|e| self.cfg.unreachable(describe_reqwest(e)))?;
        require_success(&self.cfg, resp.status())?;
        let mux = Mux::new(self.cfg.name.as_str().into());
        let (endpoint_tx, endpoint_rx) = oneshot::channel();
        let reader = tokio::spawn(read_stream(
            resp,
            self.url.clone(),
            Arc::clone(&mux),
            endpoint_tx,
            self.client.clone(),
            self.creds.clone(),
            Arc::clone(&self.cfg),
        ));
        // If this future is dropped (deadline) before the connection is stored, the
        // reader must not live on holding the stream open.
        let guard = AbortOnDrop(Some(reader.abort_handle()));
        let opening = match endpoint_rx.await {
            Ok(Ok(post_url)) => Opening {
                post_url,
                mux,
                reader,
            },
            Ok(Err(reason)) => {
                reader.abort();
                return Err(self.cfg.protocol_error(reason));
            }
            Err(_) => {
                return Err(self
                    .cfg
                    .protocol_error("event stream ended before its endpoint event".into()))
            }
        };
        let info = self.initialize(&opening).await;
        let info = match info {
            Ok(i) => i,
            Err(e) => {
                opening.reader.abort();
                opening.mux.close("handshake failed".into());
                return Err(e);
            }
        };
        guard.disarm();
        Ok(Conn {
            post_url: opening.post_url,
            mux: opening.mux,
            info,
            reader: opening.reader,
        })
    }

    async fn initialize(&self, o: &Opening) -> Result<ConnInfo, UpstreamError> {
        let params = handshake::initialize_params(&self.cfg)?;
        let resp = self
            .call(
                &o.post_url,
                &o.mux,
                "initialize",
                Some(&params),
                CallLimits::default(),
            )
            .await?;
        let info = handshake::read_initialize(&self.cfg, resp.outcome)?;
        self.post(
            &o.post_url,
            rpc::encode(None, "notifications/initialized", None),
        )
        .await?;
        Ok(info)
    }

    async fn call(
        &self,
        post_url: &reqwest::Url,
        mux: &Arc<Mux>,
        method: &str,
        params: Option<&RawValue>,
        limits: CallLimits,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let id = self.ids.next();
        let mut ticket = mux
            .register(id, rpc::request_progress_token(params), limits)
            .map_err(|r| self.cfg.unreachable(r))?;
        self.post(
            post_url,
            rpc::encode(Some(id), method, params.map(RawValue::get)),
        )
        .await?;
        ticket.wait().await.map_err(|f| f.into_error(&self.cfg))
    }

    async fn post(&self, url: &reqwest::Url, body: Vec<u8>) -> Result<(), UpstreamError> {
        let resp = self
            .client
            .post(url.clone())
            .headers(self.creds.clone())
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| self.cfg.unreachable(describe_reqwest(e)))?;
        require_success(&self.cfg, resp.status())
    }
}

struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl AbortOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            h.abort();
        }
    }
}

/// Reads the event stream until it ends, then fails every pending caller.
async fn read_stream(
    resp: reqwest::Response,
    base: reqwest::Url,
    mux: Arc<Mux>,
    endpoint_tx: oneshot::Sender<Result<reqwest::Url, String>>,
    client: reqwest::Client,
    creds: HeaderMap,
    cfg: Arc<UpstreamConfig>,
) {
    let mut events = ResponseEvents::new(reqwest::Body::from(resp));
    let mut endpoint_tx = Some(endpoint_tx);
    let mut post_url: Option<reqwest::Url> = None;
    let reason = loop {
        let ev = match events.next().await {
            Ok(Some(ev)) => ev,
            Ok(None) => break "event stream ended".to_owned(),
            Err(e) => break e.to_string(),
        };
        match ev.event.as_str() {
            "endpoint" => {
                let resolved = resolve_endpoint(&base, ev.data.trim());
                if let Ok(url) = &resolved {
                    post_url = Some(url.clone());
                }
                if let Some(tx) = endpoint_tx.take() {
                    let _ = tx.send(resolved);
                }
            }
            "message" => {
                if let Action::Reply(body) = mux.deliver(&ev.data) {
                    if let Some(url) = &post_url {
                        // Answer off the reader so a slow POST never stalls responses.
                        let req = client
                            .post(url.clone())
                            .headers(creds.clone())
                            .header(http::header::CONTENT_TYPE, "application/json")
                            .body(body);
                        let server = Arc::clone(&cfg);
                        tokio::spawn(async move {
                            if let Err(e) = req.send().await {
                                tracing::debug!(server = %server.name, error = %describe_reqwest(e), "refusing a server request failed");
                            }
                        });
                    }
                }
            }
            _ => {}
        }
    };
    tracing::debug!(server = %cfg.name, %reason, "legacy SSE stream closed");
    mux.close(reason);
}

fn resolve_endpoint(base: &reqwest::Url, endpoint: &str) -> Result<reqwest::Url, String> {
    let url = base
        .join(endpoint)
        .map_err(|_| "endpoint event is not a URL".to_owned())?;
    if url.origin() != base.origin() {
        return Err("endpoint event points to another origin".into());
    }
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_resolution() {
        let base = reqwest::Url::parse("http://127.0.0.1:9/sse?x=1").expect("url");
        assert_eq!(
            resolve_endpoint(&base, "/messages?session_id=a")
                .expect("ok")
                .as_str(),
            "http://127.0.0.1:9/messages?session_id=a"
        );
        assert_eq!(
            resolve_endpoint(&base, "msg").expect("ok").as_str(),
            "http://127.0.0.1:9/msg"
        );
        assert!(resolve_endpoint(&base, "http://evil.example/m").is_err());
    }
}
