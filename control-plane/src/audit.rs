//! The audit trail: who did what, stored in the control plane's own sled trees.
//!
//! * `store` — the event trees (time-ordered keys, an id index for de-duplication), group
//!   commit, queries with a time window, filter and cursor, retention by age and size.
//! * `key`, `cursor`, `filter` — the key layout, opaque page cursors, what a filter matches.
//! * `index` — the secondary index (client, subject, server, tool, outcome by hour).
//! * `service` — the `Audit` gRPC service: `Ship` from data planes, `List`/`Tail` for admins.
//! * `recorder` — the control plane's own events (changes, failed authentications), written
//!   off the caller's path through the same store.
//! * `change` — what a change event says about an object: its JSON with secrets `redacted`.
//! * `retention` — the background task that applies `--audit-retention` / `--audit-max-bytes`.
//!
//! Not here: the data plane's emitting and spooling (data-plane/), the CLI (`canopy audit`).

pub(crate) mod change;
mod cursor;
mod error;
mod filter;
mod index;
mod key;
pub(crate) mod recorder;
mod retention;
mod service;
mod store;

#[cfg(test)]
mod service_tests;
#[cfg(test)]
mod tests;

pub use error::AuditError;
pub use recorder::Recorder;
pub use retention::{parse_bytes, Retention, DEFAULT_MAX_BYTES, DEFAULT_RETENTION};
pub use service::{AuditService, MAX_BATCH_EVENTS};
pub use store::{Appended, AuditCounters, AuditStore, Page, Query};
