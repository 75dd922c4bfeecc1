//! The audit trail, data-plane side: one `McpRequestEvent` per MCP request answered,
//! handed to a bounded in-memory queue without waiting, shipped in batches to the control
//! plane's `Audit.Ship`, spooled to a local file while it cannot be reached.
//!
//! - `record.rs`: the per-request recorder the handler fills (principal, method, target,
//!   outcome); the event is built and queued in one place, when the response leaves.
//! - `trace.rs`: W3C trace context (`traceparent` header or `params._meta.traceparent`)
//!   and generated ids.
//! - `payload.rs`: what a server's `audit_payload` keeps of arguments and results.
//! - `queue.rs`: the handle the request path holds: try-send, drop counting, gaps,
//!   fail-closed state.
//! - `spool.rs`: the length-prefixed protobuf spool file.
//! - `shipper.rs`: the task that batches, ships, waits for acks and drains the spool.
//!
//! Does not: export OTLP (`telemetry/` does, reusing this recorder and its ids), or store
//! anything authoritative (the control plane does).

mod payload;
mod queue;
mod record;
mod shipper;
mod spool;
#[cfg(test)]
mod tests;
mod trace;

pub use queue::{Audit, AuditSettings, DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_QUEUE_CAPACITY};
pub(crate) use record::{Principal, Recorder, Refusal};
pub use shipper::{run as run_shipper, ShipperConfig};
pub use spool::{SpoolError, DEFAULT_SPOOL_MAX_BYTES};
