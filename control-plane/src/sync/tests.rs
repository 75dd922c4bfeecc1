#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
//! The sync service over a real socket: a snapshot reads the same whether the data plane
//! takes clients pre-encoded (`encoded_clients`) or as messages (older data planes).

use super::*;
use crate::store::{Mode, Mutation, StoreOptions};
use canopy_proto::v1 as pb;
use canopy_proto::v1::sync_client::SyncClient;
use canopy_proto::v1::sync_server::SyncServer;
use prost::Message;
use std::collections::BTreeMap;
use tokio_stream::wrappers::TcpListenerStream;

const DP_TOKEN: &str = "dp-token-for-the-sync-test";

async fn serve_store(clients: u64) -> (String, Arc<Store>, tempfile::TempDir) {
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
    (format!("http://{addr}"), store, dir)
}

/// A fresh data plane's stream: the hello sent, the responses to read.
async fn connect(url: &str, encoded: bool) -> (mpsc::Sender<SyncRequest>, Streaming<SyncResponse>) {
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
    (tx, client.stream(req).await.unwrap().into_inner())
}

/// A snapshot as received: its revision, its clients in order (as a data plane decodes
/// them) and how many chunks carried them.
struct Received {
    revision: u64,
    clients: Vec<pb::ClientState>,
    chunks: usize,
}

async fn read_snapshot(stream: &mut Streaming<SyncResponse>, encoded: bool) -> Received {
    let mut got = Received {
        revision: 0,
        clients: Vec::new(),
        chunks: 0,
    };
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
        got.revision = chunk.revision;
        got.chunks += 1;
        got.clients.extend(chunk.clients);
        for raw in chunk.encoded_clients {
            got.clients.push(pb::ClientState::decode(raw).unwrap());
        }
        if chunk.last {
            return got;
        }
    }
}

async fn snapshot_clients(url: &str, encoded: bool) -> (Vec<pb::ClientState>, usize) {
    let (_tx, mut stream) = connect(url, encoded).await;
    let got = read_snapshot(&mut stream, encoded).await;
    (got.clients, got.chunks)
}

/// Follows a fresh data plane's stream until it holds revision `upto`: the snapshot, then
/// change batches applied in order. Returns the snapshot's revision and the clients held.
async fn follow(url: &str, upto: u64) -> (u64, BTreeMap<String, pb::ClientState>) {
    let (_tx, mut stream) = connect(url, true).await;
    let snap = read_snapshot(&mut stream, true).await;
    let mut held: BTreeMap<_, _> = snap
        .clients
        .into_iter()
        .map(|c| (c.name.clone(), c))
        .collect();
    let mut at = snap.revision;
    while at < upto {
        let msg = stream.message().await.unwrap().unwrap();
        let Some(sync_response::Msg::Changes(batch)) = msg.msg else {
            panic!("expected change batches after the snapshot, got {msg:?}");
        };
        for change in batch.changes {
            assert!(change.revision > at, "changes arrive in order, once");
            at = change.revision;
            match change.kind {
                Some(pb::change::Kind::ClientUpsert(c)) => {
                    held.insert(c.name.clone(), c);
                }
                Some(pb::change::Kind::ClientDelete(name)) => {
                    held.remove(&name);
                }
                _ => {}
            }
        }
    }
    (snap.revision, held)
}

fn store_clients(store: &Store) -> BTreeMap<String, pb::ClientState> {
    store
        .clients()
        .map(|c| {
            let c = c.unwrap();
            (c.name.clone(), convert::client(&c))
        })
        .collect()
}

#[tokio::test]
async fn snapshot_is_the_same_pre_encoded_or_not() {
    let n = SNAPSHOT_CHUNK_CLIENTS as u64 + 10;
    let (url, _store, _dir) = serve_store(n).await;
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

#[tokio::test]
async fn later_snapshots_come_from_memory_plus_the_changes_since() {
    let (url, store, _dir) = serve_store(50).await;
    let first_at = store.revision();
    let (rev, held) = follow(&url, first_at).await;
    assert_eq!(rev, first_at);
    assert_eq!(held, store_clients(&store));

    // Changes after the cached snapshot: a delete, a new client, a re-scope + rotation.
    let hasher = store.hasher().clone();
    store
        .apply(Mutation::DeleteClient {
            name: "client-00003".into(),
        })
        .await
        .unwrap();
    store
        .apply(Mutation::CreateClient {
            name: "late".into(),
            description: String::new(),
            allowed: vec!["*".into()],
            token: hasher.hash("token-of-late-client"),
        })
        .await
        .unwrap();
    store
        .apply(Mutation::UpdateClient {
            name: "client-00007".into(),
            token: Some(hasher.hash("rotated-token-of-7")),
            grace_ms: 0,
            allowed: Some(vec!["slack".into()]),
            description: None,
        })
        .await
        .unwrap();
    let now = store.revision();

    // The next data plane gets the cached snapshot (still at the first revision) and the
    // three changes after it — and ends up holding exactly what the store holds.
    let (rev, held) = follow(&url, now).await;
    assert_eq!(rev, first_at, "served from the snapshot cache");
    assert_eq!(held, store_clients(&store));
    assert!(!held.contains_key("client-00003"));
    assert_eq!(held["client-00007"].allowed, ["slack"]);

    // Once the change log no longer reaches back that far, the snapshot is read anew.
    store.compact(0).unwrap();
    let (rev, held) = follow(&url, store.revision()).await;
    assert_eq!(rev, now, "read from the store again");
    assert_eq!(held, store_clients(&store));
}

/// Identity state rides on the first snapshot chunk; later changes arrive as their own kinds.
#[tokio::test]
async fn identity_state_in_snapshot_and_changes() {
    use crate::store::{
        Endpoints, IdentityMutation, ProviderRecord, ProviderSpec, RuleCondition, RuleRecord,
    };
    let (url, store, _dir) = serve_store(3).await;
    let spec = ProviderSpec {
        audiences: vec!["api://canopy".into()],
        ca_pem: Some("PEM".into()),
        required_scopes: vec!["mcp".into()],
        ..ProviderSpec::for_tests("corp", "https://corp.example")
    };
    let id = |m| Mutation::Identity(m);
    let created = store
        .apply(id(IdentityMutation::PutProvider {
            record: ProviderRecord {
                spec,
                endpoints: Endpoints::default(),
                jwks_json: r#"{"keys":[]}"#.into(),
                keys_revision: 0,
            },
            create: true,
        }))
        .await
        .unwrap();
    store
        .apply(id(IdentityMutation::CreateRule(RuleRecord {
            name: "eng".into(),
            idp: "corp".into(),
            conditions: vec![RuleCondition::EmailDomain("corp.example".into())],
            allowed: vec!["github".into()],
        })))
        .await
        .unwrap();
    store
        .apply(id(IdentityMutation::Revoke {
            idp: "corp".into(),
            subject: "u1".into(),
        }))
        .await
        .unwrap();
    for encoded in [true, false] {
        let (_tx, mut stream) = connect(&url, encoded).await;
        let first = match stream.message().await.unwrap().unwrap().msg {
            Some(sync_response::Msg::Snapshot(chunk)) => chunk,
            other => panic!("expected a snapshot, got {other:?}"),
        };
        assert!(first.first);
        let idp = &first.identity_providers[0];
        assert_eq!(idp.issuer, "https://corp.example");
        assert_eq!(idp.audiences, vec!["api://canopy"]);
        assert_eq!(idp.required_scopes, vec!["mcp"]);
        assert_eq!(idp.keys_revision, created);
        assert_eq!(idp.jwks_json, r#"{"keys":[]}"#);
        assert_eq!(first.access_rules[0].name, "eng");
        assert_eq!(
            first.access_rules[0].matches[0].kind,
            Some(pb::access_match::Kind::EmailDomain("corp.example".into()))
        );
        assert_eq!(first.revoked_subjects[0].subject, "u1");
    }
    let (_tx, mut stream) = connect(&url, true).await;
    read_snapshot(&mut stream, true).await;
    let deleted = store
        .apply(id(IdentityMutation::DeleteProvider {
            name: "corp".into(),
        }))
        .await
        .unwrap();
    loop {
        let msg = stream.message().await.unwrap().unwrap();
        let Some(sync_response::Msg::Changes(batch)) = msg.msg else {
            panic!("expected changes, got {msg:?}");
        };
        // The backlog since the cached snapshot comes first.
        if let Some(change) = batch.changes.iter().find(|c| c.revision == deleted) {
            assert_eq!(
                change.kind,
                Some(pb::change::Kind::IdentityProviderDelete("corp".into()))
            );
            break;
        }
    }
}

/// The Sync service reads `authorization` by the same rule as `/mcp` and Admin
/// (`canopy_core::bearer`): any case of the scheme, exactly one space.
#[tokio::test]
async fn data_plane_token_follows_the_one_bearer_rule() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        Store::open(StoreOptions::new(dir.path(), Mode::Enterprise))
            .await
            .unwrap(),
    );
    let service = SyncService::new(
        Arc::clone(&store),
        crate::fleet::Fleet::new(),
        store.hasher().hash(DP_TOKEN),
    );
    let with = |value: String| {
        let mut req = tonic::Request::new(());
        req.metadata_mut()
            .insert("authorization", value.parse().unwrap());
        service.authenticate(&req, "Stream").map_err(|s| s.code())
    };
    for scheme in ["Bearer", "bearer", "BEARER"] {
        assert_eq!(with(format!("{scheme} {DP_TOKEN}")), Ok(()), "{scheme}");
    }
    for bad in [
        format!("Bearer  {DP_TOKEN}"),
        format!("Bearer{}{DP_TOKEN}", " ".repeat(100)),
        format!("Bearer {DP_TOKEN} x"),
        format!("Basic {DP_TOKEN}"),
    ] {
        assert_eq!(
            with(bad.clone()),
            Err(tonic::Code::Unauthenticated),
            "{bad}"
        );
    }
}
