//! The one mapping from application errors to gRPC statuses (the table in the API docs).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::error::Error;

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => {
                let message = Error::InvalidArgument(violations.clone()).to_string();
                let mut details = ErrorDetails::new();
                for violation in violations {
                    details.add_bad_request_violation(violation.field, violation.description);
                }
                Status::with_error_details(Code::InvalidArgument, message, details)
            }
            Error::NotFound { .. } => Status::not_found(error.to_string()),
            Error::FailedPrecondition(message) => Status::failed_precondition(message),
            Error::PermissionDenied(message) => Status::permission_denied(message),
            Error::AlreadyExists(message) => Status::already_exists(message),
            Error::Unavailable(message) => {
                tracing::warn!(%message, "storage unavailable");
                Status::unavailable("storage is unavailable; retrying is safe")
            }
            Error::Unimplemented(what) => {
                Status::unimplemented(format!("{what} is not implemented yet"))
            }
            Error::Internal(message) => {
                tracing::error!(%message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::validation::FieldViolation;

    #[test]
    fn invalid_argument_carries_every_violation_as_bad_request() {
        let status: Status = Error::InvalidArgument(vec![
            FieldViolation {
                field: "a".into(),
                description: "x".into(),
            },
            FieldViolation {
                field: "b".into(),
                description: "y".into(),
            },
        ])
        .into();
        assert_eq!(status.code(), Code::InvalidArgument);
        let bad_request = status
            .get_details_bad_request()
            .expect("BadRequest details");
        let fields: Vec<_> = bad_request
            .field_violations
            .iter()
            .map(|v| v.field.as_str())
            .collect();
        assert_eq!(fields, ["a", "b"]);
    }

    #[test]
    fn each_error_maps_to_its_code() {
        let cases = [
            (Error::not_found("rubric", "x"), Code::NotFound),
            (
                Error::FailedPrecondition("s".into()),
                Code::FailedPrecondition,
            ),
            (Error::AlreadyExists("s".into()), Code::AlreadyExists),
            (Error::PermissionDenied("s".into()), Code::PermissionDenied),
            (Error::Unavailable("s".into()), Code::Unavailable),
            (Error::Unimplemented("X"), Code::Unimplemented),
            (Error::Internal("s".into()), Code::Internal),
        ];
        for (error, code) in cases {
            assert_eq!(Status::from(error).code(), code);
        }
    }

    #[test]
    fn internal_and_unavailable_details_do_not_leak_to_callers() {
        let status = Status::from(Error::Internal("password=secret".into()));
        assert!(!status.message().contains("secret"));
        let status = Status::from(Error::Unavailable("host db-7 refused".into()));
        assert!(!status.message().contains("db-7"));
    }
}
