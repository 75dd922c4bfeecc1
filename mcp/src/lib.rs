//! MCP on the wire, as Canopy needs it.
//!
//! * [`jsonrpc`]: the JSON-RPC 2.0 envelope. Only the envelope is parsed; `params`,
//!   `result` and `error.data` stay raw JSON so nothing an upstream or client sends is
//!   lost or reshaped.
//! * [`protocol`]: protocol versions, header names, error codes of both eras.
//! * [`upstream`]: the client for registered upstream servers (streamable HTTP of both
//!   eras, legacy HTTP+SSE, stdio child processes), used by the control plane to discover
//!   tools and prompts and by the data plane to call them.
//!
//! Not here: serving MCP (the data plane does that) and access control (canopy-core).

pub mod jsonrpc;
pub mod protocol;
pub mod upstream;
