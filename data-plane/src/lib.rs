//! canopy-data-plane: the part of Canopy that AI clients talk to.
//!
//! Does: serve MCP at `POST /mcp` (both protocol eras, stateless) and
//! `POST /servers/<name>/mcp`; authorize every request from memory; keep that memory in
//! sync with the control plane over one gRPC stream (and a local cache file); forward
//! calls to upstream servers through `canopy-mcp`; expose `/healthz`, `/readyz`,
//! `/metrics`; record an audit event per MCP request and ship it to the control plane
//! (spooled locally while it is unreachable, `audit/`); export OpenTelemetry traces over
//! OTLP (`telemetry/`).
//!
//! Does not: store anything authoritative (the control plane does), issue sessions,
//! serve resources, or discover upstream catalogues (the control plane does).

pub mod app;
pub mod audit;
pub mod cache;
pub mod http;
pub mod identity;
mod json;
pub mod listen;
pub mod metrics;
mod serve;
pub mod state;
pub mod status;
pub mod sync;
pub mod telemetry;
pub mod tls;

pub use app::{DataPlane, HttpSettings};
pub use http::router;
pub use serve::{serve, AuditOptions, DataPlaneConfig, DataPlaneError, OtlpOptions, DRAIN_TIMEOUT};
