#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::*;
use canopy_core::TokenHash;

async fn open_in(dir: &Path, mode: Mode) -> Store {
    match Store::open(StoreOptions::new(dir, mode)).await {
        Ok(s) => s,
        Err(e) => panic!("open failed: {e}"),
    }
}

fn client(name: &str, token: u8) -> Mutation {
    Mutation::CreateClient {
        name: name.into(),
        description: String::new(),
        allowed: vec!["github".into()],
        token: TokenHash([token; 32]),
    }
}

#[tokio::test]
async fn revisions_have_no_gaps_and_failures_take_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    assert_eq!(store.revision(), 0);
    assert_eq!(store.apply(client("a", 1)).await.unwrap(), 1);
    // A refused mutation does not consume a revision.
    assert!(matches!(
        store.apply(client("a", 2)).await,
        Err(StoreError::AlreadyExists { .. })
    ));
    assert!(matches!(
        store.apply(client("b", 1)).await,
        Err(StoreError::TokenInUse)
    ));
    assert_eq!(store.apply(client("b", 2)).await.unwrap(), 2);
    assert_eq!(
        store
            .apply(Mutation::DeleteClient { name: "a".into() })
            .await
            .unwrap(),
        3
    );
    assert_eq!(store.revision(), 3);
    // The deleted client's token is free again.
    assert_eq!(store.principal(&TokenHash([1; 32])).unwrap(), None);
    assert_eq!(
        store.principal(&TokenHash([2; 32])).unwrap(),
        Some(Principal::Client("b".into()))
    );
}

#[tokio::test]
async fn concurrent_writes_are_group_committed_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    let mut live = store.subscribe();
    let tasks: Vec<_> = (0..200u8)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { store.apply(client(&format!("c{i}"), i)).await })
        })
        .collect();
    let mut revisions = Vec::new();
    for t in tasks {
        revisions.push(t.await.unwrap().unwrap());
    }
    revisions.sort_unstable();
    assert_eq!(revisions, (1..=200).collect::<Vec<u64>>());
    for expected in 1..=200 {
        assert_eq!(live.recv().await.unwrap().revision, expected);
    }
    assert_eq!(store.clients().count(), 200);
}

#[tokio::test]
async fn change_log_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    for i in 0..10u8 {
        store.apply(client(&format!("c{i}"), i)).await.unwrap();
    }
    let since = store.changes_since(7).unwrap().unwrap();
    assert_eq!(
        since.iter().map(|c| c.revision).collect::<Vec<_>>(),
        vec![8, 9, 10]
    );
    assert!(matches!(&since[0].change, Change::ClientUpserted(c) if c.name == "c7"));
    assert_eq!(store.changes_since(10).unwrap().unwrap().len(), 0);
    assert!(
        store.changes_since(11).unwrap().is_none(),
        "ahead of the store"
    );
    assert_eq!(store.compact(4).unwrap(), 6);
    assert!(store.changes_since(5).unwrap().is_none());
    assert_eq!(store.changes_since(6).unwrap().unwrap().len(), 4);
}

#[tokio::test]
async fn compaction_by_age_removes_only_old_records() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    for i in 0..3u8 {
        store.apply(client(&format!("old{i}"), i)).await.unwrap();
    }
    // Everything so far is older than "now + 1 ms"; nothing is older than a minute ago.
    assert_eq!(
        store
            .compact_older_than(crate::clock::now_ms() - 60_000)
            .unwrap(),
        0
    );
    let cutoff = crate::clock::now_ms() + 1;
    while crate::clock::now_ms() < cutoff + 1 {
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
    for i in 3..5u8 {
        store.apply(client(&format!("new{i}"), i)).await.unwrap();
    }
    assert_eq!(store.compact_older_than(cutoff).unwrap(), 3);
    assert!(store.changes_since(2).unwrap().is_none(), "compacted away");
    assert_eq!(store.changes_since(3).unwrap().unwrap().len(), 2);
    // Again: nothing more is old enough.
    assert_eq!(store.compact_older_than(cutoff).unwrap(), 0);
    // Count compaction still works on top, and a compacted store reopens consistently.
    assert_eq!(store.compact(1).unwrap(), 1);
    store.close().await;
    drop(store);
    let store = open_in(dir.path(), Mode::Enterprise).await;
    assert!(store.changes_since(3).unwrap().is_none());
    assert_eq!(store.changes_since(4).unwrap().unwrap().len(), 1);
}

#[tokio::test]
async fn the_writer_compacts_by_age_without_new_writes() {
    let dir = tempfile::tempdir().unwrap();
    let mut options = StoreOptions::new(dir.path(), Mode::Enterprise);
    options.changelog_max_age = Some(std::time::Duration::from_millis(200));
    let store = Store::open(options).await.unwrap();
    store.apply(client("a", 1)).await.unwrap();
    store.apply(client("b", 2)).await.unwrap();
    assert!(store.changes_since(0).unwrap().is_some());
    // A failure deadline, not a timing assertion: the writer's timer must get there.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while store.changes_since(0).unwrap().is_some() {
        assert!(
            std::time::Instant::now() < deadline,
            "never compacted by age"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // A data plane holding the latest revision still resumes (with nothing to send).
    assert_eq!(store.changes_since(2).unwrap().unwrap().len(), 0);
}

#[tokio::test]
async fn reopen_keeps_everything_and_continues_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let key = {
        let store = open_in(dir.path(), Mode::Enterprise).await;
        store.apply(client("a", 1)).await.unwrap();
        store
            .apply(Mutation::InitAdmin {
                name: "admin".into(),
                token: TokenHash([9; 32]),
            })
            .await
            .unwrap();
        let key = *store.hasher().key();
        store.close().await;
        key
    };
    let store = open_in(dir.path(), Mode::Enterprise).await;
    assert_eq!(store.revision(), 2);
    assert_eq!(*store.hasher().key(), key);
    assert!(store.initialized().unwrap());
    assert_eq!(
        store.client("a").unwrap().map(|c| c.allowed),
        Some(vec!["github".to_string()])
    );
    assert_eq!(store.apply(client("b", 2)).await.unwrap(), 3);
    assert_eq!(store.changes_since(0).unwrap().unwrap().len(), 3);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("token-hash.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn mode_is_remembered() {
    let dir = tempfile::tempdir().unwrap();
    open_in(dir.path(), Mode::Enterprise).await.close().await;
    let err = Store::open(StoreOptions::new(dir.path(), Mode::Development))
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        StoreError::ModeMismatch {
            stored: Mode::Enterprise,
            ..
        }
    ));
    assert!(err.to_string().contains("--enterprise"), "{err}");
}

#[tokio::test]
async fn a_locked_dir_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open_in(dir.path(), Mode::Development).await;
    let err = Store::open(StoreOptions::new(dir.path(), Mode::Development))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    assert!(err.to_string().contains("in use by another process"));
}

#[tokio::test]
async fn missing_key_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    open_in(dir.path(), Mode::Development).await.close().await;
    std::fs::remove_file(dir.path().join("token-hash.key")).unwrap();
    let err = Store::open(StoreOptions::new(dir.path(), Mode::Development))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::KeyMissing { .. }), "{err:?}");
}

#[tokio::test]
async fn rotation_with_grace_keeps_old_token_until_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    store.apply(client("a", 1)).await.unwrap();
    let rotate = |token: u8, grace_ms| Mutation::UpdateClient {
        name: "a".into(),
        token: Some(TokenHash([token; 32])),
        grace_ms,
        allowed: None,
        description: None,
    };
    store.apply(rotate(2, 60_000)).await.unwrap();
    let c = store.client("a").unwrap().unwrap();
    assert_eq!(c.tokens.len(), 2);
    assert!(c.tokens[0].expires_at_ms.is_some() && c.tokens[1].expires_at_ms.is_none());
    // Rotating without grace revokes both older tokens at once.
    store.apply(rotate(3, 0)).await.unwrap();
    let c = store.client("a").unwrap().unwrap();
    assert_eq!(c.tokens, vec![StoredToken::permanent(TokenHash([3; 32]))]);
    assert_eq!(store.principal(&TokenHash([1; 32])).unwrap(), None);
    assert_eq!(store.principal(&TokenHash([2; 32])).unwrap(), None);
}

#[tokio::test]
async fn last_admin_and_init_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    store
        .apply(Mutation::InitAdmin {
            name: "admin".into(),
            token: TokenHash([1; 32]),
        })
        .await
        .unwrap();
    let again = store
        .apply(Mutation::InitAdmin {
            name: "admin2".into(),
            token: TokenHash([2; 32]),
        })
        .await;
    assert!(matches!(again, Err(StoreError::AlreadyInitialized)));
    let del = store
        .apply(Mutation::DeleteUser {
            name: "admin".into(),
        })
        .await;
    assert!(matches!(del, Err(StoreError::LastAdmin(_))));
    store
        .apply(Mutation::CreateUser {
            name: "root".into(),
            role: Role::Admin,
            token: TokenHash([3; 32]),
            allowed: vec!["*".into()],
        })
        .await
        .unwrap();
    store
        .apply(Mutation::DeleteUser {
            name: "admin".into(),
        })
        .await
        .unwrap();
    let del = store
        .apply(Mutation::DeleteUser {
            name: "root".into(),
        })
        .await;
    assert!(matches!(del, Err(StoreError::LastAdmin(_))));
}

#[tokio::test]
async fn user_allow_lists_and_records_from_before_them() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    let user = |name: &str, role, token: u8, allowed: &[&str]| Mutation::CreateUser {
        name: name.into(),
        role,
        token: TokenHash([token; 32]),
        allowed: allowed.iter().map(|s| (*s).to_owned()).collect(),
    };
    store
        .apply(user("alice", Role::User, 1, &["gh__search"]))
        .await
        .unwrap();
    assert!(matches!(
        store.apply(user("root", Role::Admin, 2, &["gh"])).await,
        Err(StoreError::AdminScope(_))
    ));
    store
        .apply(user("root", Role::Admin, 2, &["*"]))
        .await
        .unwrap();
    let scope = |allowed: Vec<&str>, token| Mutation::UpdateUser {
        name: "root".into(),
        token,
        grace_ms: 0,
        allowed: Some(allowed.into_iter().map(str::to_owned).collect()),
        role: None,
    };
    let refused = store.apply(scope(vec![], Some(TokenHash([9; 32])))).await;
    assert!(matches!(refused, Err(StoreError::AdminScope(_))));
    assert_eq!(
        store.principal(&TokenHash([9; 32])).unwrap(),
        None,
        "a refused update changes nothing, not even the token"
    );
    let rescoped = Mutation::UpdateUser {
        name: "alice".into(),
        token: None,
        grace_ms: 0,
        allowed: Some(vec!["gh".into(), "jira".into()]),
        role: None,
    };
    store.apply(rescoped).await.unwrap();
    let alice = store.user("alice").unwrap().unwrap();
    assert_eq!(alice.allowed, vec!["gh", "jira"]);
    assert_eq!(alice.tokens.len(), 1, "the token is kept");

    // A record as the previous version wrote it: no `allowed` field. It keeps full access.
    let mut old = serde_json::to_value(&alice).unwrap();
    old.as_object_mut().unwrap().remove("allowed");
    old["name"] = "old".into();
    store
        .inner
        .trees
        .users
        .insert("old", serde_json::to_vec(&old).unwrap())
        .unwrap();
    store.flush().await.unwrap();
    store.close().await;
    drop(store);
    let store = open_in(dir.path(), Mode::Enterprise).await;
    let old = store.user("old").unwrap().unwrap();
    assert_eq!((old.role, old.allowed), (Role::User, vec!["*".to_owned()]));
    assert_eq!(store.users().unwrap().len(), 3);
}

/// Durable-write throughput with concurrent callers (group commit). Not a pass/fail
/// figure (CI disks vary): `cargo test -p canopy-control-plane --release -- --ignored --nocapture durable`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn durable_write_throughput() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    let n = 5_000u32;
    let start = std::time::Instant::now();
    let tasks: Vec<_> = (0..64u32)
        .map(|w| {
            let store = store.clone();
            tokio::spawn(async move {
                for i in (w..n).step_by(64) {
                    let mut token = [0u8; 32];
                    token[..4].copy_from_slice(&i.to_be_bytes());
                    let m = Mutation::CreateClient {
                        name: format!("c{i}"),
                        description: String::new(),
                        allowed: vec![],
                        token: TokenHash(token),
                    };
                    store.apply(m).await.unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{n} durable writes in {secs:.2}s = {:.0}/s",
        f64::from(n) / secs
    );
    assert_eq!(store.revision(), u64::from(n));
}

#[tokio::test]
async fn client_records_of_earlier_versions_read_sync_and_upgrade_in_place() {
    use prost::Message;
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Enterprise).await;
    store.apply(client("new", 1)).await.unwrap();
    // A record as versions before the binary form wrote it (JSON), token claimed as then.
    let old = ClientRecord {
        name: "old".into(),
        description: "from 0.1".into(),
        allowed: vec!["slack".into()],
        tokens: vec![StoredToken::permanent(TokenHash([2; 32]))],
    };
    let trees = &store.inner.trees;
    trees
        .clients
        .insert("old", serde_json::to_vec(&old).unwrap())
        .unwrap();
    trees
        .tokens
        .insert(
            [2u8; 32],
            serde_json::to_vec(&Principal::Client("old".into())).unwrap(),
        )
        .unwrap();

    assert_eq!(store.client("old").unwrap(), Some(old.clone()));
    let names: Vec<_> = store.clients().map(|c| c.unwrap().name).collect();
    assert_eq!(names, ["new", "old"]);
    // The snapshot form is the same for both kinds of record.
    let wire: Vec<_> = store
        .client_wire_states()
        .map(|w| canopy_proto::v1::ClientState::decode(w.unwrap()).unwrap())
        .collect();
    assert_eq!(wire[1], client_wire_state(&old));
    assert_eq!(wire[0].name, "new");

    // The next change rewrites it in the binary form, keeping what it held.
    store
        .apply(Mutation::UpdateClient {
            name: "old".into(),
            token: None,
            grace_ms: 0,
            allowed: None,
            description: Some("updated".into()),
        })
        .await
        .unwrap();
    let raw = trees.clients.get("old").unwrap().unwrap();
    assert_ne!(raw[0], b'{', "rewritten in the binary form");
    let now = store.client("old").unwrap().unwrap();
    assert_eq!(now.description, "updated");
    assert_eq!(now.allowed, old.allowed);
    assert_eq!(now.tokens, old.tokens);
}

fn server_with_secrets(name: &str) -> Mutation {
    Mutation::PutServer {
        record: ServerRecord {
            spec: ServerSpec {
                name: name.into(),
                transport: Transport::StreamableHttp,
                description: String::new(),
                url: "http://127.0.0.1:1/mcp".into(),
                bearer_token: Some("bearer-AT-REST-SECRET".into()),
                headers: [("X-Api-Key".to_owned(), "header-AT-REST-SECRET".to_owned())].into(),
                command: String::new(),
                args: Vec::new(),
                env: Default::default(),
                timeout_ms: 0,
                audit_payload: Default::default(),
            },
            tools: Vec::new(),
            prompts: Vec::new(),
            protocol_version: "2025-06-18".into(),
        },
        replace: false,
    }
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(all_bytes(&path));
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
    out
}

fn modes(dir: &Path, out: &mut Vec<(PathBuf, u32)>) {
    use std::os::unix::fs::PermissionsExt;
    out.push((
        dir.to_owned(),
        std::fs::metadata(dir).unwrap().permissions().mode() & 0o777,
    ));
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            modes(&path, out);
        } else {
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            out.push((path, mode));
        }
    }
}

#[tokio::test]
async fn credentials_are_sealed_and_modes_tightened_at_open() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let store = open_in(&data, Mode::Development).await;
    store.apply(server_with_secrets("gh")).await.unwrap();
    store.close().await;
    drop(store);
    assert!(!all_bytes(&data)
        .windows(b"AT-REST-SECRET".len())
        .any(|w| w == b"AT-REST-SECRET"));

    // A file loosened by hand is tightened again at the next open.
    std::fs::set_permissions(
        data.join("token-hash.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let store = open_in(&data, Mode::Development).await;
    let mut found = Vec::new();
    modes(&data, &mut found);
    for (path, mode) in &found {
        let want = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(*mode, want, "{}", path.display());
    }
    let spec = store.server("gh").unwrap().unwrap().spec;
    assert_eq!(spec.bearer_token.as_deref(), Some("bearer-AT-REST-SECRET"));
    let changes = store.changes_since(0).unwrap().unwrap();
    assert!(matches!(&changes[0].change, Change::ServerUpserted(r) if r.spec == spec));
}

#[tokio::test]
async fn secrets_key_rotation_and_loss() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Development).await;
    store.apply(server_with_secrets("gh")).await.unwrap();
    store.close().await;
    drop(store);
    let key = dir.path().join("secrets.key");
    let old = std::fs::read(&key).unwrap();

    // Rotation: the old key moves aside, a new one is made and everything is resealed.
    std::fs::rename(&key, dir.path().join("secrets.key.previous")).unwrap();
    let store = open_in(dir.path(), Mode::Development).await;
    assert_ne!(std::fs::read(&key).unwrap(), old);
    store.close().await;
    drop(store);
    std::fs::remove_file(dir.path().join("secrets.key.previous")).unwrap();
    let store = open_in(dir.path(), Mode::Development).await;
    let spec = store.server("gh").unwrap().unwrap().spec;
    assert_eq!(spec.headers["X-Api-Key"], "header-AT-REST-SECRET");
    store.close().await;
    drop(store);

    // A lost key stops the start with the reason, and writes nothing.
    std::fs::remove_file(&key).unwrap();
    let err = Store::open(StoreOptions::new(dir.path(), Mode::Development))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Sealed { .. }), "{err:?}");
    assert!(err.to_string().contains("secrets.key"), "{err}");
    assert!(!key.exists());
}

#[tokio::test]
async fn a_data_dir_of_an_earlier_version_is_sealed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Development).await;
    store.close().await;
    drop(store);
    // What a version before sealing left: plaintext specs, no secrets key, no marker.
    let Mutation::PutServer { record, .. } = server_with_secrets("gh") else {
        unreachable!()
    };
    {
        let db = sled::open(dir.path().join("db")).unwrap();
        let plain = serde_json::to_vec(&record).unwrap();
        db.open_tree("servers")
            .unwrap()
            .insert("gh", plain)
            .unwrap();
        let change = serde_json::to_vec(&Change::ServerUpserted(record.clone())).unwrap();
        db.open_tree("changelog")
            .unwrap()
            .insert(1u64.to_be_bytes(), change)
            .unwrap();
        db.open_tree("meta").unwrap().remove("sealed_with").unwrap();
        db.flush().unwrap();
    }
    std::fs::remove_file(dir.path().join("secrets.key")).unwrap();

    let store = open_in(dir.path(), Mode::Development).await;
    let secret = b"AT-REST-SECRET";
    for tree in [&store.inner.trees.servers, &store.inner.trees.changelog] {
        for value in tree.iter().values() {
            let value = value.unwrap();
            assert!(!value.windows(secret.len()).any(|w| w == secret));
        }
    }
    assert_eq!(store.server("gh").unwrap().unwrap().spec, record.spec);
    assert!(dir.path().join("secrets.key").exists());
}

/// The audit payload setting is part of the (sealed) spec: stored with its revision, in the
/// change record, and still there after a restart.
#[tokio::test]
async fn audit_payload_setting_survives_reopen_and_reaches_sync() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_in(dir.path(), Mode::Development).await;
    let Mutation::PutServer { mut record, .. } = server_with_secrets("hashed") else {
        unreachable!("server_with_secrets builds a PutServer")
    };
    record.spec.audit_payload = crate::store::AuditPayload::Hash;
    let revision = store
        .apply(Mutation::PutServer {
            record,
            replace: false,
        })
        .await
        .unwrap();
    let change = store.changes_since(revision - 1).unwrap().unwrap();
    let Change::ServerUpserted(changed) = &change[0].change else {
        panic!("{:?}", change[0].change)
    };
    assert_eq!(
        crate::sync::convert::server(changed)
            .spec
            .unwrap()
            .audit_payload,
        canopy_proto::v1::AuditPayload::Hash as i32
    );
    store.close().await;
    drop(store);
    let store = open_in(dir.path(), Mode::Development).await;
    let stored = store.server("hashed").unwrap().unwrap();
    assert_eq!(stored.spec.audit_payload, crate::store::AuditPayload::Hash);
}
