#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! The sync client against an in-process control plane whose every message the test
//! scripts: snapshot in chunks, acks, change batches, reconnect + resume, gap → resync.

use super::*;
use canopy_proto::v1::sync_server::{Sync, SyncServer};
use std::time::Duration;
use tokio::time::timeout;
use tokio_stream::wrappers::TcpListenerStream;

use crate::app::HttpSettings;
use crate::state::tests_support::{client, server};

struct Conn {
    hello: pb::SyncHello,
    inbound: tonic::Streaming<pb::SyncRequest>,
    out: mpsc::Sender<Result<pb::SyncResponse, tonic::Status>>,
}

struct MockCp {
    conns: mpsc::Sender<Conn>,
}

#[tonic::async_trait]
impl Sync for MockCp {
    type StreamStream = ReceiverStream<Result<pb::SyncResponse, tonic::Status>>;

    async fn stream(
        &self,
        req: tonic::Request<tonic::Streaming<pb::SyncRequest>>,
    ) -> Result<tonic::Response<Self::StreamStream>, tonic::Status> {
        let auth = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        if auth.as_deref() != Some("Bearer dp-token-0123456789") {
            return Err(tonic::Status::unauthenticated("bad token"));
        }
        let mut inbound = req.into_inner();
        let Some(pb::SyncRequest {
            msg: Some(pb::sync_request::Msg::Hello(hello)),
        }) = inbound.message().await?
        else {
            return Err(tonic::Status::invalid_argument("hello first"));
        };
        let (tx, rx) = mpsc::channel(16);
        let _ = self
            .conns
            .send(Conn {
                hello,
                inbound,
                out: tx,
            })
            .await;
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

const WAIT: Duration = Duration::from_secs(10);

async fn next_conn(rx: &mut mpsc::Receiver<Conn>) -> Conn {
    timeout(WAIT, rx.recv())
        .await
        .expect("no connection in time")
        .expect("server gone")
}

async fn next_ack(c: &mut Conn) -> u64 {
    let m = timeout(WAIT, c.inbound.message())
        .await
        .expect("no ack in time")
        .expect("stream error")
        .expect("eof");
    match m.msg {
        Some(pb::sync_request::Msg::Ack(a)) => a.revision,
        other => panic!("expected an ack, got {other:?}"),
    }
}

async fn send(c: &Conn, msg: pb::sync_response::Msg) {
    c.out
        .send(Ok(pb::SyncResponse { msg: Some(msg) }))
        .await
        .expect("client gone");
}

fn changes(list: Vec<(u64, pb::change::Kind)>) -> pb::sync_response::Msg {
    pb::sync_response::Msg::Changes(pb::ChangeBatch {
        changes: list
            .into_iter()
            .map(|(revision, k)| pb::Change {
                revision,
                kind: Some(k),
            })
            .collect(),
    })
}

fn knows(dp: &DataPlane, token: &str) -> bool {
    let v = dp.state.load_view().unwrap();
    v.tokens.lookup(&v.hasher.hash(token), 0).is_some()
}

#[tokio::test]
async fn snapshot_changes_resume_and_gap() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (conns_tx, mut conns) = mpsc::channel(4);
    let cp = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SyncServer::new(MockCp { conns: conns_tx }))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    let dp = DataPlane::new(HttpSettings::default());
    let cfg = SyncConfig {
        control_plane: format!("http://{addr}"),
        tls: None,
        token: "dp-token-0123456789".into(),
        node_id: "node-1".into(),
        address: "127.0.0.1:8080".into(),
    };
    let task = tokio::spawn(run(dp.clone(), cfg));

    // 1. Cold start: no state → snapshot in two chunks, acked once at `last`.
    let mut c = next_conn(&mut conns).await;
    assert_eq!(
        (
            c.hello.has_state,
            c.hello.node_id.as_str(),
            c.hello.address.as_str()
        ),
        (false, "node-1", "127.0.0.1:8080")
    );
    let mut first = crate::state::tests_support::snapshot(
        5,
        vec![client("alice", "alice-token-0123456789", &["gh"])],
        vec![],
    );
    first.last = false;
    send(&c, pb::sync_response::Msg::Snapshot(first)).await;
    let second = pb::SnapshotChunk {
        revision: 5,
        last: true,
        clients: vec![client("carol", "carol-token-0123456789", &[])],
        servers: vec![server("gh", "http://127.0.0.1:9/mcp", &["t"])],
        ..Default::default()
    };
    send(&c, pb::sync_response::Msg::Snapshot(second)).await;
    assert_eq!(next_ack(&mut c).await, 5);
    assert!(dp.state.status().ready() && dp.state.status().connected());
    assert!(knows(&dp, "alice-token-0123456789") && knows(&dp, "carol-token-0123456789"));

    // 2. A batch is acked once, with its last revision.
    send(
        &c,
        changes(vec![
            (6, pb::change::Kind::ClientDelete("alice".into())),
            (7, pb::change::Kind::Other(pb::Other::default())),
        ]),
    )
    .await;
    assert_eq!(next_ack(&mut c).await, 7);
    assert!(!knows(&dp, "alice-token-0123456789"));

    // 3. The control plane goes away: the data plane reconnects and resumes from 7.
    drop(c);
    let mut c = next_conn(&mut conns).await;
    assert_eq!((c.hello.has_state, c.hello.revision), (true, 7));
    send(
        &c,
        changes(vec![
            (7, pb::change::Kind::Other(pb::Other::default())),
            (
                8,
                pb::change::Kind::ClientUpsert(client("bob", "bob-token-0123456789", &["gh"])),
            ),
        ]),
    )
    .await;
    assert_eq!(next_ack(&mut c).await, 8);
    assert!(knows(&dp, "bob-token-0123456789"));
    assert_eq!(dp.state.metrics.snapshots.load(Relaxed), 1);
    assert_eq!(dp.state.metrics.resumes.load(Relaxed), 1);

    // A heartbeat (empty batch) is answered with the held revision.
    send(&c, changes(vec![])).await;
    assert_eq!(next_ack(&mut c).await, 8);

    // 4. A gap ends the session; the next hello asks again from the applied revision.
    send(
        &c,
        changes(vec![(10, pb::change::Kind::ClientDelete("bob".into()))]),
    )
    .await;
    let c2 = next_conn(&mut conns).await;
    assert_eq!((c2.hello.has_state, c2.hello.revision), (true, 8));
    assert!(knows(&dp, "bob-token-0123456789"));
    drop(c);

    task.abort();
    cp.abort();
}
