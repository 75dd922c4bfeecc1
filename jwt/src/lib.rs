//! Verifying an identity provider's JWT access token from memory, against a key set the
//! caller holds (parsed once from the provider's JWKS). Shared by the data planes (tokens
//! of MCP clients) and the control plane (the Admin API's `canopy login --sso` tokens) so
//! both apply the same rules:
//!
//! - only asymmetric algorithms the provider allows ([`ASYMMETRIC`]): never `none` (which
//!   does not even parse as a header), never HMAC (a provider's keys are public, and an HMAC
//!   keyed with one is the classic algorithm-confusion forgery);
//! - the key named by `kid` (or, without one, each key of the algorithm's family), and only
//!   if it fits the algorithm;
//! - `iss` exactly, `aud` naming one of the caller's audiences, `exp` and `nbf` with the
//!   provider's leeway;
//! - access tokens only: an ID token (or another type of JWT) is refused.
//!
//! What the callers add on top stays with them: which provider a token belongs to, the
//! audiences they accept, subjects, revocations and scopes (data plane), roles (control
//! plane). Nothing here logs or returns a token.
//!
//! Not a module of `canopy-core`: this pulls in `jsonwebtoken` and its aws-lc-rs backend,
//! and core, linked by every crate of the workspace, keeps a small dependency set.

mod keys;
mod verify;

pub use keys::{alg_name, algorithm, parse_jwks, JwksError, Key, ASYMMETRIC};
pub use verify::{decode_header, unverified_issuer, verify, Refusal, Rules};

/// Re-exported so callers name the same types.
pub use jsonwebtoken::{Algorithm, Header};
