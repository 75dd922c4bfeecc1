#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use super::store::Query;
use super::{AuditError, AuditStore};
use canopy_proto::v1 as pb;
use pb::audit_event::Kind;

const SECOND: i64 = 1_000_000_000;
/// 2026-01-01T00:00:00Z.
const T0: i64 = 1_767_225_600 * SECOND;

fn db() -> (tempfile::TempDir, sled::Db) {
    let dir = tempfile::tempdir().unwrap();
    let db = sled::Config::new().path(dir.path()).open().unwrap();
    (dir, db)
}

fn id(n: u32) -> Vec<u8> {
    let mut id = vec![0u8; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    id
}

/// A tools/call by `client` on `server`/`tool` at `T0 + n s`.
pub(crate) fn request(n: u32, client: &str, server: &str, tool: &str, ok: bool) -> pb::AuditEvent {
    pb::AuditEvent {
        id: id(n),
        time_unix_nanos: T0 + i64::from(n) * SECOND,
        kind: Some(Kind::Request(pb::McpRequestEvent {
            data_plane: "dp-1".into(),
            principal: Some(pb::AuditPrincipal {
                kind: Some(pb::audit_principal::Kind::McpClient(client.into())),
            }),
            method: "tools/call".into(),
            server: server.into(),
            tool: tool.into(),
            outcome: if ok {
                pb::AuditOutcome::Ok
            } else {
                pb::AuditOutcome::Denied
            } as i32,
            http_status: if ok { 200 } else { 403 },
            ..Default::default()
        })),
    }
}

fn times(events: &[pb::AuditEvent]) -> Vec<i64> {
    events
        .iter()
        .map(|e| (e.time_unix_nanos - T0) / SECOND)
        .collect()
}

#[tokio::test]
async fn a_retried_batch_is_stored_once_and_counted_as_duplicates() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    let batch: Vec<_> = (0..10).map(|n| request(n, "a", "s", "t", true)).collect();
    let first = store.append(batch.clone()).await.unwrap();
    assert_eq!((first.stored, first.duplicates), (10, 0));
    let mut again = batch.clone();
    again.push(request(10, "a", "s", "t", true));
    let second = store.append(again).await.unwrap();
    assert_eq!((second.stored, second.duplicates), (1, 10));
    assert_eq!(store.len(), 11);
    // Reopened (the ids survive): still duplicates.
    drop(store);
    let store = AuditStore::open(&db).unwrap();
    let third = store.append(batch).await.unwrap();
    assert_eq!((third.stored, third.duplicates), (0, 10));
    assert!(store.stored_bytes() > 0);
}

#[tokio::test]
async fn an_invalid_event_refuses_the_whole_batch() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    let mut bad = request(1, "a", "s", "t", true);
    bad.id = vec![1, 2, 3];
    let err = store
        .append(vec![request(0, "a", "s", "t", true), bad])
        .await
        .unwrap_err();
    assert!(matches!(err, AuditError::InvalidArgument(_)), "{err}");
    assert!(store.is_empty());
}

#[tokio::test]
async fn lists_a_window_newest_first_filtered_page_by_page() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    let events: Vec<_> = (0..100)
        .map(|n| {
            let client = if n % 2 == 0 { "even" } else { "odd" };
            request(
                n,
                client,
                "files",
                if n % 5 == 0 { "read" } else { "write" },
                n % 10 != 3,
            )
        })
        .collect();
    store.append(events).await.unwrap();

    // [10 s, 50 s), newest first.
    let window = Query {
        since: T0 + 10 * SECOND,
        until: T0 + 50 * SECOND,
        limit: 15,
        ..Query::default()
    };
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = store
            .query(&Query {
                cursor: cursor.clone(),
                ..window.clone()
            })
            .unwrap();
        assert!(page.events.len() <= 15);
        seen.extend(times(&page.events));
        if page.next_cursor.is_empty() {
            break;
        }
        cursor = page.next_cursor;
    }
    assert_eq!(seen, (10..50).rev().collect::<Vec<_>>());

    let filtered = |f: pb::AuditFilter| {
        times(
            &store
                .query(&Query {
                    filter: f,
                    limit: 1000,
                    ..window.clone()
                })
                .unwrap()
                .events,
        )
    };
    assert_eq!(
        filtered(pb::AuditFilter {
            client: "even".into(),
            tool: "read".into(),
            ..Default::default()
        }),
        vec![40, 30, 20, 10]
    );
    assert_eq!(
        filtered(pb::AuditFilter {
            outcome: "denied".into(),
            ..Default::default()
        }),
        vec![43, 33, 23, 13]
    );
    assert_eq!(
        filtered(pb::AuditFilter {
            kinds: vec!["change".into()],
            ..Default::default()
        }),
        Vec::<i64>::new()
    );
    assert!(filtered(pb::AuditFilter {
        server: "other".into(),
        ..Default::default()
    })
    .is_empty());

    let unknown = store.query(&Query {
        filter: pb::AuditFilter {
            outcome: "maybe".into(),
            ..Default::default()
        },
        ..Query::default()
    });
    assert!(matches!(unknown, Err(AuditError::InvalidArgument(_))));
}

#[tokio::test]
async fn a_tool_filter_matches_the_upstream_name_and_the_aggregate_one() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    // The same tool called on `/mcp` (as `files__read`) and on `/servers/files/mcp` (as
    // `read`), and another server's `read` through `/mcp`.
    store
        .append(vec![
            request(1, "a", "files", "files__read", true),
            request(2, "a", "files", "read", true),
            request(3, "a", "other", "other__read", true),
            request(4, "a", "files", "files__write", true),
        ])
        .await
        .unwrap();
    let filtered = |server: &str, tool: &str| {
        times(
            &store
                .query(&Query {
                    filter: pb::AuditFilter {
                        server: server.into(),
                        tool: tool.into(),
                        ..Default::default()
                    },
                    limit: 100,
                    ..Query::default()
                })
                .unwrap()
                .events,
        )
    };
    assert_eq!(filtered("files", "read"), vec![2, 1]);
    assert_eq!(filtered("", "read"), vec![3, 2, 1]);
    assert_eq!(filtered("", "files__read"), vec![1]);
    assert!(filtered("", "ead").is_empty());
}

#[tokio::test]
async fn a_forged_cursor_is_refused() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    store
        .append((0..5).map(|n| request(n, "a", "s", "t", true)).collect())
        .await
        .unwrap();
    let page = store
        .query(&Query {
            limit: 2,
            ..Query::default()
        })
        .unwrap();
    assert!(!page.next_cursor.is_empty());
    let mut forged = page.next_cursor.clone().into_bytes();
    let last = forged.len() - 3;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    for cursor in [String::from_utf8(forged).unwrap(), "garbage".into()] {
        let err = store
            .query(&Query {
                cursor,
                ..Query::default()
            })
            .unwrap_err();
        assert!(matches!(err, AuditError::Cursor), "{err}");
        let status = tonic::Status::from(err);
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
    }
}

#[tokio::test]
async fn retention_removes_by_age_then_by_size() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    store
        .append((0..100).map(|n| request(n, "a", "s", "t", true)).collect())
        .await
        .unwrap();
    let all = store.stored_bytes();
    // By age: everything before T0 + 30 s.
    assert_eq!(store.expire(T0 + 30 * SECOND, u64::MAX).unwrap(), 30);
    let left = store
        .query(&Query {
            limit: 1000,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(times(&left.events).last(), Some(&30));
    assert_eq!(store.len(), 70);
    assert!(store.stored_bytes() < all);
    // By size: down to half of what is left, oldest first.
    let half = store.stored_bytes() / 2;
    let removed = store.expire(i64::MIN, half).unwrap();
    assert!((35..70).contains(&removed), "{removed}");
    assert!(store.stored_bytes() <= half);
    let left = store
        .query(&Query {
            limit: 1000,
            ..Query::default()
        })
        .unwrap();
    assert_eq!(times(&left.events).first(), Some(&99));
    // An expired id may come again (retention forgot it): stored anew, not a duplicate.
    let again = store
        .append(vec![request(0, "a", "s", "t", true)])
        .await
        .unwrap();
    assert_eq!(again.stored, 1);
}

#[tokio::test]
async fn concurrent_appends_share_flushes_and_publish_live() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    let mut live = store.subscribe();
    let tasks: Vec<_> = (0..8u32)
        .map(|t| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .append(
                        (0..50)
                            .map(|n| request(t * 1000 + n, "a", "s", "t", true))
                            .collect(),
                    )
                    .await
            })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().stored, 50);
    }
    assert_eq!(store.len(), 400);
    let mut received = 0;
    while live.try_recv().is_ok() {
        received += 1;
    }
    assert_eq!(received, 400);
}

/// Events ten minutes apart over ~17 hours: 3 clients, 2 tools, every 7th denied.
fn spread_events() -> Vec<pb::AuditEvent> {
    (0..100u32)
        .map(|n| {
            let mut e = request(
                n,
                &format!("c{}", n % 3),
                "files",
                if n % 2 == 0 { "read" } else { "write" },
                n % 7 != 0,
            );
            e.time_unix_nanos = T0 + i64::from(n) * 600 * SECOND;
            e
        })
        .collect()
}

/// What a filter should list (newest first), by checking each event directly.
fn expected(events: &[pb::AuditEvent], f: &pb::AuditFilter, since: i64) -> Vec<i64> {
    let filter = super::filter::Filter::new(f.clone()).unwrap();
    let mut out: Vec<i64> = events
        .iter()
        .filter(|e| e.time_unix_nanos >= since && filter.matches(e))
        .map(|e| e.time_unix_nanos)
        .collect();
    out.reverse();
    out
}

fn listed(store: &AuditStore, f: &pb::AuditFilter, since: i64, limit: u32) -> Vec<i64> {
    let mut all = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = store
            .query(&Query {
                filter: f.clone(),
                since,
                limit,
                cursor: cursor.clone(),
                ..Query::default()
            })
            .unwrap();
        assert!(page.events.len() <= limit as usize);
        all.extend(page.events.iter().map(|e| e.time_unix_nanos));
        if page.next_cursor.is_empty() {
            return all;
        }
        cursor = page.next_cursor;
    }
}

#[tokio::test]
async fn indexed_filters_list_what_a_scan_would_across_hours_pages_and_retention() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    let events = spread_events();
    // Several rounds, one of them a retry of earlier events (stored once, indexed once).
    store.append(events[..60].to_vec()).await.unwrap();
    store.append(events[40..].to_vec()).await.unwrap();
    let filters = [
        pb::AuditFilter {
            client: "c1".into(),
            ..Default::default()
        },
        pb::AuditFilter {
            client: "c2".into(),
            tool: "read".into(),
            ..Default::default()
        },
        pb::AuditFilter {
            tool: "write".into(),
            outcome: "denied".into(),
            ..Default::default()
        },
        pb::AuditFilter {
            server: "files".into(),
            ..Default::default()
        },
        pb::AuditFilter {
            outcome: "denied".into(),
            ..Default::default()
        },
        pb::AuditFilter {
            client: "nobody".into(),
            ..Default::default()
        },
    ];
    let check = |store: &AuditStore, events: &[pb::AuditEvent], since: i64| {
        for f in &filters {
            let want = expected(events, f, since);
            for limit in [3, 1000] {
                assert_eq!(listed(store, f, since, limit), want, "{f:?} limit {limit}");
            }
            // A window inside the trail: from event 25's time.
            let from = T0 + 25 * 600 * SECOND;
            let inner = since.max(from);
            assert_eq!(
                listed(store, f, inner, 1000),
                expected(events, f, inner),
                "{f:?}"
            );
        }
    };
    check(&store, &events, 0);

    // Retention takes the oldest 50 (and the index's hours before the last one removed).
    let cutoff = T0 + 50 * 600 * SECOND;
    assert_eq!(store.expire(cutoff, u64::MAX).unwrap(), 50);
    check(&store, &events[50..], 0);
    let index = db.open_tree("audit_index").unwrap();
    let oldest_kept = super::index::bucket(T0 + 49 * 600 * SECOND);
    let (first, _) = index.first().unwrap().unwrap();
    assert!(
        first[..8] >= oldest_kept[..],
        "index entries of removed hours are gone"
    );
    // Everything goes: so do the index entries of every hour but the last one's.
    store.expire(i64::MAX, u64::MAX).unwrap();
    assert!(store.is_empty());
    assert!(listed(&store, &filters[0], 0, 10).is_empty());
}

#[tokio::test]
async fn a_trail_written_without_the_index_is_indexed_at_open() {
    let (_dir, db) = db();
    let store = AuditStore::open(&db).unwrap();
    let events = spread_events();
    store.append(events.clone()).await.unwrap();
    store.close().await;
    // As an earlier version left it: events, no index, no "indexed" mark.
    db.open_tree("audit_index").unwrap().clear().unwrap();
    db.open_tree("audit_meta")
        .unwrap()
        .remove(b"indexed_v1")
        .unwrap();
    let store = AuditStore::open(&db).unwrap();
    let f = pb::AuditFilter {
        client: "c2".into(),
        ..Default::default()
    };
    assert_eq!(listed(&store, &f, 0, 7), expected(&events, &f, 0));
    assert!(!listed(&store, &f, 0, 7).is_empty());
}
