//! The one mapping from application errors to gRPC statuses (the table in the API docs).

use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

use crate::domain::validation::{FieldViolation, Violations, cut_to_bytes};
use crate::error::Error;
use crate::error::describe;

/// Violations listed in one answer; the rest are counted. Clients read error details
/// from HTTP/2 headers, which most stacks cap at 8 to 16 KB.
pub const MAX_LISTED_VIOLATIONS: usize = 100;
/// The bytes kept of a violation's field path and of its description.
const MAX_FIELD_BYTES: usize = 120;
const MAX_DESCRIPTION_BYTES: usize = 200;
/// What the listed violations may take in the message, and again in the details. On the
/// wire the message is percent-encoded (up to 3 bytes per byte) and the details base64
/// (4 per 3): at most about 9 KB in all.
const MAX_VIOLATION_BYTES: usize = 2_000;

/// The violations an answer lists (shortened, within the byte budget) and how many
/// were left out.
fn listed(violations: Vec<FieldViolation>) -> (Vec<FieldViolation>, usize) {
    let total = violations.len();
    let mut bytes = 0;
    let mut kept = Vec::new();
    for violation in violations.into_iter().take(MAX_LISTED_VIOLATIONS) {
        let FieldViolation {
            mut field,
            mut description,
        } = violation;
        cut_to_bytes(&mut field, MAX_FIELD_BYTES);
        cut_to_bytes(&mut description, MAX_DESCRIPTION_BYTES);
        let violation = FieldViolation { field, description };
        bytes += violation.field.len() + violation.description.len() + 4;
        if bytes > MAX_VIOLATION_BYTES {
            break;
        }
        kept.push(violation);
    }
    let left_out = total - kept.len();
    (kept, left_out)
}

impl From<Error> for Status {
    fn from(error: Error) -> Self {
        match error {
            Error::InvalidArgument(violations) => {
                let (violations, left_out) = listed(violations);
                // The code already says "invalid argument": the message lists what is.
                let mut message = describe(&violations);
                if left_out > 0 {
                    message.push_str(&format!(" (and {left_out} more violations not listed)"));
                }
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

impl From<Violations> for Status {
    fn from(violations: Violations) -> Self {
        Error::from(violations).into()
    }
}

/// What another IQS service answered, as this service's error: the reverse of the
/// mapping above, for the codes a caller can act on. `not_found` names what is missing.
pub fn from_remote(service: &str, status: &Status, not_found: impl FnOnce() -> Error) -> Error {
    match status.code() {
        Code::NotFound => not_found(),
        Code::FailedPrecondition => Error::FailedPrecondition(status.message().to_owned()),
        Code::PermissionDenied => Error::PermissionDenied(status.message().to_owned()),
        Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted => {
            Error::Unavailable(format!("{service}: {}", status.message()))
        }
        _ => Error::Internal(format!("{service} answered {status}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn a_flood_of_violations_is_listed_up_to_a_hundred_and_counted_within_16_kb() {
        let violations = (0..100_000)
            .map(|index| FieldViolation {
                field: format!("ratings[{index}].{}", "x".repeat(500)),
                description: "d".repeat(5_000),
            })
            .collect();
        let status: Status = Error::InvalidArgument(violations).into();
        let listed = status
            .get_details_bad_request()
            .expect("BadRequest details")
            .field_violations
            .len();
        assert!((1..=MAX_LISTED_VIOLATIONS).contains(&listed), "{listed}");
        assert!(
            status.message().ends_with(&format!(
                "(and {} more violations not listed)",
                100_000 - listed
            )),
            "{}",
            &status.message()[status.message().len() - 80..]
        );
        let on_the_wire = status.message().len() * 3 + status.details().len() * 4 / 3;
        assert!(on_the_wire < 16 * 1024, "{on_the_wire} bytes");
    }

    #[test]
    fn a_remote_status_maps_back_to_the_error_that_would_answer_it() {
        let missing = || Error::not_found("rubric version", "x@1");
        for code in [
            Code::NotFound,
            Code::FailedPrecondition,
            Code::PermissionDenied,
            Code::Unavailable,
            Code::Internal,
        ] {
            let error = from_remote("rubric service", &Status::new(code, "m"), missing);
            assert_eq!(Status::from(error).code(), code);
        }
        let late = from_remote("rubric service", &Status::deadline_exceeded("m"), missing);
        assert_eq!(Status::from(late).code(), Code::Unavailable);
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
