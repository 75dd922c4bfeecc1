//! The `Audit` gRPC service.
//!
//! * `Ship`: data planes, with the data-plane token (as Sync). Batches of one stream are
//!   stored in order, each acknowledged after its durable write; concurrent streams share
//!   flushes (see `store.rs`).
//! * `ListAuditEvents`, `TailAuditEvents`: admins only, authorized by the Admin service
//!   (static admin tokens and SSO admins alike). A tailer that reads too slowly loses live
//!   events and is told so by a marker event (a `GapEvent` with reason `tail-lagged`, never
//!   stored); ingest never waits for it.

use super::store::{Query, MAX_LIMIT};
use super::{AuditError, AuditStore, Recorder};
use crate::admin::AdminService;
use crate::sync::StreamCloser;
use canopy_core::{TokenHash, TokenHasher};
use canopy_proto::v1 as pb;
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

/// Most events one `AuditBatch` may hold.
pub const MAX_BATCH_EVENTS: usize = 5_000;
/// Reason of the marker a slow tailer gets.
pub const TAIL_LAGGED: &str = "tail-lagged";
/// Acks (and tail events) buffered per stream.
const STREAM_BUFFER: usize = 64;

pub struct AuditService {
    store: AuditStore,
    admin: Arc<AdminService>,
    hasher: TokenHasher,
    data_plane_token: TokenHash,
    recorder: Option<Recorder>,
    closer: StreamCloser,
}

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

impl AuditService {
    /// `data_plane_token` is the hash (with `hasher`) of the token data planes present;
    /// `admin` authorizes listings; `closer` ends the streams at shutdown.
    pub fn new(
        store: AuditStore,
        admin: Arc<AdminService>,
        hasher: TokenHasher,
        data_plane_token: TokenHash,
        closer: StreamCloser,
    ) -> Self {
        Self {
            store,
            admin,
            hasher,
            data_plane_token,
            recorder: None,
            closer,
        }
    }

    /// Failed `Ship` authentications are recorded through `recorder`.
    pub fn with_recorder(mut self, recorder: Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    pub fn into_server(self) -> pb::audit_server::AuditServer<Self> {
        pb::audit_server::AuditServer::new(self)
    }

    fn authenticate_data_plane<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(canopy_core::bearer::token);
        let refused = match token {
            None => AuditError::Unauthenticated("data-plane token required"),
            Some(t) if self.hasher.verify(t, &self.data_plane_token) => return Ok(()),
            Some(_) => AuditError::Unauthenticated("invalid data-plane token"),
        };
        if let Some(recorder) = &self.recorder {
            let reason = if token.is_none() {
                "missing token"
            } else {
                "unknown token"
            };
            recorder.auth_failure("audit", "Ship", &super::recorder::peer(req), reason);
        }
        Err(refused.into())
    }
}

fn ack(seq: u64, a: super::Appended) -> pb::AuditAck {
    pb::AuditAck {
        seq,
        stored: a.stored,
        duplicates: a.duplicates,
    }
}

/// The marker a tailer gets in place of `missed` live events.
fn lagged(missed: u64) -> pb::AuditEvent {
    pb::AuditEvent {
        id: Vec::new(),
        time_unix_nanos: super::retention::now(),
        kind: Some(pb::audit_event::Kind::Gap(pb::GapEvent {
            data_plane: String::new(),
            dropped: missed,
            from_unix_nanos: 0,
            to_unix_nanos: 0,
            reason: TAIL_LAGGED.into(),
        })),
    }
}

#[tonic::async_trait]
impl pb::audit_server::Audit for AuditService {
    type ShipStream = BoxStream<pb::AuditAck>;
    type TailAuditEventsStream = BoxStream<pb::AuditEvent>;

    async fn ship(
        &self,
        req: Request<Streaming<pb::AuditBatch>>,
    ) -> Result<Response<Self::ShipStream>, Status> {
        self.authenticate_data_plane(&req)?;
        let peer = super::recorder::peer(&req);
        let mut inbound = req.into_inner();
        let store = self.store.clone();
        let mut open = self.closer.open();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            let mut node = String::new();
            loop {
                let next = tokio::select! {
                    next = inbound.message() => next,
                    () = open.closing() => {
                        let _ = tx.send(Err(Status::unavailable("the control plane is shutting down"))).await;
                        break;
                    }
                };
                let batch = match next {
                    Ok(Some(b)) => b,
                    Ok(None) => break,
                    Err(status) => {
                        tracing::debug!(%status, node = %node, "audit ship stream ended");
                        break;
                    }
                };
                if !batch.node_id.is_empty() {
                    node = batch.node_id.clone();
                }
                if batch.events.len() > MAX_BATCH_EVENTS {
                    let e = AuditError::BatchTooLarge {
                        got: batch.events.len(),
                        max: MAX_BATCH_EVENTS,
                    };
                    let _ = tx.send(Err(e.into())).await;
                    break;
                }
                // Stored even if the shutdown word arrives meanwhile: the ack follows.
                let answer = store.append(batch.events).await.map(|a| ack(batch.seq, a));
                let failed = answer.is_err();
                if let Err(e) = &answer {
                    tracing::warn!(error = %e, node = %node, %peer, "refused an audit batch");
                }
                if tx.send(answer.map_err(Status::from)).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn list_audit_events(
        &self,
        req: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        self.admin.authorize_admin(
            req.metadata(),
            "ListAuditEvents",
            super::recorder::peer(&req),
        )?;
        let r = req.into_inner();
        let query = Query {
            filter: r.filter.unwrap_or_default(),
            since: r.since_unix_nanos,
            until: r.until_unix_nanos,
            limit: r.limit.min(MAX_LIMIT),
            cursor: r.cursor,
        };
        let store = self.store.clone();
        let page = tokio::task::spawn_blocking(move || store.query(&query))
            .await
            .map_err(|_| Status::from(AuditError::Closed))??;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.events,
            next_cursor: page.next_cursor,
        }))
    }

    async fn tail_audit_events(
        &self,
        req: Request<pb::TailAuditEventsRequest>,
    ) -> Result<Response<Self::TailAuditEventsStream>, Status> {
        self.admin.authorize_admin(
            req.metadata(),
            "TailAuditEvents",
            super::recorder::peer(&req),
        )?;
        let r = req.into_inner();
        let filter_pb = r.filter.unwrap_or_default();
        let filter = super::filter::Filter::new(filter_pb.clone())?;
        // Subscribed before the backlog is read: an event stored in between comes twice
        // at worst (once in the backlog, once live), never not at all.
        let mut live = self.store.subscribe();
        let store = self.store.clone();
        let backlog = r.backlog.min(MAX_LIMIT);
        let mut backlog = tokio::task::spawn_blocking(move || store.latest(&filter_pb, backlog))
            .await
            .map_err(|_| Status::from(AuditError::Closed))??;
        backlog.reverse();
        let mut in_backlog: HashSet<Vec<u8>> = backlog.iter().map(|e| e.id.clone()).collect();
        let counters = self.store.clone();
        let mut open = self.closer.open();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        tokio::spawn(async move {
            for event in backlog {
                if tx.send(Ok(event)).await.is_err() {
                    return;
                }
            }
            loop {
                let next = tokio::select! {
                    next = live.recv() => next,
                    () = tx.closed() => return,
                    () = open.closing() => {
                        let _ = tx.send(Err(Status::unavailable("the control plane is shutting down"))).await;
                        return;
                    }
                };
                let event = match next {
                    Ok(e) => e,
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        counters
                            .counters()
                            .tail_lagged
                            .fetch_add(missed, Ordering::Relaxed);
                        if tx.send(Ok(lagged(missed))).await.is_err() {
                            return;
                        }
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                };
                // Stored while the backlog was read: already sent.
                if !in_backlog.is_empty() && in_backlog.remove(&event.id) {
                    continue;
                }
                if filter.matches(&event) && tx.send(Ok((*event).clone())).await.is_err() {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}
