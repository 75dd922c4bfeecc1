//! `canopy-fixture-server` as a library: the serving plumbing shared by Canopy's rmcp-based test
//! upstreams (this crate's binary and `canopy-conformance-server`). Each binary keeps its own
//! handler and arguments; this module parses the common transport flags and serves a handler over
//! stdio or streamable HTTP.
//!
//! Not a product, and not a general MCP server framework.

pub mod serve;
