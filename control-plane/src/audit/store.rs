//! The event trees and what is done with them.
//!
//! Trees (in the control plane's sled database, apart from its records):
//! * `audit_events`: key (time, id) (see `key.rs`) → the protobuf-encoded `AuditEvent`;
//! * `audit_ids`: id → the event's time (8 bytes): the de-duplication index;
//! * `audit_meta`: the cursor key and the stored-bytes counter.
//!
//! Only time is indexed: a query is one reverse range scan over its window, each event
//! decoded and matched against the filter. A page scans at most [`MAX_SCAN`] events; when
//! it stops there it returns what it found with a cursor to go on.
//!
//! Writes: one writer task takes every queued call, writes their events as one sled batch
//! and their ids as another, flushes once and answers them all (group commit: concurrent
//! Ship streams share one fsync). An event whose id is in the index, or earlier in the same
//! round, is a duplicate.

use super::cursor::CursorKey;
use super::filter::Filter;
use super::key::{self, EventKey, ID_LEN};
use super::AuditError;
use canopy_proto::v1 as pb;
use prost::Message;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Most events one page scans before returning with a cursor.
pub const MAX_SCAN: usize = 2_000_000;
/// Default and largest page.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 10_000;
/// Calls one write round takes at most (and calls queued before callers wait).
const MAX_JOBS: usize = 256;
/// Live events buffered per tailer before it is told it lost some.
const LIVE_CAPACITY: usize = 8 * 1024;
/// Bytes an id-index entry takes (key + value), counted with each event.
const ID_ENTRY_BYTES: u64 = (ID_LEN + 8) as u64;

const META_CURSOR_KEY: &[u8] = b"cursor_key";
const META_BYTES: &[u8] = b"bytes";

/// Counters for operators. Kept here until the control plane exports metrics (they are
/// meant for `canopy_audit_*` series once `--metrics-listen` lands).
#[derive(Debug, Default)]
pub struct AuditCounters {
    /// Events stored (new ids).
    pub ingested: AtomicU64,
    /// Events refused as already stored.
    pub duplicates: AtomicU64,
    /// Events removed by retention.
    pub expired: AtomicU64,
    /// Live events tailers missed because they read too slowly.
    pub tail_lagged: AtomicU64,
}

/// What one append did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Appended {
    pub stored: u32,
    pub duplicates: u32,
}

/// A listing request, checked by [`AuditStore::query`].
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub filter: pb::AuditFilter,
    /// Unix nanoseconds, inclusive; 0 = unbounded.
    pub since: i64,
    /// Unix nanoseconds, exclusive; 0 = unbounded.
    pub until: i64,
    /// 0 = [`DEFAULT_LIMIT`].
    pub limit: u32,
    pub cursor: String,
}

#[derive(Debug, Clone, Default)]
pub struct Page {
    /// Newest first.
    pub events: Vec<pb::AuditEvent>,
    /// "" = nothing more in the window.
    pub next_cursor: String,
}

/// Handle to the audit trees. Clone is cheap.
#[derive(Clone)]
pub struct AuditStore {
    inner: Arc<Inner>,
    /// The writer task's queue; the task ends when the last clone is dropped.
    writer: mpsc::Sender<Job>,
    task: Arc<std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>>,
}

struct Inner {
    db: sled::Db,
    events: sled::Tree,
    ids: sled::Tree,
    meta: sled::Tree,
    cursor_key: CursorKey,
    /// Logical bytes stored: keys, encoded events, id-index entries.
    bytes: AtomicU64,
    live: broadcast::Sender<Arc<pb::AuditEvent>>,
    counters: AuditCounters,
}

fn decode(raw: &[u8]) -> Result<pb::AuditEvent, AuditError> {
    pb::AuditEvent::decode(raw).map_err(|e| AuditError::Decode(e.to_string()))
}

/// The id of a valid event, or why it is not one.
fn checked_id(event: &pb::AuditEvent) -> Result<[u8; ID_LEN], AuditError> {
    let id = <[u8; ID_LEN]>::try_from(event.id.as_slice()).map_err(|_| {
        AuditError::InvalidArgument(format!(
            "an audit event id must be {ID_LEN} bytes, not {}",
            event.id.len()
        ))
    })?;
    if event.time_unix_nanos <= 0 {
        return Err(AuditError::InvalidArgument(
            "an audit event needs its time (time_unix_nanos > 0)".into(),
        ));
    }
    if event.kind.is_none() {
        return Err(AuditError::InvalidArgument(
            "an audit event needs a kind (request, change, auth_failure or gap)".into(),
        ));
    }
    Ok(id)
}

impl AuditStore {
    /// Opens the audit trees in `db` (creating them and the cursor key on first use) and
    /// starts the writer task (inside a tokio runtime).
    pub fn open(db: &sled::Db) -> Result<Self, AuditError> {
        let events = db.open_tree("audit_events")?;
        let ids = db.open_tree("audit_ids")?;
        let meta = db.open_tree("audit_meta")?;
        let raw = match meta.get(META_CURSOR_KEY)? {
            Some(raw) => <[u8; 32]>::try_from(raw.as_ref())
                .map_err(|_| AuditError::Decode("cursor key is not 32 bytes".into()))?,
            None => {
                let raw: [u8; 32] = rand::random();
                meta.insert(META_CURSOR_KEY, &raw)?;
                raw
            }
        };
        let bytes = match meta.get(META_BYTES)? {
            Some(raw) => <[u8; 8]>::try_from(raw.as_ref())
                .map(u64::from_be_bytes)
                .map_err(|_| AuditError::Decode("byte counter is not 8 bytes".into()))?,
            None => 0,
        };
        let inner = Arc::new(Inner {
            db: db.clone(),
            events,
            ids,
            meta,
            cursor_key: CursorKey::new(raw),
            bytes: AtomicU64::new(bytes),
            live: broadcast::channel(LIVE_CAPACITY).0,
            counters: AuditCounters::default(),
        });
        let (writer, jobs) = mpsc::channel(MAX_JOBS);
        let task = tokio::spawn(write_loop(Arc::clone(&inner), jobs));
        Ok(Self {
            inner,
            writer,
            task: Arc::new(std::sync::Mutex::new(Some(task))),
        })
    }

    /// Drops this handle and, if it was the last one, waits until the writer has finished
    /// and released the database (so the data dir can be opened again in this process).
    pub async fn close(self) {
        let task = self
            .task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        drop(self);
        if let Some(task) = task {
            let _ = task.await;
        }
    }

    pub fn counters(&self) -> &AuditCounters {
        &self.inner.counters
    }

    /// Logical bytes stored (keys, encoded events and the id index; sled's files are
    /// larger until it reclaims space).
    pub fn stored_bytes(&self) -> u64 {
        self.inner.bytes.load(Ordering::Relaxed)
    }

    /// Events stored, counted by a key scan (O(n); for tests and tools, not hot paths).
    pub fn len(&self) -> usize {
        self.inner.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.events.is_empty()
    }

    /// Live events as they become durable, from the moment of the call.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<pb::AuditEvent>> {
        self.inner.live.subscribe()
    }

    /// Stores `events` (every one checked first: one invalid event refuses the call) and
    /// returns once they are durable. Events whose id is already stored are counted, not
    /// stored again.
    pub async fn append(&self, events: Vec<pb::AuditEvent>) -> Result<Appended, AuditError> {
        let ids = events
            .iter()
            .map(checked_id)
            .collect::<Result<Vec<_>, _>>()?;
        let (reply, answer) = oneshot::channel();
        self.writer
            .send(Job { events, ids, reply })
            .await
            .map_err(|_| AuditError::Closed)?;
        answer.await.map_err(|_| AuditError::Closed)?
    }
    /// One page of events in the window, newest first (blocking: call it off the runtime's
    /// worker threads for large windows).
    pub fn query(&self, q: &Query) -> Result<Page, AuditError> {
        let filter = Filter::new(q.filter.clone())?;
        let limit = match q.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        } as usize;
        if q.since != 0 && q.until != 0 && q.since >= q.until {
            return Err(AuditError::InvalidArgument(
                "the window is empty: since must be before until".into(),
            ));
        }
        let lo = key::lower_bound(if q.since == 0 { i64::MIN } else { q.since });
        let mut hi: Option<EventKey> = (q.until != 0).then(|| key::lower_bound(q.until));
        if !q.cursor.is_empty() {
            let after = self.inner.cursor_key.open(&q.cursor)?;
            hi = Some(hi.map_or(after, |h| h.min(after)));
        }
        let range = match hi {
            Some(hi) => self.inner.events.range(lo..hi),
            None => self.inner.events.range(lo..),
        };
        let mut page = Page::default();
        let mut last: Option<sled::IVec> = None;
        for (scanned, item) in range.rev().enumerate() {
            let (k, v) = item?;
            if scanned >= MAX_SCAN {
                if let Some(last) = &last {
                    page.next_cursor = self.seal(last);
                }
                return Ok(page);
            }
            // Most events of a selective query are ruled out without decoding them.
            if !filter.may_match(&v) {
                last = Some(k);
                continue;
            }
            let event = decode(&v)?;
            if filter.matches(&event) {
                page.events.push(event);
                if page.events.len() == limit {
                    page.next_cursor = self.seal(&k);
                    return Ok(page);
                }
            }
            last = Some(k);
        }
        Ok(page)
    }

    fn seal(&self, key: &[u8]) -> String {
        match EventKey::try_from(key) {
            Ok(k) => self.inner.cursor_key.seal(&k),
            // Not a key of ours: no way to go on from it.
            Err(_) => String::new(),
        }
    }

    /// The newest `n` stored events that match `filter`, newest first.
    pub fn latest(
        &self,
        filter: &pb::AuditFilter,
        n: u32,
    ) -> Result<Vec<pb::AuditEvent>, AuditError> {
        if n == 0 {
            return Ok(Vec::new());
        }
        self.query(&Query {
            filter: filter.clone(),
            limit: n,
            ..Query::default()
        })
        .map(|p| p.events)
    }

    /// Removes events older than `cutoff` (Unix ns), then the oldest until at most
    /// `max_bytes` are stored. Returns how many went.
    pub fn expire(&self, cutoff: i64, max_bytes: u64) -> Result<u64, AuditError> {
        let mut removed = self.remove_oldest(|key, _| key < key::lower_bound(cutoff).as_slice())?;
        if self.stored_bytes() > max_bytes {
            let mut over = self.stored_bytes() - max_bytes;
            removed += self.remove_oldest(|_, size| {
                let take = over > 0;
                over = over.saturating_sub(size);
                take
            })?;
        }
        if removed > 0 {
            self.inner
                .counters
                .expired
                .fetch_add(removed, Ordering::Relaxed);
        }
        Ok(removed)
    }

    /// Removes events from the oldest on while `take(key, bytes)` says so, in chunks.
    fn remove_oldest(&self, mut take: impl FnMut(&[u8], u64) -> bool) -> Result<u64, AuditError> {
        const CHUNK: usize = 10_000;
        let inner = &self.inner;
        let mut removed = 0u64;
        loop {
            let mut events = sled::Batch::default();
            let mut ids = sled::Batch::default();
            let mut freed = 0u64;
            let mut n = 0usize;
            let mut done = true;
            for item in inner.events.iter() {
                let (k, v) = item?;
                let size = (k.len() + v.len()) as u64 + ID_ENTRY_BYTES;
                if !take(&k, size) {
                    break;
                }
                if let Some(id) = key::id_of(&k) {
                    ids.remove(&id[..]);
                }
                events.remove(k);
                freed += size;
                n += 1;
                if n == CHUNK {
                    done = false;
                    break;
                }
            }
            if n == 0 {
                return Ok(removed);
            }
            // Events first: an id without its event is rewritten on retry, never lost.
            inner.events.apply_batch(events)?;
            inner.ids.apply_batch(ids)?;
            let left = inner
                .bytes
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| {
                    Some(b.saturating_sub(freed))
                })
                .map_or(0, |b| b.saturating_sub(freed));
            inner.meta.insert(META_BYTES, &left.to_be_bytes())?;
            removed += n as u64;
            if done {
                return Ok(removed);
            }
        }
    }
}

/// One caller's events, checked, waiting for the writer.
struct Job {
    events: Vec<pb::AuditEvent>,
    ids: Vec<[u8; ID_LEN]>,
    reply: oneshot::Sender<Result<Appended, AuditError>>,
}

/// The single writer: takes every call queued (up to [`MAX_JOBS`]), writes them as one
/// batch of events and one of ids, flushes once, then answers them all and publishes the
/// new events (group commit: concurrent Ship streams share one fsync and one sled batch).
async fn write_loop(inner: Arc<Inner>, mut jobs: mpsc::Receiver<Job>) {
    let mut queue = Vec::with_capacity(MAX_JOBS);
    while jobs.recv_many(&mut queue, MAX_JOBS).await > 0 {
        let round = std::mem::take(&mut queue);
        let writer = Arc::clone(&inner);
        let written = tokio::task::spawn_blocking(move || write_round(&writer, round)).await;
        let Ok((answers, fresh)) = written else {
            // The blocking task panicked: its callers see the store as closed.
            continue;
        };
        let flushed = inner.db.flush_async().await;
        for (reply, answer) in answers {
            let answer = match (&flushed, answer) {
                (Ok(_), answer) => answer,
                (Err(e), Ok(_)) => Err(AuditError::Write(format!("flush failed: {e}"))),
                (Err(_), Err(e)) => Err(e),
            };
            let _ = reply.send(answer);
        }
        if flushed.is_ok() {
            for event in fresh {
                // No receivers is fine: nobody tails.
                let _ = inner.live.send(Arc::new(event));
            }
        }
    }
}

type Answers = Vec<(
    oneshot::Sender<Result<Appended, AuditError>>,
    Result<Appended, AuditError>,
)>;

/// Writes one round of calls; returns each caller's answer and the events to publish.
fn write_round(inner: &Inner, round: Vec<Job>) -> (Answers, Vec<pb::AuditEvent>) {
    let mut batch = sled::Batch::default();
    let mut id_batch = sled::Batch::default();
    let mut seen = std::collections::HashSet::new();
    let mut fresh = Vec::new();
    let mut added = 0u64;
    let mut answers = Vec::with_capacity(round.len());
    let mut totals = Appended::default();
    for job in round {
        let mut appended = Appended::default();
        let mut failed = None;
        for (event, id) in job.events.into_iter().zip(job.ids) {
            let known = match inner.ids.contains_key(id) {
                Ok(k) => k,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            if !seen.insert(id) || known {
                appended.duplicates += 1;
                continue;
            }
            let time = key::time_bytes(event.time_unix_nanos);
            let event_key = key::event_key(event.time_unix_nanos, &id);
            let value = event.encode_to_vec();
            added += (event_key.len() + value.len()) as u64 + ID_ENTRY_BYTES;
            batch.insert(&event_key[..], value);
            id_batch.insert(&id[..], &time[..]);
            appended.stored += 1;
            fresh.push(event);
        }
        totals.stored += appended.stored;
        totals.duplicates += appended.duplicates;
        answers.push((job.reply, failed.map_or(Ok(appended), |e| Err(e.into()))));
    }
    // Events before their ids: after a crash in between, a retry finds no id and writes the
    // same key again (same time, same id), never a second copy.
    let written = inner
        .events
        .apply_batch(batch)
        .and_then(|()| inner.ids.apply_batch(id_batch))
        .and_then(|()| {
            let total = inner.bytes.fetch_add(added, Ordering::SeqCst) + added;
            inner
                .meta
                .insert(META_BYTES, &total.to_be_bytes())
                .map(|_| ())
        });
    if let Err(e) = written {
        let text = e.to_string();
        let answers = answers
            .into_iter()
            .map(|(reply, _)| {
                (
                    reply,
                    Err(AuditError::Write(format!("write failed: {text}"))),
                )
            })
            .collect();
        return (answers, Vec::new());
    }
    inner
        .counters
        .ingested
        .fetch_add(u64::from(totals.stored), Ordering::Relaxed);
    inner
        .counters
        .duplicates
        .fetch_add(u64::from(totals.duplicates), Ordering::Relaxed);
    (answers, fresh)
}
