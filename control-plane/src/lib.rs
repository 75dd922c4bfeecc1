//! Canopy control plane: owns users, MCP clients, tokens and registered upstream servers
//! (sled store), serves the `Admin` gRPC API to the CLI and streams every change to data
//! planes over the `Sync` API.
//!
//! Entry point: [`serve`] with a [`ControlPlaneConfig`] and a bound listener; the
//! `canopy-control-plane` binary and `canopy start` both call it.
//!
//! Not here: the data plane's HTTP surface, the CLI.

/// The `Admin` gRPC service (CLI-facing).
pub mod admin;
/// The audit trail: events from data planes and the control plane, stored and queried.
pub mod audit;
mod clock;
mod config;
/// The data-plane token: given, or generated into the data dir.
pub mod data_plane_token;
/// Data planes known to this control plane and the revisions they acknowledged.
pub mod fleet;
/// Identity providers' discovery and keys, kept fresh.
pub mod identity;
/// The gRPC listener: connection cap, first-byte timeout, accept errors.
pub mod listener;
/// Prometheus metrics on their own listener (`--metrics-listen`).
pub mod metrics;
/// Periodic re-discovery of every registered server's tools and prompts.
mod refresh;
mod server;
/// The durable state: sled trees, revisions, change log, group commit.
pub mod store;
/// The `Sync` gRPC service: snapshot/backlog/live changes to data planes.
pub mod sync;
/// TLS for the gRPC listener: loading and checking `--tls-cert` / `--tls-key`.
pub mod tls;

pub use config::{ControlPlaneConfig, DEFAULT_CHANGELOG_MAX_AGE, DEFAULT_REFRESH_INTERVAL};
pub use server::{open, serve, ControlPlaneError, Opened};
