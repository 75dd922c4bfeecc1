//! The `Sync` gRPC service: one long-lived stream per data plane.
//!
//! A data plane says hello with the revision it holds. It then receives either the change
//! records since that revision (a *resume*) or, when those were compacted away or it holds
//! nothing, a *snapshot* in chunks; then every live change in revision order. It acks each
//! revision it applies; the acks feed [`Fleet`], which revoking commands wait on.
//!
//! Ordering without gaps or duplicates: the stream subscribes to live changes *before*
//! reading the backlog or the snapshot, remembers the last revision it sent, and drops
//! live records at or below it. If the live channel lags (the data plane reads too
//! slowly), it re-reads the backlog from the last revision sent.
//!
//! Only token hashes travel (and the token-hash key, which data planes need to hash the
//! bearer tokens they receive), plus what data planes need to call upstreams.

mod closer;
pub(crate) mod convert;
mod snapshot_cache;
#[cfg(test)]
mod tests;

use crate::fleet::{Connection, Fleet};
use crate::identity::Keys;
use crate::store::{ChangeRecord, Store, StoreError};
use canopy_core::{TokenHash, TokenHasher};
use canopy_proto::v1::{
    sync_request, sync_response, sync_server::Sync, ChangeBatch, SnapshotChunk, SyncHello,
    SyncRequest, SyncResponse,
};
pub(crate) use closer::OpenStream;
pub use closer::StreamCloser;
use snapshot_cache::{CachedClients, SnapshotCache};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::{wrappers::ReceiverStream, Stream};
use tonic::{Request, Response, Status, Streaming};

/// Changes per `ChangeBatch` when replaying a backlog.
const BACKLOG_BATCH: usize = 512;
/// Clients per snapshot chunk: keeps each message far below gRPC's 4 MiB default.
const SNAPSHOT_CHUNK_CLIENTS: usize = 4096;
/// An empty batch is sent this often when nothing changes, so data planes can tell a
/// quiet control plane from a dead one.
const HEARTBEAT: Duration = Duration::from_secs(5);
/// How long a new stream may take to say hello.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SyncService {
    store: Arc<Store>,
    fleet: Arc<Fleet>,
    data_plane_token: TokenHash,
    snapshots: Arc<SnapshotCache>,
    /// Where unknown-`kid` reports go (`None`: they are ignored).
    keys: Option<Arc<Keys>>,
    closer: StreamCloser,
    recorder: Option<crate::audit::Recorder>,
}

impl SyncService {
    /// `data_plane_token` is the hash (with the store's hasher) of the token data planes
    /// must present.
    ///
    /// Starts filling the snapshot cache in the background, so the first data planes that
    /// need a snapshot do not wait for the store: call it inside a Tokio runtime.
    pub fn new(store: Arc<Store>, fleet: Arc<Fleet>, data_plane_token: TokenHash) -> Self {
        let snapshots = Arc::new(SnapshotCache::default());
        snapshots.prefill(&store, SNAPSHOT_CHUNK_CLIENTS);
        Self {
            store,
            fleet,
            data_plane_token,
            snapshots,
            keys: None,
            closer: StreamCloser::default(),
            recorder: None,
        }
    }

    /// Sends data planes' unknown-`kid` reports to `keys`, which re-fetches the provider's keys.
    pub fn with_keys(mut self, keys: Arc<Keys>) -> Self {
        self.keys = Some(keys);
        self
    }

    /// Ends every stream of this service at shutdown (see `sync/closer.rs`).
    pub fn closer(&self) -> StreamCloser {
        self.closer.clone()
    }

    /// Failed authentications are recorded in the audit trail through `recorder`.
    pub fn with_recorder(mut self, recorder: crate::audit::Recorder) -> Self {
        self.recorder = Some(recorder);
        self
    }

    fn authenticate<T>(&self, req: &Request<T>, command: &str) -> Result<(), Status> {
        let token = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(canopy_core::bearer::token);
        let (status, reason) = match token {
            Some(t) if self.store.hasher().verify(t, &self.data_plane_token) => return Ok(()),
            Some(_) => (
                Status::unauthenticated("invalid data-plane token"),
                "unknown token",
            ),
            None => (
                Status::unauthenticated("data-plane token required"),
                "missing token",
            ),
        };
        if let Some(recorder) = &self.recorder {
            let peer = crate::audit::recorder::peer(req);
            recorder.auth_failure("sync", command, &peer, reason);
        }
        Err(status)
    }
}

type SyncStream = Pin<Box<dyn Stream<Item = Result<SyncResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Sync for SyncService {
    type StreamStream = SyncStream;

    async fn stream(
        &self,
        req: Request<Streaming<SyncRequest>>,
    ) -> Result<Response<SyncStream>, Status> {
        self.authenticate(&req, "Stream")?;
        let mut inbound = req.into_inner();
        let hello = match tokio::time::timeout(HELLO_TIMEOUT, inbound.message()).await {
            Ok(Ok(Some(SyncRequest {
                msg: Some(sync_request::Msg::Hello(h)),
            }))) => h,
            Ok(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "the first message must be a hello",
                ))
            }
            Ok(Err(status)) => return Err(status),
            Err(_) => return Err(Status::deadline_exceeded("no hello received")),
        };
        if hello.node_id.is_empty() {
            return Err(Status::invalid_argument("hello.node_id must not be empty"));
        }
        // Subscribe before anything is read, so no change can fall between backlog and live.
        let live = self.store.subscribe();
        let (tx, rx) = mpsc::channel(16);
        let held = if hello.has_state { hello.revision } else { 0 };
        let connection = self.fleet.connect(&hello.node_id, &hello.address, held);
        tracing::info!(node_id = %hello.node_id, address = %hello.address, revision = held, "data plane connected");
        let session = Session {
            store: Arc::clone(&self.store),
            tx,
            connection: Arc::new(connection),
            sent: 0,
            encoded_clients: hello.accepts_encoded_clients,
            snapshots: Arc::clone(&self.snapshots),
            keys: self.keys.clone(),
        };
        tokio::spawn(session.run(hello, live, inbound, self.closer.open()));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One data plane's stream.
struct Session {
    store: Arc<Store>,
    tx: mpsc::Sender<Result<SyncResponse, Status>>,
    connection: Arc<Connection>,
    /// The highest revision sent (or covered by the snapshot sent).
    sent: u64,
    /// The data plane reads `SnapshotChunk.encoded_clients` (see the proto).
    encoded_clients: bool,
    snapshots: Arc<SnapshotCache>,
    keys: Option<Arc<Keys>>,
}

/// Why a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// The data plane went away.
    Closed,
    /// The server is shutting down.
    ShuttingDown,
    Store(StoreError),
    Internal(String),
}

impl From<StoreError> for End {
    fn from(e: StoreError) -> Self {
        End::Store(e)
    }
}

impl End {
    fn describe(&self) -> String {
        match self {
            End::Closed => "the stream closed".into(),
            End::ShuttingDown => "the control plane is shutting down; reconnect later".into(),
            End::Store(e) => format!("control plane store error: {e}"),
            End::Internal(e) => e.clone(),
        }
    }
}

impl Session {
    async fn run(
        mut self,
        hello: SyncHello,
        mut live: broadcast::Receiver<Arc<ChangeRecord>>,
        inbound: Streaming<SyncRequest>,
        mut open: OpenStream,
    ) {
        let node_id = self.connection.node_id().to_owned();
        let acks = tokio::spawn(read_acks(
            inbound,
            Arc::clone(&self.connection),
            self.keys.clone(),
        ));
        let outcome = tokio::select! {
            outcome = self.serve(&hello, &mut live) => outcome,
            () = open.closing() => End::ShuttingDown,
        };
        acks.abort();
        match outcome {
            End::Closed => tracing::info!(%node_id, "data plane disconnected"),
            End::ShuttingDown => {
                tracing::info!(%node_id, "closing the sync stream: shutting down");
                // Never waits: a data plane that does not read must not hold the shutdown.
                let _ = self
                    .tx
                    .try_send(Err(Status::unavailable(End::ShuttingDown.describe())));
            }
            failed => {
                let e = failed.describe();
                tracing::error!(%node_id, error = %e, "sync stream failed");
                let _ = self.tx.send(Err(Status::internal(e))).await;
            }
        }
    }

    async fn serve(
        &mut self,
        hello: &SyncHello,
        live: &mut broadcast::Receiver<Arc<ChangeRecord>>,
    ) -> End {
        let start = if hello.has_state && hello.revision <= self.store.revision() {
            self.resume(hello.revision).await
        } else {
            self.snapshot().await
        };
        if let Err(e) = start {
            return e;
        }
        loop {
            let next = tokio::select! {
                r = live.recv() => r,
                _ = tokio::time::sleep(HEARTBEAT) => {
                    if let Err(e) = self.send(sync_response::Msg::Changes(ChangeBatch::default())).await {
                        return e;
                    }
                    continue;
                }
                _ = self.tx.closed() => return End::Closed,
            };
            let result = match next {
                Ok(record) => self.send_live(&record).await,
                Err(broadcast::error::RecvError::Lagged(_)) => self.resume(self.sent).await,
                Err(broadcast::error::RecvError::Closed) => return End::Closed,
            };
            if let Err(e) = result {
                return e;
            }
        }
    }

    async fn send(&self, msg: sync_response::Msg) -> Result<(), End> {
        self.tx
            .send(Ok(SyncResponse { msg: Some(msg) }))
            .await
            .map_err(|_| End::Closed)
    }

    async fn send_live(&mut self, record: &ChangeRecord) -> Result<(), End> {
        if record.revision <= self.sent {
            return Ok(());
        }
        let change = convert::change(record);
        self.send(sync_response::Msg::Changes(ChangeBatch {
            changes: vec![change],
        }))
        .await?;
        self.sent = record.revision;
        Ok(())
    }

    /// Sends the changes after `from`, or a snapshot when they were compacted away.
    async fn resume(&mut self, from: u64) -> Result<(), End> {
        let Some(backlog) = self.store.changes_since(from)? else {
            tracing::info!(node_id = %self.connection.node_id(), from, "change log compacted past the data plane's revision; sending a snapshot");
            // The data plane holds `from`: no snapshot older than that may replace it.
            self.sent = self.sent.max(from);
            return self.snapshot().await;
        };
        self.sent = self.sent.max(from);
        self.send_backlog(&backlog).await
    }

    /// Sends `backlog` (the changes after `self.sent`) in batches; an empty batch when
    /// there is none, so the data plane knows it is current.
    async fn send_backlog(&mut self, backlog: &[ChangeRecord]) -> Result<(), End> {
        for batch in backlog.chunks(BACKLOG_BATCH) {
            let changes = batch
                .iter()
                .filter(|r| r.revision > self.sent)
                .map(convert::change)
                .collect::<Vec<_>>();
            if let Some(last) = batch.last() {
                self.send(sync_response::Msg::Changes(ChangeBatch { changes }))
                    .await?;
                self.sent = self.sent.max(last.revision);
            }
        }
        if backlog.is_empty() {
            // Tell the data plane it is current, so it can report itself fresh and ready.
            self.send(sync_response::Msg::Changes(ChangeBatch::default()))
                .await?;
        }
        Ok(())
    }

    /// Sends the whole state: the cached clients and the changes since (see
    /// `snapshot_cache`), or, to data planes that read clients only as messages, every
    /// client read from the store.
    async fn snapshot(&mut self) -> Result<(), End> {
        if self.encoded_clients {
            let (cached, backlog) = self
                .snapshots
                .current(&self.store, SNAPSHOT_CHUNK_CLIENTS, self.sent)
                .await?;
            return self.snapshot_from_cache(&cached, &backlog).await;
        }
        self.snapshot_from_store().await
    }

    /// The first chunk of a snapshot at `revision`: everything but the clients.
    fn first_chunk(&self, revision: u64, total_clients: u64) -> Result<SnapshotChunk, End> {
        let hasher: &TokenHasher = self.store.hasher();
        Ok(SnapshotChunk {
            revision,
            first: true,
            last: false,
            mode: convert::mode(self.store.mode()) as i32,
            token_hash_key: hasher.key().to_vec(),
            clients: Vec::new(),
            servers: self.store.servers()?.iter().map(convert::server).collect(),
            total_clients,
            encoded_clients: Vec::new(),
            identity_providers: self
                .store
                .identity_providers()?
                .iter()
                .map(convert::identity::provider)
                .collect(),
            access_rules: self
                .store
                .access_rules()?
                .iter()
                .map(convert::identity::rule)
                .collect(),
            revoked_subjects: self
                .store
                .revocations()?
                .iter()
                .map(convert::identity::revocation)
                .collect(),
        })
    }

    /// Sends `part` (the clients of one chunk) in `chunk` and starts the next chunk.
    async fn send_chunk(&self, chunk: &mut SnapshotChunk, part: SnapshotChunk) -> Result<(), End> {
        let next = SnapshotChunk {
            revision: chunk.revision,
            ..Default::default()
        };
        let mut full = std::mem::replace(chunk, next);
        full.clients = part.clients;
        full.encoded_clients = part.encoded_clients;
        self.send(sync_response::Msg::Snapshot(full)).await
    }

    async fn snapshot_from_cache(
        &mut self,
        cached: &CachedClients,
        backlog: &[ChangeRecord],
    ) -> Result<(), End> {
        let mut chunk = self.first_chunk(cached.revision, cached.total())?;
        for clients in &cached.chunks {
            let part = SnapshotChunk {
                encoded_clients: clients.clone(),
                ..Default::default()
            };
            self.send_chunk(&mut chunk, part).await?;
        }
        chunk.last = true;
        self.send(sync_response::Msg::Snapshot(chunk)).await?;
        self.sent = cached.revision;
        self.send_backlog(backlog).await?;
        tracing::info!(
            node_id = %self.connection.node_id(),
            revision = cached.revision,
            replayed = backlog.len(),
            "snapshot sent from memory, then the changes since"
        );
        Ok(())
    }

    /// Reads the whole state from the store, for data planes that read clients only as
    /// messages. The revision is read before the records:
    /// changes that land while the records are read arrive again as live changes, and
    /// re-applying a change record is idempotent (each carries the entity's full value).
    async fn snapshot_from_store(&mut self) -> Result<(), End> {
        let revision = self.store.revision();
        // A sizing hint for the receiver's tables (a key scan, far cheaper than decoding).
        let counter = Arc::clone(&self.store);
        let total_clients = tokio::task::spawn_blocking(move || counter.client_count())
            .await
            .unwrap_or(0) as u64;
        let mut chunk = self.first_chunk(revision, total_clients)?;
        // sled iteration is synchronous; a snapshot of a million clients must not stall a
        // runtime worker, so records are read in a blocking task and streamed back, each
        // batch as the client part of a chunk.
        let (rec_tx, mut rec_rx) = mpsc::channel(4);
        let store = Arc::clone(&self.store);
        let reader = tokio::task::spawn_blocking(move || {
            let states = store.clients().map(|c| c.map(|c| convert::client(&c)));
            // Stops early (Ok) once the stream is gone and nobody receives.
            in_chunks(states, SNAPSHOT_CHUNK_CLIENTS, |clients| {
                let part = SnapshotChunk {
                    clients,
                    ..Default::default()
                };
                rec_tx.blocking_send(part).is_ok()
            })
        });
        while let Some(part) = rec_rx.recv().await {
            self.send_chunk(&mut chunk, part).await?;
        }
        match reader.await {
            Ok(result) => result?,
            Err(e) => return Err(End::Internal(format!("snapshot reader failed: {e}"))),
        }
        // The records read may include changes applied but not flushed yet; the data plane
        // applies the snapshot at `last`, so they are durable by then.
        self.store.flush().await?;
        chunk.last = true;
        self.send(sync_response::Msg::Snapshot(chunk)).await?;
        self.sent = revision;
        tracing::info!(node_id = %self.connection.node_id(), revision, "snapshot sent");
        Ok(())
    }
}

/// Hands `items` to `take` in chunks of `size` (the last one shorter) until `take` returns
/// false or an item is an error. Both snapshot readers (the cache's and the message path's)
/// cut the clients this way.
fn in_chunks<T>(
    items: impl Iterator<Item = Result<T, StoreError>>,
    size: usize,
    mut take: impl FnMut(Vec<T>) -> bool,
) -> Result<(), StoreError> {
    let mut chunk = Vec::with_capacity(size);
    for item in items {
        chunk.push(item?);
        if chunk.len() == size && !take(std::mem::replace(&mut chunk, Vec::with_capacity(size))) {
            return Ok(());
        }
    }
    if !chunk.is_empty() {
        take(chunk);
    }
    Ok(())
}

/// Records acks from the data plane's half of the stream, and passes on its reports of
/// token key ids it holds no key for.
async fn read_acks(
    mut inbound: Streaming<SyncRequest>,
    connection: Arc<Connection>,
    keys: Option<Arc<Keys>>,
) {
    loop {
        match inbound.message().await {
            Ok(Some(SyncRequest {
                msg: Some(sync_request::Msg::Ack(ack)),
            })) => connection.ack(ack.revision),
            Ok(Some(SyncRequest {
                msg: Some(sync_request::Msg::UnknownKey(report)),
            })) => {
                connection.touch();
                if let Some(keys) = &keys {
                    keys.unknown_key(&report.issuer, &report.kid);
                }
            }
            Ok(Some(_)) => connection.touch(),
            Ok(None) | Err(_) => break,
        }
    }
}
