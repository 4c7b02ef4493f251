//! The application error: what went wrong, in the terms of the API's status codes.
//! Stores classify their failures into it; `services::error_status` maps it to gRPC, once.

use crate::domain::validation::{FieldViolation, Violations};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Every violated field of the request.
    #[error("invalid argument: {}", describe(.0))]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{kind} {id} not found")]
    NotFound { kind: &'static str, id: String },
    /// The resource is in the wrong state for the call.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller may not do this to this resource (its role may make the call).
    #[error("{0}")]
    PermissionDenied(String),
    /// A request id was reused with other content.
    #[error("{0}")]
    AlreadyExists(String),
    /// The database cannot be reached; retrying is safe.
    #[error("unavailable: {0}")]
    Unavailable(String),
    #[error("not implemented yet: {0}")]
    Unimplemented(&'static str),
    #[error("internal error: {0}")]
    Internal(String),
}

impl Error {
    pub fn not_found(kind: &'static str, id: impl ToString) -> Self {
        Self::NotFound {
            kind,
            id: id.to_string(),
        }
    }

    pub fn invalid_field(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation {
            field: field.into(),
            description: description.into(),
        }])
    }
}

impl From<Violations> for Error {
    fn from(violations: Violations) -> Self {
        Self::InvalidArgument(violations.into_vec())
    }
}

impl From<Vec<FieldViolation>> for Error {
    fn from(violations: Vec<FieldViolation>) -> Self {
        Self::InvalidArgument(violations)
    }
}

/// The violations as one line: `field: description; …`.
pub(crate) fn describe(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|v| format!("{}: {}", v.field, v.description))
        .collect::<Vec<_>>()
        .join("; ")
}
