//! The event trees and what is done with them.
//!
//! Trees (in the control plane's sled database, apart from its records):
//! * `audit_events`: key (time, id) (see `key.rs`) → the protobuf-encoded `AuditEvent`;
//! * `audit_ids`: id → the event's time (8 bytes): the de-duplication index;
//! * `audit_index`: client, subject, server, tool and outcome → event keys, by hour (see
//!   `index.rs`);
//! * `audit_meta`: the cursor key and the stored-bytes counter.
//!
//! A query without an indexed filter is one reverse range scan over its window, each event
//! matched against the filter (most ruled out on their bytes). With one, it reads the
//! index's entries for that value hour by hour, newest first, and fetches only the events
//! they name. A page examines at most [`MAX_SCAN`] events; when it stops there it returns
//! what it found with a cursor to go on.
//!
//! Writes: one writer task takes every queued call, writes their events, index entries and
//! ids as one sled batch per tree, flushes once and answers them all (group commit:
//! concurrent Ship streams share one fsync). An event whose id is in the id index, or
//! earlier in the same round, is a duplicate.

use super::cursor::CursorKey;
use super::filter::Filter;
use super::index;
use super::key::{self, EventKey, ID_LEN, KEY_LEN};
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
/// Bytes counted per event for its secondary-index references (its key under client or
/// subject, server, tool and outcome; the entries' own keys are shared by a round).
const INDEX_BYTES: u64 = 4 * KEY_LEN as u64;
/// Per-event bytes counted besides its key and encoding.
const OVERHEAD_BYTES: u64 = ID_ENTRY_BYTES + INDEX_BYTES;
/// Widest window (in hours) read through the index; a wider one is scanned.
const MAX_INDEX_HOURS: u64 = 24 * 366 * 5;

const META_CURSOR_KEY: &[u8] = b"cursor_key";
const META_BYTES: &[u8] = b"bytes";
/// Set once every stored event is in the secondary index.
const META_INDEXED: &[u8] = b"indexed_v1";

/// Counters for operators, served as `canopy_cp_audit_*` (`metrics/collectors.rs`).
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
    /// Durable commits (one flush per write round).
    pub commits: AtomicU64,
    /// Microseconds from a round's turn at the writer to its flush's end, summed over the
    /// rounds (with `rounds`: the mean ingest commit latency).
    pub commit_micros: AtomicU64,
    /// Write rounds committed.
    pub rounds: AtomicU64,
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
    index: sled::Tree,
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
        let index = db.open_tree("audit_index")?;
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
        if meta.get(META_INDEXED)?.is_none() {
            backfill(db, &events, &index)?;
            meta.insert(META_INDEXED, &[1])?;
        }
        let inner = Arc::new(Inner {
            db: db.clone(),
            events,
            ids,
            index,
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

    /// Calls queued for the writer now (waiting for their round).
    pub fn queued(&self) -> usize {
        self.writer.max_capacity() - self.writer.capacity()
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
        if let Some((field, value)) = filter.index_term() {
            if let Some(page) = self.query_index(&filter, field, value, lo, hi, limit)? {
                return Ok(page);
            }
        }
        self.query_scan(&filter, lo, hi, limit)
    }

    /// The window [lo, hi) scanned newest first, every event checked.
    fn query_scan(
        &self,
        filter: &Filter,
        lo: EventKey,
        hi: Option<EventKey>,
        limit: usize,
    ) -> Result<Page, AuditError> {
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

    /// The window [lo, hi) read through the index entries of `field` = `value`, hour by
    /// hour from the newest. `None` when the window is too wide for it (scan instead).
    fn query_index(
        &self,
        filter: &Filter,
        field: index::Field,
        value: &str,
        lo: EventKey,
        hi: Option<EventKey>,
        limit: usize,
    ) -> Result<Option<Page>, AuditError> {
        let inner = &self.inner;
        // The hours to read: the window, narrowed to the stored events' times.
        let (Some((first, _)), Some((newest, _))) = (inner.events.first()?, inner.events.last()?)
        else {
            return Ok(Some(Page::default()));
        };
        let lo_key: &[u8] = lo.as_slice().max(first.as_ref());
        let hi_time = match hi {
            Some(h) if h.as_slice() <= newest.as_ref() => time_of(&h),
            _ => time_of(&newest),
        };
        let lo_time = time_of(lo_key);
        if hi_time < lo_time {
            return Ok(Some(Page::default()));
        }
        if index::hour_count(lo_time, hi_time) > MAX_INDEX_HOURS {
            return Ok(None);
        }
        let in_window = |k: &[u8]| k >= lo.as_slice() && hi.is_none_or(|h| k < h.as_slice());
        let mut page = Page::default();
        let mut examined = 0usize;
        let mut last: Option<EventKey> = None;
        let mut keys: Vec<EventKey> = Vec::new();
        for hour in index::hours(lo_time, hi_time).rev() {
            keys.clear();
            for entry in inner.index.scan_prefix(index::prefix(hour, field, value)) {
                let (_, refs) = entry?;
                keys.extend(
                    index::event_keys(&refs)
                        .filter(|k| in_window(k))
                        .filter_map(|k| EventKey::try_from(k).ok()),
                );
            }
            // Newest first; a round written twice (retried after a crash) names an event twice.
            keys.sort_unstable_by(|a, b| b.cmp(a));
            keys.dedup();
            for k in &keys {
                if examined >= MAX_SCAN {
                    if let Some(last) = &last {
                        page.next_cursor = inner.cursor_key.seal(last);
                    }
                    return Ok(Some(page));
                }
                examined += 1;
                last = Some(*k);
                // Gone: removed by retention after its hour's entries were read.
                let Some(raw) = inner.events.get(k)? else {
                    continue;
                };
                let event = decode(&raw)?;
                if filter.matches(&event) {
                    page.events.push(event);
                    if page.events.len() == limit {
                        page.next_cursor = inner.cursor_key.seal(k);
                        return Ok(Some(page));
                    }
                }
            }
        }
        Ok(Some(page))
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
            let mut newest_removed = None;
            for item in inner.events.iter() {
                let (k, v) = item?;
                let size = (k.len() + v.len()) as u64 + OVERHEAD_BYTES;
                if !take(&k, size) {
                    break;
                }
                if let Some(id) = key::id_of(&k) {
                    ids.remove(&id[..]);
                }
                newest_removed = Some(time_of(&k));
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
            if let Some(t) = newest_removed {
                self.drop_index_before(t)?;
            }
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

impl AuditStore {
    /// Removes the index entries of the hours before the one of `time` (its events are
    /// gone; entries of that hour itself stay until a later pass, naming some removed events
    /// that queries skip).
    fn drop_index_before(&self, time: i64) -> Result<(), AuditError> {
        const CHUNK: usize = 10_000;
        let end = index::bucket(time);
        loop {
            let mut batch = sled::Batch::default();
            let mut n = 0usize;
            for item in self.inner.index.range(..end) {
                let (k, _) = item?;
                batch.remove(k);
                n += 1;
                if n == CHUNK {
                    break;
                }
            }
            if n == 0 {
                return Ok(());
            }
            self.inner.index.apply_batch(batch)?;
            if n < CHUNK {
                return Ok(());
            }
        }
    }
}

/// The time of a stored event key (its first 8 bytes); 0 for a key too short to be ours.
fn time_of(k: &[u8]) -> i64 {
    k.get(..8)
        .and_then(|t| <[u8; 8]>::try_from(t).ok())
        .map_or(0, |t| (u64::from_be_bytes(t) ^ (1 << 63)) as i64)
}

/// One caller's events, checked, waiting for the writer.
struct Job {
    events: Vec<pb::AuditEvent>,
    ids: Vec<[u8; ID_LEN]>,
    reply: oneshot::Sender<Result<Appended, AuditError>>,
}

/// The single writer: takes every call queued (up to [`MAX_JOBS`]), writes them as one
/// batch per tree, flushes once, then answers them all and publishes the new events (group
/// commit: concurrent Ship streams share one fsync and one sled batch per tree). Calls that
/// arrive during a flush wait for the next round, which is what makes rounds large under load
/// (writing the next round during the flush was tried: rounds shrank and ingest fell, since
/// each round writes an index entry per distinct value).
async fn write_loop(inner: Arc<Inner>, mut jobs: mpsc::Receiver<Job>) {
    let mut queue = Vec::with_capacity(MAX_JOBS);
    while jobs.recv_many(&mut queue, MAX_JOBS).await > 0 {
        let round = std::mem::take(&mut queue);
        let started = std::time::Instant::now();
        let writer = Arc::clone(&inner);
        let written = tokio::task::spawn_blocking(move || write_round(&writer, round)).await;
        let Ok((answers, fresh)) = written else {
            // The blocking task panicked: its callers see the store as closed.
            continue;
        };
        let flushed = inner.db.flush_async().await;
        let counters = &inner.counters;
        counters.commits.fetch_add(1, Ordering::Relaxed);
        counters.rounds.fetch_add(1, Ordering::Relaxed);
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        counters.commit_micros.fetch_add(micros, Ordering::Relaxed);
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

/// The index entries of one round: (hour, field, value) → the keys of its events.
type Postings<'a> = std::collections::HashMap<(i64, index::Field, &'a str), Vec<u8>>;

/// The index entries of `events` (with their keys), grouped by hour, field and value.
fn postings<'a>(events: impl Iterator<Item = (&'a pb::AuditEvent, &'a EventKey)>) -> Postings<'a> {
    let mut postings = Postings::new();
    for (event, event_key) in events {
        let t = event.time_unix_nanos;
        for (field, value) in index::terms(event) {
            postings
                .entry((index::hour_of(t), field, value))
                .or_default()
                .extend_from_slice(event_key);
        }
    }
    postings
}

fn index_batch(postings: Postings<'_>, round_id: u64) -> sled::Batch {
    let mut batch = sled::Batch::default();
    for ((hour, field, value), refs) in postings {
        batch.insert(index::entry_key(hour, field, value, round_id), refs);
    }
    batch
}

/// Indexes the events stored before the index existed (a data dir of an earlier version),
/// once, at open, chunk by chunk.
fn backfill(db: &sled::Db, events: &sled::Tree, index: &sled::Tree) -> Result<(), AuditError> {
    const CHUNK: usize = 50_000;
    let mut chunk: Vec<(pb::AuditEvent, EventKey)> = Vec::with_capacity(CHUNK);
    let mut iter = events.iter();
    loop {
        chunk.clear();
        for item in iter.by_ref().take(CHUNK) {
            let (k, v) = item?;
            let Ok(key) = EventKey::try_from(k.as_ref()) else {
                continue;
            };
            chunk.push((decode(&v)?, key));
        }
        if chunk.is_empty() {
            return Ok(());
        }
        let postings = postings(chunk.iter().map(|(e, k)| (e, k)));
        index.apply_batch(index_batch(postings, db.generate_id()?))?;
    }
}

/// Writes one round of calls; returns each caller's answer and the events to publish.
fn write_round(inner: &Inner, round: Vec<Job>) -> (Answers, Vec<pb::AuditEvent>) {
    let mut batch = sled::Batch::default();
    let mut id_batch = sled::Batch::default();
    let mut seen = std::collections::HashSet::new();
    let mut fresh = Vec::new();
    let mut keys = Vec::new();
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
            added += (event_key.len() + value.len()) as u64 + OVERHEAD_BYTES;
            batch.insert(&event_key[..], value);
            id_batch.insert(&id[..], &time[..]);
            appended.stored += 1;
            fresh.push(event);
            keys.push(event_key);
        }
        totals.stored += appended.stored;
        totals.duplicates += appended.duplicates;
        answers.push((job.reply, failed.map_or(Ok(appended), |e| Err(e.into()))));
    }
    let postings = postings(fresh.iter().zip(&keys));
    // Events, then their index entries, then their ids: after a crash in between, a retry
    // finds no id and writes the same event key again (same time, same id), never a second
    // copy, and index entries again (naming the event twice, which a query de-duplicates).
    let written = inner
        .events
        .apply_batch(batch)
        .and_then(|()| {
            if postings.is_empty() {
                return Ok(());
            }
            let round_id = inner.db.generate_id()?;
            inner.index.apply_batch(index_batch(postings, round_id))
        })
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
