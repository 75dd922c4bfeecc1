//! The control plane's own collectors: process basics, the audit trail and identity
//! providers.

use super::families::*;
use super::{Collect, Exposition, Family};
use crate::audit::AuditStore;
use crate::fleet::Fleet;
use crate::identity::KeyMetrics;
use crate::identity::Keys;
use crate::store::Store;
use crate::sync::StreamCloser;
use std::sync::Arc;

/// Data planes, revision, Sync streams.
pub struct ProcessCollector {
    pub fleet: Arc<Fleet>,
    pub store: Store,
    pub streams: StreamCloser,
    pub audit_streams: StreamCloser,
}

impl Collect for ProcessCollector {
    fn collect(&self, out: &mut Exposition) {
        let planes = self.fleet.list();
        let connected = planes.iter().filter(|p| p.connected).count();
        out.family(&DATA_PLANES_CONNECTED).value(connected);
        out.family(&DATA_PLANES_KNOWN).value(planes.len());
        out.family(&REVISION).value(self.store.revision());
        out.family(&SYNC_STREAMS).value(self.streams.open_now());
        out.family(&SYNC_STREAMS_OPENED)
            .value(self.streams.opened_total());
        out.family(&AUDIT_STREAMS)
            .value(self.audit_streams.open_now());
    }
}

/// The audit trail's store: what was ingested, refused as duplicate, removed, and how the
/// writer keeps up. No labels: a fixed set of series.
pub struct AuditCollector {
    pub store: AuditStore,
}

impl Collect for AuditCollector {
    fn collect(&self, out: &mut Exposition) {
        use std::sync::atomic::Ordering::Relaxed;
        let c = self.store.counters();
        out.family(&AUDIT_INGESTED).value(c.ingested.load(Relaxed));
        out.family(&AUDIT_DUPLICATES)
            .value(c.duplicates.load(Relaxed));
        out.family(&AUDIT_STORED_BYTES)
            .value(self.store.stored_bytes());
        out.family(&AUDIT_RETENTION_DELETED)
            .value(c.expired.load(Relaxed));
        out.family(&AUDIT_WRITER_QUEUE).value(self.store.queued());
        out.family(&AUDIT_COMMITS).value(c.commits.load(Relaxed));
        out.family(&AUDIT_ROUNDS).value(c.rounds.load(Relaxed));
        out.family(&AUDIT_ROUND_SECONDS)
            .value(c.commit_micros.load(Relaxed) as f64 / 1e6);
        out.family(&AUDIT_TAIL_LAGGED)
            .value(c.tail_lagged.load(Relaxed));
    }
}

/// Per identity provider, labelled `provider` with its name: bounded by the stored
/// providers, read from the store at each scrape (a deleted one disappears).
pub struct IdentityCollector {
    pub keys: Arc<Keys>,
    pub store: Store,
}

impl Collect for IdentityCollector {
    fn collect(&self, out: &mut Exposition) {
        let providers = match self.store.identity_providers() {
            Ok(p) => p,
            Err(e) => {
                // The families are left out rather than shown as zeros that would lie.
                tracing::warn!(error = %e, "metrics: cannot read the identity providers");
                return;
            }
        };
        let rows: Vec<_> = providers
            .iter()
            .map(|p| {
                let name = p.spec.name.as_str();
                (name, self.keys.metrics(name), key_count(&p.jwks_json))
            })
            .collect();
        let mut family = |f: &Family, value: &dyn Fn(&Row) -> f64| {
            let mut samples = out.family(f);
            for row in &rows {
                samples.labelled(&[("provider", row.0)], value(row));
            }
        };
        family(&IDP_REFRESH_ATTEMPTS, &|r| r.1.attempts as f64);
        family(&IDP_REFRESH_FAILURES, &|r| r.1.failures_total as f64);
        family(&IDP_CONSECUTIVE_FAILURES, &|r| {
            f64::from(r.1.status.failures)
        });
        family(&IDP_LAST_SUCCESS, &|r| {
            r.1.status.fetched_ms as f64 / 1000.0
        });
        family(&IDP_KEYS, &|r| r.2 as f64);
        family(&IDP_UNKNOWN_KID_FETCHES, &|r| {
            r.1.unknown_kid_fetches as f64
        });
    }
}

/// One provider at one scrape: name, counters, keys held.
type Row<'a> = (&'a str, KeyMetrics, usize);

/// Keys in a stored JWKS document.
fn key_count(jwks_json: &str) -> usize {
    serde_json::from_str::<serde_json::Value>(jwks_json)
        .ok()
        .and_then(|v| v.get("keys")?.as_array().map(Vec::len))
        .unwrap_or(0)
}
