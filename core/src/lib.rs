//! Domain rules every Canopy program agrees on: what a valid name is, how an allow list
//! is read and evaluated, how tokens are generated, validated and hashed, and how a
//! tool of an upstream is named to clients (`server__tool`), and how secrets are sealed at
//! rest.
//!
//! No I/O and no async here: the control plane, data plane and CLI all depend on it.

pub mod access;
pub mod bearer;
pub mod error_chain;
pub mod name;
pub mod scope;
pub mod sealed;
pub mod token;

pub use error_chain::error_chain;
pub use name::{qualify, split_qualified, NameError};
pub use scope::{AllowEntry, AllowList, ScopeError};
pub use sealed::{SealError, SealingKey};
pub use token::{TokenError, TokenHash, TokenHasher, TokenKind};
