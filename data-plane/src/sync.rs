//! The sync client: one long-lived `Sync.Stream` to the control plane.
//!
//! Per session: send `SyncHello` with the held revision; apply snapshot chunks (built
//! aside, swapped at `last`) or change batches (in order, duplicates skipped, a gap
//! ends the session so the next hello asks again from the applied revision); ack the
//! last revision of each applied batch or snapshot. Between sessions: exponential
//! backoff with jitter. Staleness and the applied revision go to [`SyncStatus`].
//!
//! [`SyncStatus`]: crate::status::SyncStatus

use canopy_proto::v1 as pb;
use canopy_proto::v1::sync_client::SyncClient;
use rand::Rng;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::app::DataPlane;
use crate::state::{ApplyError, SnapshotBuilder};

#[derive(Clone)]
pub struct SyncConfig {
    /// `http://host:port` or `https://host:port` of the control plane's gRPC listener.
    pub control_plane: String,
    /// TLS for an `https://` control plane; `None` = plaintext.
    pub tls: Option<tonic::transport::ClientTlsConfig>,
    /// The data-plane token (sent as `authorization: Bearer …`, never logged).
    pub token: String,
    pub node_id: String,
    /// Where this data plane serves `/mcp`, for `canopy list data-planes`.
    pub address: String,
}

impl std::fmt::Debug for SyncConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncConfig")
            .field("control_plane", &self.control_plane)
            .field("tls", &self.tls.is_some())
            .field("node_id", &self.node_id)
            .field("address", &self.address)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Error)]
pub enum SyncError {
    #[error("invalid control-plane URL '{0}'")]
    BadUrl(String),
    #[error("cannot connect to the control plane: {0}")]
    Connect(#[from] tonic::transport::Error),
    #[error("control plane refused the stream: {0}")]
    Status(#[from] tonic::Status),
    #[error("the data-plane token cannot be sent as a header")]
    BadToken,
    #[error(transparent)]
    Apply(#[from] ApplyError),
    #[error("state update task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("the request stream closed")]
    Closed,
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Runs sessions forever (until the task is dropped).
pub async fn run(dp: Arc<DataPlane>, cfg: SyncConfig) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let mut progressed = false;
        let result = session(&dp, &cfg, &mut progressed).await;
        dp.state.status.set_connected(false);
        match result {
            Ok(()) => tracing::info!("control plane closed the sync stream; reconnecting"),
            Err(SyncError::Apply(ApplyError::Gap { applied, got })) => {
                tracing::warn!(
                    applied,
                    got,
                    "gap in the change stream; resyncing from the applied revision"
                )
            }
            Err(SyncError::Status(s)) if s.code() == tonic::Code::Unauthenticated => {
                tracing::error!(
                    "control plane rejected the data-plane token: {}",
                    s.message()
                )
            }
            Err(e) => match crate::tls::classify(&e) {
                // Not transient: retrying will not fix trust, so say what to change.
                Some(failure) => tracing::error!(
                    control_plane = %cfg.control_plane,
                    "cannot connect to the control plane: {}",
                    failure.describe("--control-plane-ca-file")
                ),
                None => {
                    let error = canopy_core::error_chain(&e);
                    // A plaintext client reads a TLS listener's alert as an oversized frame.
                    if !crate::tls::is_https(&cfg.control_plane)
                        && error.contains("frame with invalid size")
                    {
                        tracing::warn!(
                            %error,
                            "sync session ended; if the control plane serves TLS, use an \
                             https:// --control-plane URL"
                        );
                    } else {
                        tracing::warn!(%error, "sync session ended");
                    }
                }
            },
        }
        if progressed {
            backoff = BACKOFF_MIN;
        }
        // Full jitter in [backoff/2, backoff] keeps a fleet from reconnecting in step.
        let ms = u64::try_from(backoff.as_millis()).unwrap_or(u64::MAX);
        let wait = Duration::from_millis(rand::rng().random_range(ms / 2..=ms));
        tokio::time::sleep(wait).await;
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// A channel to the control plane: its URL, TLS and keepalives. The audit shipper
/// connects the same way.
pub(crate) async fn connect(
    control_plane: &str,
    tls: Option<&tonic::transport::ClientTlsConfig>,
) -> Result<Channel, SyncError> {
    let mut endpoint = Endpoint::from_shared(control_plane.to_owned())
        .map_err(|_| SyncError::BadUrl(control_plane.to_owned()))?;
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls.clone())?;
    }
    let endpoint = endpoint
        .connect_timeout(Duration::from_secs(5))
        // Keepalives let an idle but dead connection be noticed, so staleness is real.
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true);
    Ok(endpoint.connect().await?)
}

/// The `authorization` value carrying the data-plane token (never logged).
pub(crate) fn bearer(token: &str) -> Result<MetadataValue<tonic::metadata::Ascii>, SyncError> {
    MetadataValue::try_from(format!("Bearer {token}")).map_err(|_| SyncError::BadToken)
}

async fn session(
    dp: &Arc<DataPlane>,
    cfg: &SyncConfig,
    progressed: &mut bool,
) -> Result<(), SyncError> {
    let channel = connect(&cfg.control_plane, cfg.tls.as_ref()).await?;
    // Snapshot chunks may be larger than tonic's 4 MiB default; the control plane bounds them.
    let mut client = SyncClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .accept_compressed(tonic::codec::CompressionEncoding::Gzip);

    let state = &dp.state;
    let has_state = state.has_state();
    let (tx, rx) = mpsc::channel::<pb::SyncRequest>(16);
    let hello = pb::SyncHello {
        node_id: cfg.node_id.clone(),
        address: cfg.address.clone(),
        revision: state.applied_revision(),
        has_state,
        version: env!("CARGO_PKG_VERSION").to_owned(),
        accepts_encoded_clients: true,
    };
    tx.send(pb::SyncRequest {
        msg: Some(pb::sync_request::Msg::Hello(hello)),
    })
    .await
    .map_err(|_| SyncError::Closed)?;
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut()
        .insert("authorization", bearer(&cfg.token)?);
    let mut stream = client.stream(req).await?.into_inner();
    state.status.set_connected(true);
    *progressed = true;
    tracing::info!(
        revision = state.applied_revision(),
        has_state,
        "sync stream open"
    );

    // Unknown signing keys seen by requests go to the control plane on this stream.
    let reporter = AbortOnDrop(tokio::spawn(report_unknown_keys(dp.clone(), tx.clone())));

    let mut builder: Option<SnapshotBuilder> = None;
    let mut first = true;
    // A snapshot is the control plane's cached clients at some older revision plus the
    // changes since, sent right after it: "snapshot applied" waits for those, so it reports
    // the revision the data plane holds (what /readyz says), not the cache's.
    let mut snapshot_at: Option<u64> = None;
    while let Some(msg) = stream.message().await? {
        state.status.touch();
        let acked = match msg.msg {
            Some(pb::sync_response::Msg::Snapshot(chunk)) => {
                if chunk.first {
                    builder = Some(SnapshotBuilder::new(&chunk)?);
                }
                let mut b = builder.take().ok_or(ApplyError::SnapshotOrder(
                    "snapshot chunk before a first chunk",
                ))?;
                // Decoding a large snapshot is CPU work; keep it off the request workers.
                let (b, last) =
                    tokio::task::spawn_blocking(move || b.add(chunk).map(|last| (b, last)))
                        .await??;
                if last {
                    let dp2 = dp.clone();
                    let rev =
                        tokio::task::spawn_blocking(move || dp2.state.finish_snapshot(b)).await??;
                    dp.state.metrics.snapshots.fetch_add(1, Relaxed);
                    snapshot_at = Some(rev);
                    Some(rev)
                } else {
                    builder = Some(b);
                    None
                }
            }
            Some(pb::sync_response::Msg::Changes(batch)) => {
                if builder.is_some() {
                    return Err(ApplyError::SnapshotOrder("changes inside a snapshot").into());
                }
                if first && has_state {
                    dp.state.metrics.resumes.fetch_add(1, Relaxed);
                    tracing::info!(
                        revision = state.applied_revision(),
                        "sync resumed without snapshot"
                    );
                }
                let acked = if batch.changes.is_empty() {
                    // A heartbeat (or "you are current" after a resume): re-ack the held
                    // revision so the control plane's last-seen and lag stay fresh.
                    Some(state.applied_revision())
                } else {
                    state.apply_changes(batch.changes)?
                };
                if let Some(snapshot_revision) = snapshot_at.take() {
                    tracing::info!(
                        revision = state.applied_revision(),
                        snapshot_revision,
                        "snapshot applied"
                    );
                }
                acked
            }
            None => None,
        };
        first = false;
        if let Some(revision) = acked {
            let ack = pb::SyncRequest {
                msg: Some(pb::sync_request::Msg::Ack(pb::SyncAck { revision })),
            };
            tx.send(ack).await.map_err(|_| SyncError::Closed)?;
        }
    }
    drop(reporter);
    Ok(())
}

/// Sends each (issuer, kid) the request path could not verify (rate-limited there).
async fn report_unknown_keys(dp: Arc<DataPlane>, tx: mpsc::Sender<pb::SyncRequest>) {
    let ids = &dp.state.identities;
    loop {
        ids.unknown_kid_reported().await;
        for (issuer, kid) in ids.take_unknown_kids() {
            tracing::info!(%issuer, kid = ?kid, "token signed with an unknown key; asking the control plane to refresh the JWKS");
            let msg = pb::SyncRequest {
                msg: Some(pb::sync_request::Msg::UnknownKey(pb::UnknownKey {
                    issuer,
                    kid,
                })),
            };
            if tx.send(msg).await.is_err() {
                return;
            }
        }
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests;
