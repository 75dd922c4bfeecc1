#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! The sync service over a real socket: a snapshot reads the same whether the data plane
//! takes clients pre-encoded (`encoded_clients`) or as messages (older data planes).

use super::*;
use crate::store::{Mode, Mutation, StoreOptions};
use canopy_proto::v1 as pb;
use canopy_proto::v1::sync_client::SyncClient;
use canopy_proto::v1::sync_server::SyncServer;
use prost::Message;
use tokio_stream::wrappers::TcpListenerStream;

const DP_TOKEN: &str = "dp-token-for-the-sync-test";

async fn serve_store(clients: u64) -> (String, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(StoreOptions::new(dir.path(), Mode::Enterprise))
            .await
            .unwrap(),
    );
    let hasher = store.hasher().clone();
    for i in 0..clients {
        store
            .apply(Mutation::CreateClient {
                name: format!("client-{i:05}"),
                description: format!("number {i}"),
                allowed: vec!["github".into(), format!("srv{}__tool", i % 3)],
                token: hasher.hash(&format!("token-of-client-{i:05}")),
            })
            .await
            .unwrap();
    }
    let service = SyncService::new(
        Arc::clone(&store),
        crate::fleet::Fleet::new(),
        hasher.hash(DP_TOKEN),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(SyncServer::new(service))
            .serve_with_incoming(TcpListenerStream::new(listener)),
    );
    (format!("http://{addr}"), dir)
}

/// Connects as a fresh data plane and returns every client of the snapshot, in order, as
/// it would decode them, and how many chunks carried them.
async fn snapshot_clients(url: &str, encoded: bool) -> (Vec<pb::ClientState>, usize) {
    let mut client = SyncClient::connect(url.to_owned()).await.unwrap();
    let (tx, rx) = mpsc::channel(4);
    tx.send(SyncRequest {
        msg: Some(sync_request::Msg::Hello(SyncHello {
            node_id: format!("dp-{encoded}"),
            accepts_encoded_clients: encoded,
            ..Default::default()
        })),
    })
    .await
    .unwrap();
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {DP_TOKEN}").parse().unwrap(),
    );
    let mut stream = client.stream(req).await.unwrap().into_inner();
    let (mut clients, mut chunks) = (Vec::new(), 0);
    loop {
        let msg = stream.message().await.unwrap().unwrap();
        let Some(sync_response::Msg::Snapshot(chunk)) = msg.msg else {
            panic!("expected snapshot chunks first, got {msg:?}");
        };
        if encoded {
            assert!(chunk.clients.is_empty(), "clients go pre-encoded");
        } else {
            assert!(
                chunk.encoded_clients.is_empty(),
                "an older data plane ignores them"
            );
        }
        chunks += 1;
        clients.extend(chunk.clients);
        for raw in chunk.encoded_clients {
            clients.push(pb::ClientState::decode(raw).unwrap());
        }
        if chunk.last {
            drop(tx);
            return (clients, chunks);
        }
    }
}

#[tokio::test]
async fn snapshot_is_the_same_pre_encoded_or_not() {
    let n = SNAPSHOT_CHUNK_CLIENTS as u64 + 10;
    let (url, _dir) = serve_store(n).await;
    let (plain, plain_chunks) = snapshot_clients(&url, false).await;
    let (encoded, encoded_chunks) = snapshot_clients(&url, true).await;
    assert_eq!(plain.len() as u64, n);
    assert_eq!(plain, encoded);
    assert_eq!(plain_chunks, encoded_chunks);
    assert!(plain_chunks >= 2, "more than one chunk of clients");
    assert_eq!(plain[7].name, "client-00007");
    assert_eq!(plain[7].allowed, ["github", "srv1__tool"]);
    assert_eq!(plain[7].tokens.len(), 1);
}
