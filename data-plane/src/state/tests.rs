#![allow(clippy::unwrap_used)] // tests: a panic is the failure report
use super::*;
use canopy_proto::v1 as pb;

pub(crate) const KEY: [u8; 32] = [7; 32];

pub(crate) fn hasher() -> TokenHasher {
    TokenHasher::new(KEY)
}

pub(crate) fn client(name: &str, token: &str, allowed: &[&str]) -> pb::ClientState {
    pb::ClientState {
        name: name.into(),
        tokens: vec![pb::TokenHash {
            hash: hasher().hash(token).0.to_vec(),
            expires_at_ms: 0,
        }],
        allowed: allowed.iter().map(|s| s.to_string()).collect(),
    }
}

pub(crate) fn server(name: &str, url: &str, tools: &[&str]) -> pb::UpstreamState {
    pb::UpstreamState {
        spec: Some(pb::ServerSpec {
            name: name.into(),
            transport: pb::Transport::StreamableHttp as i32,
            url: url.into(),
            ..Default::default()
        }),
        tools_json: tools
            .iter()
            .map(|t| format!(r#"{{"name":"{t}","inputSchema":{{"type":"object"}}}}"#))
            .collect(),
        prompts_json: vec![],
        protocol_version: "2025-06-18".into(),
    }
}

pub(crate) fn snapshot(
    rev: u64,
    clients: Vec<pb::ClientState>,
    servers: Vec<pb::UpstreamState>,
) -> pb::SnapshotChunk {
    pb::SnapshotChunk {
        revision: rev,
        first: true,
        last: true,
        mode: pb::Mode::Enterprise as i32,
        token_hash_key: KEY.to_vec(),
        clients,
        servers,
        total_clients: 0,
        encoded_clients: vec![],
        ..Default::default()
    }
}

pub(crate) fn install(state: &State, chunk: pb::SnapshotChunk) {
    let mut b = SnapshotBuilder::new(&chunk).unwrap();
    assert!(b.add(chunk).unwrap());
    state.finish_snapshot(b).unwrap();
}

fn change(revision: u64, kind: pb::change::Kind) -> pb::Change {
    pb::Change {
        revision,
        kind: Some(kind),
    }
}

fn who(state: &State, token: &str) -> Option<String> {
    let v = state.load_view()?;
    v.tokens
        .lookup_client(&v.hasher.hash(token), crate::status::now_ms())
        .map(|c| c.name.to_string())
}

fn new_state() -> State {
    State::new(Arc::new(Metrics::default()))
}

#[test]
fn snapshot_is_invisible_until_last_chunk() {
    let s = new_state();
    let mut first = snapshot(5, vec![client("a", "token-a-0123456789", &["gh"])], vec![]);
    first.last = false;
    let mut b = SnapshotBuilder::new(&first).unwrap();
    assert!(!b.add(first).unwrap());
    assert!(!s.has_state());
    let second = pb::SnapshotChunk {
        revision: 5,
        last: true,
        clients: vec![client("b", "token-b-0123456789", &[])],
        servers: vec![server("gh", "http://x", &["search"])],
        ..Default::default()
    };
    assert!(b.add(second).unwrap());
    assert_eq!(s.finish_snapshot(b).unwrap(), 5);
    assert!(s.status().ready());
    assert_eq!(s.applied_revision(), 5);
    assert_eq!(who(&s, "token-a-0123456789").as_deref(), Some("a"));
    assert_eq!(who(&s, "token-b-0123456789").as_deref(), Some("b"));
    assert!(who(&s, "nope-nope-nope-nope").is_none());
    let v = s.load_view().unwrap();
    assert!(v.catalog.get(Kind::Tool, "gh__search").is_some());
}

#[test]
fn encoded_clients_apply_like_plain_ones_and_bad_ones_are_skipped() {
    use prost::Message;
    let s = new_state();
    let mut chunk = snapshot(7, vec![client("a", "token-a-0123456789", &["gh"])], vec![]);
    chunk.encoded_clients = vec![
        client("b", "token-b-0123456789", &["gh"])
            .encode_to_vec()
            .into(),
        // Truncated mid-message: skipped (denied), the rest of the snapshot applies.
        bytes::Bytes::from_static(&[0x0a, 0x40, b'x']),
        client("c", "token-c-0123456789", &[])
            .encode_to_vec()
            .into(),
    ];
    install(&s, chunk);
    assert_eq!(who(&s, "token-a-0123456789").as_deref(), Some("a"));
    assert_eq!(who(&s, "token-b-0123456789").as_deref(), Some("b"));
    assert_eq!(who(&s, "token-c-0123456789").as_deref(), Some("c"));
    let v = s.load_view().unwrap();
    let b = v
        .tokens
        .lookup(
            &v.hasher.hash("token-b-0123456789"),
            crate::status::now_ms(),
        )
        .unwrap();
    let c = v
        .tokens
        .lookup(
            &v.hasher.hash("token-c-0123456789"),
            crate::status::now_ms(),
        )
        .unwrap();
    // A reused decode buffer must not leak one client's allow list into the next.
    assert!(b.allow().to_strings() == vec!["gh".to_string()]);
    assert!(c.allow().to_strings().is_empty());
}

#[test]
fn snapshot_chunks_must_agree() {
    let first = snapshot(5, vec![], vec![]);
    let mut b = SnapshotBuilder::new(&pb::SnapshotChunk {
        last: false,
        ..first.clone()
    })
    .unwrap();
    assert!(b
        .add(pb::SnapshotChunk {
            revision: 6,
            ..first.clone()
        })
        .is_err());
    assert!(SnapshotBuilder::new(&pb::SnapshotChunk {
        first: false,
        ..first.clone()
    })
    .is_err());
    assert!(SnapshotBuilder::new(&pb::SnapshotChunk {
        token_hash_key: vec![1; 3],
        ..first
    })
    .is_err());
}

#[test]
fn changes_apply_in_order_skip_duplicates_and_detect_gaps() {
    let s = new_state();
    assert_eq!(s.apply_changes(vec![]), Err(ApplyError::NoState));
    install(
        &s,
        snapshot(10, vec![client("a", "token-a-0123456789", &["gh"])], vec![]),
    );

    // Rotation: the new token works, the old one stops, in one change.
    let rotated = client("a", "token-a2-123456789", &["gh"]);
    assert_eq!(
        s.apply_changes(vec![change(11, pb::change::Kind::ClientUpsert(rotated))]),
        Ok(Some(11))
    );
    assert!(who(&s, "token-a-0123456789").is_none());
    assert_eq!(who(&s, "token-a2-123456789").as_deref(), Some("a"));

    // Duplicates are skipped; the batch still applies what is new.
    let b = client("b", "token-b-0123456789", &[]);
    let r = s.apply_changes(vec![
        change(10, pb::change::Kind::ClientDelete("a".into())),
        change(11, pb::change::Kind::ClientDelete("a".into())),
        change(12, pb::change::Kind::ClientUpsert(b)),
        change(
            13,
            pb::change::Kind::Other(pb::Other {
                what: "user".into(),
            }),
        ),
    ]);
    assert_eq!(r, Ok(Some(13)));
    assert_eq!(who(&s, "token-a2-123456789").as_deref(), Some("a"));
    assert_eq!(who(&s, "token-b-0123456789").as_deref(), Some("b"));

    // A gap stops the batch; what came before it stays applied.
    let r = s.apply_changes(vec![
        change(14, pb::change::Kind::ClientDelete("b".into())),
        change(16, pb::change::Kind::ClientDelete("a".into())),
    ]);
    assert_eq!(
        r,
        Err(ApplyError::Gap {
            applied: 14,
            got: 16
        })
    );
    assert_eq!(s.applied_revision(), 14);
    assert!(who(&s, "token-b-0123456789").is_none());
    assert_eq!(who(&s, "token-a2-123456789").as_deref(), Some("a"));
    assert_eq!(
        s.apply_changes(vec![change(14, pb::change::Kind::ClientDelete("a".into()))]),
        Ok(None)
    );
}

#[test]
fn several_changes_may_share_a_revision() {
    let s = new_state();
    install(
        &s,
        snapshot(
            1,
            vec![
                client("a", "token-a-0123456789", &[]),
                client("b", "token-b-0123456789", &[]),
            ],
            vec![],
        ),
    );
    let r = s.apply_changes(vec![
        change(2, pb::change::Kind::ClientDelete("a".into())),
        change(2, pb::change::Kind::ClientDelete("b".into())),
    ]);
    assert_eq!(r, Ok(Some(2)));
    assert!(who(&s, "token-a-0123456789").is_none());
    assert!(who(&s, "token-b-0123456789").is_none());
}

#[test]
fn expired_tokens_are_rejected_at_lookup() {
    let s = new_state();
    let mut c = client("a", "token-new-23456789", &[]);
    let now = crate::status::now_ms();
    c.tokens.push(pb::TokenHash {
        hash: hasher().hash("token-old-23456789").0.to_vec(),
        expires_at_ms: now + 60_000,
    });
    c.tokens.push(pb::TokenHash {
        hash: hasher().hash("token-gone-3456789").0.to_vec(),
        expires_at_ms: now - 1,
    });
    install(&s, snapshot(1, vec![c], vec![]));
    assert!(who(&s, "token-new-23456789").is_some());
    assert!(who(&s, "token-old-23456789").is_some());
    assert!(who(&s, "token-gone-3456789").is_none());
    let v = s.load_view().unwrap();
    let h = v.hasher.hash("token-old-23456789");
    assert!(v.tokens.lookup(&h, now + 60_001).is_none());
}

#[test]
fn server_changes_rebuild_catalogue_and_scopes_filter() {
    let s = new_state();
    install(
        &s,
        snapshot(
            1,
            vec![client("a", "token-a-0123456789", &["gh__search", "jira"])],
            vec![server("gh", "http://x", &["search", "delete"])],
        ),
    );
    let up = server("jira", "http://y", &["create"]);
    assert_eq!(
        s.apply_changes(vec![change(2, pb::change::Kind::ServerUpsert(up))]),
        Ok(Some(2))
    );
    let v = s.load_view().unwrap();
    let c = v
        .tokens
        .lookup(&v.hasher.hash("token-a-0123456789"), 0)
        .unwrap();
    let tools = v.catalog.list(Kind::Tool, Some(&*c));
    let text = std::str::from_utf8(&tools).unwrap();
    assert!(
        text.contains("\"gh__search\"")
            && text.contains("\"jira__create\"")
            && !text.contains("delete"),
        "{text}"
    );
    // The full list is everything.
    let all = v.catalog.list(Kind::Tool, None);
    assert!(std::str::from_utf8(&all).unwrap().contains("gh__delete"));

    s.apply_changes(vec![change(3, pb::change::Kind::ServerDelete("gh".into()))])
        .unwrap();
    let v = s.load_view().unwrap();
    assert!(v.catalog.get(Kind::Tool, "gh__search").is_none());
    let text = v.catalog.list(Kind::Tool, Some(&*c));
    assert_eq!(
        std::str::from_utf8(&text)
            .unwrap()
            .matches("\"name\"")
            .count(),
        1
    );
}

#[test]
fn unchanged_upstream_config_keeps_the_connection() {
    let s = new_state();
    install(
        &s,
        snapshot(1, vec![], vec![server("gh", "http://x", &["a"])]),
    );
    let before = s.load_view().unwrap().catalog.server("gh").unwrap().clone();
    s.apply_changes(vec![change(
        2,
        pb::change::Kind::ServerUpsert(server("gh", "http://x", &["a", "b"])),
    )])
    .unwrap();
    let after = s.load_view().unwrap().catalog.server("gh").unwrap().clone();
    assert_eq!(after.tools.len(), 2);
    assert!(Arc::ptr_eq(&before.metrics, &after.metrics));
}

#[test]
fn scopes_are_interned() {
    let s = new_state();
    let clients = (0..100)
        .map(|i| client(&format!("c{i}"), &format!("token-{i:012}"), &["gh", "jira"]))
        .collect();
    install(&s, snapshot(1, clients, vec![]));
    let w = s.writer();
    let w = w.as_ref().unwrap();
    assert_eq!(w.scopes.len(), 1);
    let first = w.clients.values().next().unwrap().scope.clone();
    assert!(w.clients.values().all(|c| Arc::ptr_eq(&c.scope, &first)));
}

#[test]
fn tool_definitions_keep_unknown_fields() {
    let s = new_state();
    let mut up = server("gh", "http://x", &[]);
    up.tools_json = vec![r#"{"name":"t","x-extra":{"k":[1,2.50]},"inputSchema":{}}"#.into()];
    install(&s, snapshot(1, vec![], vec![up]));
    let v = s.load_view().unwrap();
    let (_, d) = v.catalog.get(Kind::Tool, "gh__t").unwrap();
    assert_eq!(
        &*d.prefixed,
        r#"{"name":"gh__t","x-extra":{"k":[1,2.50]},"inputSchema":{}}"#
    );
}

#[test]
fn a_re_scoped_client_is_authorized_with_its_new_scope_at_once() {
    let s = new_state();
    install(
        &s,
        snapshot(1, vec![client("a", "token-a-0123456789", &["gh"])], vec![]),
    );
    let scope_of = |s: &State| {
        let v = s.load_view().unwrap();
        v.tokens
            .lookup(&v.hasher.hash("token-a-0123456789"), 0)
            .unwrap()
            .allow()
            .to_strings()
    };
    assert_eq!(scope_of(&s), ["gh"]);
    let rescoped = client("a", "token-a-0123456789", &["slack", "gh__search"]);
    assert_eq!(
        s.apply_changes(vec![change(2, pb::change::Kind::ClientUpsert(rescoped))]),
        Ok(Some(2))
    );
    let now = scope_of(&s);
    assert!(now.contains(&"slack".to_string()) && now.contains(&"gh__search".to_string()));
    assert!(!now.contains(&"gh".to_string()));
}
