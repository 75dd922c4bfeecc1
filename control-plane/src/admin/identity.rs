//! Identity providers, access rules and revoked subjects (enterprise mode, admins only).
//!
//! Creating or updating a provider fetches its discovery document and keys first and
//! stores nothing unless that succeeds. Calls that narrow access (update/delete of a
//! provider or rule, revoking a subject) wait for every connected data plane to apply
//! them, like `delete mcp-client`.

mod providers;
mod revocations;
mod rules;

pub(super) use rules::matcher;

use super::AdminError;
use crate::identity::FetchError;
use tonic::Code;

/// The gRPC code of a failed fetch: unreachable is "try later", garbage is the provider's
/// (or the admin's) mistake.
pub(super) fn fetch_code(e: &FetchError) -> Code {
    match e {
        FetchError::Config(_) => Code::InvalidArgument,
        FetchError::Unreachable { .. } => Code::Unavailable,
        FetchError::Status { .. }
        | FetchError::Garbage { .. }
        | FetchError::NoDiscovery { .. }
        | FetchError::IssuerMismatch { .. } => Code::FailedPrecondition,
    }
}

/// A required, trimmed, non-empty text field.
fn required(what: &str, value: &str) -> Result<String, AdminError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(AdminError::InvalidArgument(format!(
            "{what} must not be empty"
        )));
    }
    Ok(v.to_owned())
}
