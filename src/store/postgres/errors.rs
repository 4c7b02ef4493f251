//! Classifies sqlx errors by SQLSTATE (never by message text) into application errors.

use crate::error::Error;

/// The SQLSTATE the migrations' triggers raise when a write breaks a rule of the schema.
const RULE_BROKEN: &str = "IQ001";

/// Maps a database failure to what the caller may do about it: connection trouble and
/// transient conflicts are `Unavailable` (retrying is safe), the rest `Internal`.
pub fn classify(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => Error::Unavailable(err.to_string()),
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some(code) if is_transient(code) => Error::Unavailable(db.message().to_owned()),
            Some("23505") => Error::AlreadyExists(db.message().to_owned()),
            // Raised by the schema's own rules (e.g. no review in a closed calibration).
            Some(RULE_BROKEN) => Error::FailedPrecondition(db.message().to_owned()),
            Some(code) => Error::Internal(format!("database error {code}: {}", db.message())),
            None => Error::Internal(db.message().to_owned()),
        },
        _ => Error::Internal(err.to_string()),
    }
}

/// SQLSTATEs after which the same statement may succeed when retried.
fn is_transient(code: &str) -> bool {
    // 08: connection exception; 40001 serialization failure; 40P01 deadlock;
    // 53: insufficient resources; 57P01..57P03: shutdown or cannot connect now.
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(code, "40001" | "40P01" | "57P01" | "57P02" | "57P03")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_serialization_and_shutdown_codes_are_transient() {
        for code in ["08006", "08001", "40001", "40P01", "53300", "57P01"] {
            assert!(is_transient(code), "{code}");
        }
        for code in ["23505", "42P01", "22P02"] {
            assert!(!is_transient(code), "{code}");
        }
    }

    #[test]
    fn pool_timeout_is_unavailable() {
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            Error::Unavailable(_)
        ));
    }
}
