//! The admin service's errors and THE one place they become `tonic::Status`.
//!
//! Messages are one line, name the entity, and never contain a token.

use crate::store::StoreError;
use canopy_mcp::upstream::UpstreamError;
use thiserror::Error;
use tonic::{Code, Status};

pub(crate) const NEEDS_ENTERPRISE: &str =
    "this command needs a server in enterprise mode (start it with --enterprise)";

#[derive(Debug, Error)]
pub enum AdminError {
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{NEEDS_ENTERPRISE}")]
    NeedsEnterprise,
    #[error("the server is not initialized yet; run `canopy init-server` first")]
    NotInitialized,
    #[error("the init token does not match the one the control plane was started with")]
    InitTokenMismatch,
    #[error("this control plane was started with an init token; pass it with `canopy init-server --init-token <token>`")]
    InitTokenRequired,
    #[error("{0}")]
    InvalidArgument(String),
    /// `canopy login --sso` is not possible as the control plane is set up.
    #[error("{0}")]
    SsoNotOffered(String),
    #[error("{kind} '{name}' not found")]
    NotFound { kind: &'static str, name: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{action} server '{server}' failed: {source}")]
    Upstream {
        action: &'static str,
        server: String,
        source: UpstreamError,
    },
    #[error("identity provider '{name}': {source}")]
    IdentityProvider {
        name: String,
        source: crate::identity::FetchError,
    },
    /// As `Upstream`, with what the admin probably meant.
    #[error("{action} server '{server}' failed: {source} ({hint})")]
    UpstreamHint {
        action: &'static str,
        server: String,
        source: Box<UpstreamError>,
        hint: &'static str,
    },
    #[error("server '{server}' answered the tool call with error {code}: {message}")]
    ToolCall {
        server: String,
        code: i64,
        message: String,
    },
}

impl AdminError {
    fn code(&self) -> Code {
        match self {
            AdminError::Unauthenticated(_) => Code::Unauthenticated,
            AdminError::PermissionDenied(_)
            | AdminError::InitTokenMismatch
            | AdminError::InitTokenRequired => Code::PermissionDenied,
            AdminError::NeedsEnterprise | AdminError::NotInitialized => Code::FailedPrecondition,
            AdminError::InvalidArgument(_) => Code::InvalidArgument,
            AdminError::SsoNotOffered(_) => Code::FailedPrecondition,
            AdminError::NotFound { .. } => Code::NotFound,
            AdminError::Store(e) => store_code(e),
            AdminError::Upstream { source, .. } => upstream_code(source),
            AdminError::UpstreamHint { source, .. } => upstream_code(source),
            AdminError::ToolCall { code, .. }
                if *code == canopy_mcp::jsonrpc::code::INVALID_PARAMS =>
            {
                Code::InvalidArgument
            }
            AdminError::ToolCall { .. } => Code::FailedPrecondition,
            AdminError::IdentityProvider { source, .. } => super::identity::fetch_code(source),
        }
    }
}

fn upstream_code(e: &UpstreamError) -> Code {
    match e {
        UpstreamError::Unreachable { .. } => Code::Unavailable,
        UpstreamError::Timeout { .. } => Code::DeadlineExceeded,
        UpstreamError::CallLimit { .. } => Code::ResourceExhausted,
        UpstreamError::Protocol { .. }
        | UpstreamError::HttpStatus { .. }
        | UpstreamError::Spawn { .. }
        | UpstreamError::Rpc { .. } => Code::FailedPrecondition,
        UpstreamError::Config { .. } | UpstreamError::InvalidParams { .. } => Code::InvalidArgument,
    }
}

fn store_code(e: &StoreError) -> Code {
    match e {
        StoreError::AlreadyExists { .. }
        | StoreError::AlreadyInitialized
        | StoreError::TokenInUse => Code::AlreadyExists,
        StoreError::NotFound { .. } => Code::NotFound,
        StoreError::LastAdmin(_) | StoreError::AdminScope(_) => Code::FailedPrecondition,
        StoreError::Superseded { .. } => Code::Aborted,
        StoreError::Closed => Code::Unavailable,
        _ => Code::Internal,
    }
}

impl From<AdminError> for Status {
    fn from(e: AdminError) -> Self {
        let code = e.code();
        if code == Code::Internal {
            tracing::error!(error = %e, "admin request failed");
        }
        Status::new(code, e.to_string())
    }
}
