//! Identity providers' keys: discovery (OpenID or RFC 8414), JWKS fetches over https
//! (plain http only on loopback), and keeping them fresh — on an interval and soon after a
//! data plane reports a `kid` it holds no key for.
//!
//! Keys are stored as ordinary revisioned changes (`store/identity.rs`), so data planes
//! get them on the Sync stream and never contact an identity provider themselves.
//!
//! Not here: the records (`store/identity.rs`), the admin calls (`admin/identity.rs`).

mod fetch;
mod keys;
mod policy;
#[cfg(test)]
mod test_server;

pub use fetch::{fetch, FetchError, Fetched};
pub use keys::{KeyMetrics, KeyStatus, Keys, DEFAULT_REFETCH_COOLDOWN};
pub use policy::{check_algorithms, check_url, DEFAULT_ALGORITHMS};
