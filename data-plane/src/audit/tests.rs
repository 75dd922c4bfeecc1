#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a panic is the failure report
//! The shipper against an in-process control plane: a tonic server implementing the
//! generated `Audit` service, which stores events by id (acknowledging only after storing)
//! and can be stopped, started again on the same port, or made to lose an ack.

use super::*;
use axum::body::Body;
use canopy_proto::v1 as pb;
use canopy_proto::v1::audit_server::{Audit as AuditService, AuditServer};
use http_body_util::BodyExt;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tower::ServiceExt;

use crate::app::{DataPlane, HttpSettings};
use crate::state::tests_support::{install, snapshot};

const TOKEN: &str = "dp-token-0123456789";
/// Generous: only a bound on a hang, never a performance assertion.
const WAIT: Duration = Duration::from_secs(20);

#[derive(Default)]
struct Store {
    events: Mutex<HashMap<Vec<u8>, pb::AuditEvent>>,
    duplicates: AtomicU64,
    /// The next batch is stored but its ack is lost with the stream.
    lose_next_ack: AtomicBool,
    bad_tokens: AtomicU64,
}

impl Store {
    fn len(&self) -> usize {
        self.events.lock().unwrap().len()
    }

    fn requests(&self) -> Vec<pb::McpRequestEvent> {
        self.events
            .lock()
            .unwrap()
            .values()
            .filter_map(|e| match &e.kind {
                Some(pb::audit_event::Kind::Request(r)) => Some(r.clone()),
                _ => None,
            })
            .collect()
    }

    fn gaps(&self) -> Vec<pb::GapEvent> {
        self.events
            .lock()
            .unwrap()
            .values()
            .filter_map(|e| match &e.kind {
                Some(pb::audit_event::Kind::Gap(g)) => Some(g.clone()),
                _ => None,
            })
            .collect()
    }
}

struct TestCp {
    store: Arc<Store>,
    kill: watch::Receiver<bool>,
}

#[tonic::async_trait]
impl AuditService for TestCp {
    type ShipStream = ReceiverStream<Result<pb::AuditAck, tonic::Status>>;
    type TailAuditEventsStream = ReceiverStream<Result<pb::AuditEvent, tonic::Status>>;

    async fn ship(
        &self,
        req: tonic::Request<tonic::Streaming<pb::AuditBatch>>,
    ) -> Result<tonic::Response<Self::ShipStream>, tonic::Status> {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        if auth != Some(&format!("Bearer {TOKEN}")) {
            self.store.bad_tokens.fetch_add(1, Relaxed);
            return Err(tonic::Status::unauthenticated("bad token"));
        }
        let mut inbound = req.into_inner();
        let (tx, rx) = mpsc::channel(16);
        let store = self.store.clone();
        let mut kill = self.kill.clone();
        tokio::spawn(async move {
            loop {
                let batch = tokio::select! {
                    _ = kill.changed() => return,
                    m = inbound.message() => match m {
                        Ok(Some(b)) => b,
                        _ => return,
                    },
                };
                let (mut stored, mut duplicates) = (0, 0);
                {
                    let mut m = store.events.lock().unwrap();
                    for e in batch.events {
                        if m.contains_key(&e.id) {
                            duplicates += 1;
                        } else {
                            m.insert(e.id.clone(), e);
                            stored += 1;
                        }
                    }
                }
                store.duplicates.fetch_add(u64::from(duplicates), Relaxed);
                if store.lose_next_ack.swap(false, Relaxed) {
                    let _ = tx
                        .send(Err(tonic::Status::unavailable("lost the ack")))
                        .await;
                    return;
                }
                let ack = pb::AuditAck {
                    seq: batch.seq,
                    stored,
                    duplicates,
                };
                if tx.send(Ok(ack)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }

    async fn list_audit_events(
        &self,
        _: tonic::Request<pb::ListAuditEventsRequest>,
    ) -> Result<tonic::Response<pb::ListAuditEventsResponse>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }

    async fn tail_audit_events(
        &self,
        _: tonic::Request<pb::TailAuditEventsRequest>,
    ) -> Result<tonic::Response<Self::TailAuditEventsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not in this test"))
    }
}

/// A control plane on `addr` until [`Cp::stop`]: streams are cut, the port closed.
struct Cp {
    kill: watch::Sender<bool>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn start_cp(addr: SocketAddr, store: Arc<Store>) -> Cp {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let (kill, kill_rx) = watch::channel(false);
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let _ = tonic::transport::Server::builder()
            .add_service(AuditServer::new(TestCp {
                store,
                kill: kill_rx,
            }))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async {
                let _ = stop_rx.await;
            })
            .await;
    });
    Cp { kill, stop, task }
}

impl Cp {
    async fn stop(self) {
        let _ = self.kill.send(true);
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .expect("test control plane did not stop")
            .unwrap();
    }
}

/// A free loopback port nothing listens on (yet).
async fn free_addr() -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

struct Shipping {
    audit: Arc<Audit>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

fn ship_to(
    addr: SocketAddr,
    spool: Option<std::path::PathBuf>,
    max: u64,
    required: bool,
) -> Shipping {
    let mut settings = AuditSettings::new("dp-test");
    settings.required = required;
    settings.queue_capacity = 64;
    let (audit, rx) = Audit::new(settings);
    let mut cfg = ShipperConfig::new(format!("http://{addr}"), TOKEN);
    cfg.spool = spool;
    cfg.spool_max_bytes = max;
    cfg.flush_every = Duration::from_millis(20);
    cfg.drain_every = Duration::from_millis(5);
    cfg.batch_max_events = 16;
    cfg.window = 2;
    let (stop, stop_rx) = oneshot::channel();
    let task = tokio::spawn(run_shipper(audit.clone(), rx, cfg, stop_rx));
    Shipping { audit, stop, task }
}

impl Shipping {
    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(WAIT, self.task)
            .await
            .unwrap()
            .unwrap();
    }
}

fn event(n: u32) -> pb::AuditEvent {
    let mut id = vec![0u8; 16];
    id[..4].copy_from_slice(&n.to_le_bytes());
    pb::AuditEvent {
        id,
        time_unix_nanos: i64::from(n) + 1,
        kind: Some(pb::audit_event::Kind::Request(pb::McpRequestEvent {
            method: "tools/call".into(),
            request_id: n.to_string(),
            ..Default::default()
        })),
    }
}

/// Submits events `from..to`, pacing so the bounded queue never overflows.
async fn submit(audit: &Audit, from: u32, to: u32) {
    for n in from..to {
        while audit.queue_depth() >= 32 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        audit.submit(event(n));
    }
}

async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !f() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn request_ids(store: &Store) -> Vec<u32> {
    let mut ids: Vec<u32> = store
        .requests()
        .iter()
        .map(|r| r.request_id.parse().unwrap())
        .collect();
    ids.sort_unstable();
    ids
}

#[tokio::test]
async fn events_reach_the_control_plane_with_the_token() {
    let addr = free_addr().await;
    let store = Arc::new(Store::default());
    let cp = start_cp(addr, store.clone()).await;
    let s = ship_to(addr, None, DEFAULT_SPOOL_MAX_BYTES, false);
    submit(&s.audit, 0, 100).await;
    until("100 events stored", || store.len() == 100).await;
    until("100 acks", || s.audit.shipped_total() == 100).await;
    assert_eq!(request_ids(&store), (0..100).collect::<Vec<_>>());
    assert!(store.requests().iter().all(|r| r.data_plane == "dp-test"));
    assert_eq!(store.bad_tokens.load(Relaxed), 0);
    assert_eq!(s.audit.dropped_total(), 0);
    s.stop().await;
    cp.stop().await;
}

#[tokio::test]
async fn outage_spools_and_delivers_every_event_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("audit.spool");
    let addr = free_addr().await;
    let store = Arc::new(Store::default());
    // The control plane is down: events go to the spool.
    let s = ship_to(addr, Some(spool.clone()), DEFAULT_SPOOL_MAX_BYTES, false);
    submit(&s.audit, 0, 200).await;
    until("200 events spooled", || {
        s.audit.spooled.load(Relaxed) == 200
    })
    .await;
    assert!(s.audit.spool_bytes.load(Relaxed) > 0);
    // The data plane restarts before the control plane is back: the spool survives.
    s.stop().await;
    let s = ship_to(addr, Some(spool.clone()), DEFAULT_SPOOL_MAX_BYTES, false);
    submit(&s.audit, 200, 250).await;
    let cp = start_cp(addr, store.clone()).await;
    until("250 events stored", || store.len() == 250).await;
    until("spool emptied", || s.audit.spool_bytes.load(Relaxed) == 0).await;

    // An ack lost after the control plane stored the batch, then an outage: the batch
    // comes again with the same ids and is stored once.
    store.lose_next_ack.store(true, Relaxed);
    submit(&s.audit, 250, 300).await;
    until("the lost ack", || !store.lose_next_ack.load(Relaxed)).await;
    cp.stop().await;
    submit(&s.audit, 300, 400).await;
    let cp = start_cp(addr, store.clone()).await;
    until("400 events stored", || store.len() == 400).await;
    until("every event acknowledged", || {
        s.audit.spool_bytes.load(Relaxed) == 0 && s.audit.queue_depth() == 0
    })
    .await;
    assert_eq!(request_ids(&store), (0..400).collect::<Vec<_>>());
    assert!(
        store.duplicates.load(Relaxed) > 0,
        "the unacknowledged batch was not re-sent"
    );
    assert_eq!(s.audit.dropped_total(), 0);
    assert!(store.gaps().is_empty());
    assert_eq!(std::fs::metadata(&spool).unwrap().len(), 16);
    s.stop().await;
    cp.stop().await;
}

#[tokio::test]
async fn a_full_spool_counts_drops_and_reports_a_gap() {
    let dir = tempfile::tempdir().unwrap();
    let spool = dir.path().join("audit.spool");
    let addr = free_addr().await;
    let store = Arc::new(Store::default());
    // Room for a few dozen events only.
    let s = ship_to(addr, Some(spool), 4096, false);
    submit(&s.audit, 0, 300).await;
    until("every event spooled or dropped", || {
        s.audit.spooled.load(Relaxed) + s.audit.dropped_total() == 300
    })
    .await;
    assert!(s.audit.dropped_total() > 0);
    let mut text = String::new();
    s.audit.render_metrics(&mut text);
    assert!(text.contains("canopy_audit_events_dropped_total"), "{text}");
    let spooled = s.audit.spooled.load(Relaxed);
    let dropped = s.audit.dropped_total();
    let cp = start_cp(addr, store.clone()).await;
    until("a gap event", || !store.gaps().is_empty()).await;
    until("the spooled events", || {
        store.requests().len() as u64 == spooled
    })
    .await;
    let gaps = store.gaps();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].dropped, dropped);
    assert_eq!(gaps[0].data_plane, "dp-test");
    assert!(gaps[0].from_unix_nanos >= 1 && gaps[0].from_unix_nanos <= gaps[0].to_unix_nanos);
    assert!(gaps[0].to_unix_nanos <= 300);
    s.stop().await;
    cp.stop().await;
}

async fn ping(dp: &Arc<DataPlane>) -> (http::StatusCode, String) {
    let req = http::Request::builder()
        .method("POST")
        .uri("/mcp")
        .header("content-type", "application/json")
        .header("accept", "application/json")
        .body(Body::from(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#))
        .unwrap();
    let resp = crate::http::router(dp.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(body.to_vec()).unwrap())
}

#[tokio::test]
async fn audit_required_refuses_while_events_cannot_be_kept() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr().await;
    let store = Arc::new(Store::default());
    let s = ship_to(addr, Some(dir.path().join("audit.spool")), 4096, true);
    let dp = DataPlane::with_audit(HttpSettings::default(), Some(s.audit.clone()));
    let mut snap = snapshot(1, vec![], vec![]);
    snap.mode = pb::Mode::Development as i32;
    install(&dp.state, snap);
    // Requests are served (and audited) until the spool is full, then refused.
    let mut refused = None;
    for _ in 0..2_000 {
        let (status, body) = ping(&dp).await;
        if status == http::StatusCode::SERVICE_UNAVAILABLE {
            refused = Some(body);
            break;
        }
        assert_eq!(status, http::StatusCode::OK, "{body}");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let body = refused.expect("never refused with a full spool");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"]["code"], -32603);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--audit-required"),
        "{body}"
    );
    assert!(s.audit.dropped_total() > 0);
    // Still refused while nothing changes.
    assert_eq!(ping(&dp).await.0, http::StatusCode::SERVICE_UNAVAILABLE);
    // The control plane returns, the spool drains: served again, and the refusals were
    // audited where they could be (the gap counts the rest).
    let cp = start_cp(addr, store.clone()).await;
    until("served again", || !s.audit.refusing()).await;
    assert_eq!(ping(&dp).await.0, http::StatusCode::OK);
    until("a gap event", || !store.gaps().is_empty()).await;
    s.stop().await;
    cp.stop().await;
}

#[tokio::test]
async fn without_a_spool_the_queue_waits_and_lost_acks_are_resent() {
    let addr = free_addr().await;
    let store = Arc::new(Store::default());
    let s = ship_to(addr, None, DEFAULT_SPOOL_MAX_BYTES, false);
    // Down: the events wait in the queue (it holds 64).
    for n in 0..50 {
        s.audit.submit(event(n));
    }
    let cp = start_cp(addr, store.clone()).await;
    until("50 events stored", || store.len() == 50).await;
    // A lost ack: the in-memory batch is sent again on the next stream.
    store.lose_next_ack.store(true, Relaxed);
    submit(&s.audit, 50, 60).await;
    until("60 events stored", || store.len() == 60).await;
    until("every event acknowledged", || s.audit.shipped_total() >= 60).await;
    assert_eq!(request_ids(&store), (0..60).collect::<Vec<_>>());
    assert!(store.duplicates.load(Relaxed) > 0);
    assert_eq!(s.audit.dropped_total(), 0);
    s.stop().await;
    cp.stop().await;
}
