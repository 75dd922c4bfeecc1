//! Prometheus metrics of the control plane, on a listener of their own
//! (`--metrics-listen`, off by default): `GET /metrics` (text exposition 0.0.4) and
//! `GET /healthz`.
//!
//! Counters are atomics bumped where things happen (Admin calls in `admin_calls`, key
//! refreshes in `identity/keys.rs`); gauges are read from their owners (fleet, store, sync
//! streams) and all text is formatted only at scrape time, by the [`Collect`]ors of a
//! [`Registry`].
//!
//! Adding metrics (e.g. the audit trail's): declare each family once in `families.rs` —
//! the one place names, types and help live — then write its samples from a new
//! [`Collect`] registered in `server.rs`, or from an existing one.

mod admin_calls;
mod collectors;
mod families;
mod http;
mod text;

pub use admin_calls::{AdminCalls, AdminCallsLayer};
pub use collectors::{AuditCollector, IdentityCollector, ProcessCollector};
pub use http::{bind, serve, MetricsError};
pub use text::{Exposition, Family, Kind};

use std::sync::Arc;

/// Every declared family (tests check each is served once).
#[cfg(test)]
pub(crate) fn families_for_tests() -> &'static [&'static Family] {
    families::ALL
}

/// What writes samples at scrape time.
pub trait Collect: Send + Sync {
    /// Appends this source's families to `out`.
    fn collect(&self, out: &mut Exposition);
}

/// Everything `/metrics` shows, in registration order.
#[derive(Default, Clone)]
pub struct Registry {
    collectors: Vec<Arc<dyn Collect>>,
}

impl Registry {
    pub fn register(&mut self, collector: Arc<dyn Collect>) {
        self.collectors.push(collector);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = Exposition::default();
        for c in &self.collectors {
            c.collect(&mut out);
        }
        out.into_text()
    }
}
