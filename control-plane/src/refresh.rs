//! `--refresh-interval`: every interval, re-discover the tools and prompts of every
//! registered server. A catalogue that changed is stored as an ordinary change (new
//! revision, streamed to data planes); an unchanged one stores nothing. A server that
//! cannot be reached is logged and left registered with its last catalogue.
//!
//! Not here: `canopy refresh server` (the admin service; it always stores).

use crate::admin::{Refreshed, Refresher};
use futures::StreamExt;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

/// Servers discovered at the same time during one round.
const CONCURRENCY: usize = 8;

/// Runs rounds forever, the first one `interval` after the start (registration has just
/// discovered what is stored). Drop or abort the task to stop it.
pub(crate) async fn run(refresher: Refresher, interval: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
    // A round that takes longer than the interval delays the next one instead of
    // starting rounds back to back.
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        round(&refresher).await;
    }
}

/// One pass over every registered server.
pub(crate) async fn round(refresher: &Refresher) {
    let servers = match refresher.store().servers() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "periodic refresh: cannot read the registered servers");
            return;
        }
    };
    let total = servers.len();
    let changed = std::sync::atomic::AtomicUsize::new(0);
    let failed = std::sync::atomic::AtomicUsize::new(0);
    futures::stream::iter(servers)
        .for_each_concurrent(CONCURRENCY, |server| {
            let (changed, failed) = (&changed, &failed);
            async move {
                let name = server.spec.name.clone();
                match refresher.refresh(&server).await {
                    Ok(Refreshed::Changed(revision)) => {
                        changed.fetch_add(1, Relaxed);
                        tracing::info!(
                            server = %name,
                            revision,
                            "periodic refresh: tool/prompt catalogue changed"
                        )
                    }
                    Ok(Refreshed::Unchanged) => {
                        tracing::debug!(server = %name, "periodic refresh: unchanged")
                    }
                    Ok(Refreshed::Skipped) => tracing::debug!(
                        server = %name,
                        "periodic refresh: server changed meanwhile; skipped"
                    ),
                    Err(e) => {
                        failed.fetch_add(1, Relaxed);
                        tracing::warn!(
                            server = %name,
                            error = %e,
                            "periodic refresh failed; keeping the last known tools and prompts"
                        )
                    }
                }
            }
        })
        .await;
    tracing::info!(
        servers = total,
        changed = changed.load(Relaxed),
        failed = failed.load(Relaxed),
        "periodic refresh round done"
    );
}
