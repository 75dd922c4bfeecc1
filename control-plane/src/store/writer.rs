//! The single writer task: group commit.
//!
//! Every mutation goes through one mpsc queue. The task takes whatever is queued (up to
//! [`MAX_BATCH`]), applies each mutation in its own transaction (each gets its own
//! revision), calls `flush_async` ONCE for the batch, and only then answers the callers
//! and publishes the changes on the broadcast channel, in revision order. With many
//! concurrent callers one fsync covers many writes; a lone caller pays one fsync.

use super::mutation::Mutation;
use super::open::Trees;
use super::records::ChangeRecord;
use super::StoreError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, oneshot};

/// Most mutations one fsync covers.
const MAX_BATCH: usize = 512;

/// State the writer publishes and readers consult.
pub(super) struct Shared {
    /// Highest revision that is durable and published.
    pub published: AtomicU64,
    /// Every change record at or below this revision may have been removed.
    pub compacted_through: AtomicU64,
    pub changes: broadcast::Sender<Arc<ChangeRecord>>,
    pub changelog_retain: u64,
    /// Change records older than this are compacted away (`None` = by count only).
    pub changelog_max_age: Option<Duration>,
}

// Boxed mutation: a queue slot stays small; one allocation per write is noise next to fsync.
pub(super) enum Command {
    Apply {
        mutation: Box<Mutation>,
        reply: oneshot::Sender<Result<u64, StoreError>>,
    },
    /// Answered once everything queued before it is durable.
    Flush {
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
    /// Finish the queued work, then stop.
    Stop,
}

pub(super) async fn run(trees: Trees, shared: Arc<Shared>, mut rx: mpsc::Receiver<Command>) {
    let mut queue = Vec::with_capacity(MAX_BATCH);
    let mut stop = false;
    // Compaction by age must also happen when nothing is written.
    let mut age_tick = tokio::time::interval(age_check_period(shared.changelog_max_age));
    age_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop {
        let received = tokio::select! {
            n = rx.recv_many(&mut queue, MAX_BATCH) => n,
            _ = age_tick.tick(), if shared.changelog_max_age.is_some() => {
                compact_by_age(&trees, &shared);
                continue;
            }
        };
        if received == 0 {
            break;
        }
        // One clock reading per batch, passed into the transactions (which must not
        // read it themselves: they can re-run).
        let now = crate::clock::now_ms();
        let mut applied = Vec::with_capacity(queue.len());
        let mut flushes = Vec::new();
        for cmd in queue.drain(..) {
            match cmd {
                Command::Apply { mutation, reply } => {
                    applied.push((reply, trees.apply(&mutation, now)))
                }
                Command::Flush { reply } => flushes.push(reply),
                Command::Stop => stop = true,
            }
        }
        let any_write = applied.iter().any(|(_, r)| r.is_ok());
        let flushed = if any_write || !flushes.is_empty() || stop {
            trees.db.flush_async().await.map(|_| ())
        } else {
            Ok(())
        };
        if let Err(e) = &flushed {
            tracing::error!(error = %e, "flushing the store failed; writes of this batch may not be durable");
        }
        for (reply, result) in applied {
            let answer = match result {
                Ok(record) => {
                    let revision = record.revision;
                    // Published even if the flush failed: the change is in the trees,
                    // and data planes must see what later snapshots will show.
                    shared.published.store(revision, Ordering::SeqCst);
                    let _ = shared.changes.send(Arc::new(record));
                    flushed.clone().map(|()| revision).map_err(StoreError::Sled)
                }
                Err(e) => Err(e),
            };
            let _ = reply.send(answer);
        }
        for reply in flushes {
            let _ = reply.send(flushed.clone().map_err(StoreError::Sled));
        }
        maybe_compact(&trees, &shared);
    }
}

/// How often the writer looks for change records past `--changelog-max-age`.
fn age_check_period(max_age: Option<Duration>) -> Duration {
    max_age.map_or(Duration::from_secs(3600), |a| {
        (a / 4).clamp(Duration::from_millis(100), Duration::from_secs(60))
    })
}

fn compact_by_age(trees: &Trees, shared: &Shared) {
    let Some(max_age) = shared.changelog_max_age else {
        return;
    };
    let max_age_ms = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
    let cutoff = crate::clock::now_ms().saturating_sub(max_age_ms);
    match trees.compact_older_than(shared, cutoff) {
        Ok(0) => {}
        Ok(n) => tracing::info!(
            removed = n,
            through = shared.compacted_through.load(Ordering::SeqCst),
            ?max_age,
            "compacted change records older than --changelog-max-age"
        ),
        Err(e) => tracing::warn!(error = %e, "compacting the change log by age failed"),
    }
}

fn maybe_compact(trees: &Trees, shared: &Shared) {
    let retain = shared.changelog_retain;
    let published = shared.published.load(Ordering::SeqCst);
    let compacted = shared.compacted_through.load(Ordering::SeqCst);
    // Hysteresis: compact in chunks of about retain/8 instead of one record per write.
    let slack = (retain / 8).max(1);
    if published.saturating_sub(compacted) > retain.saturating_add(slack) {
        match trees.compact(shared, retain) {
            Ok(n) => tracing::debug!(removed = n, "compacted the change log"),
            Err(e) => tracing::warn!(error = %e, "compacting the change log failed"),
        }
    }
}
