//! The audit trail's errors and the one place they become `tonic::Status`.

use thiserror::Error;
use tonic::{Code, Status};

#[derive(Debug, Error)]
pub enum AuditError {
    #[error("audit store: {0}")]
    Sled(#[from] sled::Error),
    #[error("audit store: stored event {0} does not decode")]
    Decode(String),
    #[error("audit store: {0}; the events were not acknowledged")]
    Write(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error(
        "the cursor is not one this control plane gave out (start the listing again without it)"
    )]
    Cursor,
    #[error("the batch holds {got} events; at most {max} per batch")]
    BatchTooLarge { got: usize, max: usize },
    #[error("{0}")]
    Unauthenticated(&'static str),
    #[error("the audit store is closed")]
    Closed,
}

impl From<AuditError> for Status {
    fn from(e: AuditError) -> Self {
        let code = match &e {
            AuditError::InvalidArgument(_) | AuditError::Cursor => Code::InvalidArgument,
            AuditError::BatchTooLarge { .. } => Code::ResourceExhausted,
            AuditError::Unauthenticated(_) => Code::Unauthenticated,
            AuditError::Closed => Code::Unavailable,
            AuditError::Sled(_) | AuditError::Decode(_) | AuditError::Write(_) => {
                tracing::error!(error = %e, "audit request failed");
                Code::Internal
            }
        };
        Status::new(code, e.to_string())
    }
}
