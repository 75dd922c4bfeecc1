//! The control plane's own events (changes, failed authentications): handed to a bounded
//! queue and written by one task through the store (durable, group-committed), so an Admin
//! call does not wait for an fsync of its audit event.

use super::{retention, AuditStore};
use canopy_proto::v1 as pb;
use pb::audit_event::Kind;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Events waiting for the writer before new ones are dropped (and counted).
const QUEUE: usize = 16 * 1024;
/// Most events one write takes.
const BATCH: usize = 1024;

/// Records control-plane events. Clone is cheap; the writer task ends (after writing what
/// is queued) when the last clone is dropped.
#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::Sender<pb::AuditEvent>,
    /// Events dropped because the queue was full (a flood of failed logins): kept as a
    /// counter until the control plane exports metrics.
    dropped: Arc<AtomicU64>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

/// A fresh event id (16 random bytes).
pub fn new_id() -> Vec<u8> {
    rand::random::<[u8; 16]>().to_vec()
}

impl Recorder {
    pub fn start(store: AuditStore) -> (Self, JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<pb::AuditEvent>(QUEUE);
        let task = tokio::spawn(async move {
            let mut buf = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut buf, BATCH).await > 0 {
                if let Err(e) = store.append(std::mem::take(&mut buf)).await {
                    tracing::error!(error = %e, "writing control-plane audit events failed");
                }
            }
        });
        (
            Self {
                tx,
                dropped: Arc::default(),
            },
            task,
        )
    }

    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    pub fn record(&self, kind: Kind) {
        let event = pb::AuditEvent {
            id: new_id(),
            time_unix_nanos: retention::now(),
            kind: Some(kind),
        };
        if self.tx.try_send(event).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Once per power of two: a flood must not also flood the log.
            if n.is_power_of_two() {
                tracing::warn!(
                    dropped = n,
                    "audit queue full: control-plane audit events dropped"
                );
            }
        }
    }

    /// A failed authentication on `surface` ("admin", "sync", "audit"); `reason` never holds
    /// the credential.
    pub fn auth_failure(&self, surface: &str, command: &str, client_address: &str, reason: &str) {
        self.record(Kind::AuthFailure(pb::AuthFailureEvent {
            surface: surface.to_owned(),
            client_address: client_address.to_owned(),
            reason: reason.to_owned(),
            command: command.to_owned(),
        }));
    }
}

impl Recorder {
    /// A change the control plane made by itself (the periodic refresh).
    pub(crate) fn system_change(
        &self,
        command: &str,
        object: &super::change::Object,
        before: String,
        store: &crate::store::Store,
        revision: u64,
    ) {
        self.record(Kind::Change(pb::ChangeEvent {
            actor: Some(pb::AuditPrincipal {
                kind: Some(pb::audit_principal::Kind::System(true)),
            }),
            command: command.to_owned(),
            object_kind: object.kind().to_owned(),
            object_name: object.name(),
            before,
            after: object.snapshot(store),
            revision,
            error: String::new(),
            client_address: String::new(),
        }));
    }
}

/// The peer address of a gRPC request as text ("" when unknown).
pub fn peer<T>(req: &tonic::Request<T>) -> String {
    req.remote_addr().map(|a| a.to_string()).unwrap_or_default()
}
