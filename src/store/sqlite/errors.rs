//! Classifies sqlx errors from SQLite by result code into application errors.

use sqlx::error::ErrorKind;

use crate::error::Error;

/// SQLite primary result codes after which the same statement may succeed when retried.
const SQLITE_BUSY: &str = "5";
const SQLITE_LOCKED: &str = "6";
/// The extended code of `RAISE(ABORT, …)` in a trigger.
const SQLITE_CONSTRAINT_TRIGGER: &str = "1811";
/// How the migrations' own triggers begin their message when a write breaks a rule of
/// the schema (e.g. no review in a closed calibration). SQLite has no user-defined
/// result codes: this stands in for PostgreSQL's SQLSTATE IQ001, so that only the
/// schema's rules, and no other trigger, reach the caller as FAILED_PRECONDITION.
const RULE_BROKEN: &str = "IQ001: ";

/// Maps a database failure to what the caller may do about it: a locked or busy
/// database and pool trouble are `Unavailable` (retrying is safe), the rest `Internal`.
pub fn classify(err: sqlx::Error) -> Error {
    match &err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::WorkerCrashed => Error::Unavailable(err.to_string()),
        sqlx::Error::Database(db) => {
            if db.kind() == ErrorKind::UniqueViolation {
                return Error::AlreadyExists(db.message().to_owned());
            }
            if db.code().as_deref() == Some(SQLITE_CONSTRAINT_TRIGGER)
                && let Some(rule) = db.message().strip_prefix(RULE_BROKEN)
            {
                return Error::FailedPrecondition(rule.to_owned());
            }
            // Extended codes carry the primary code in their low byte.
            let primary = db
                .code()
                .and_then(|code| code.parse::<u32>().ok())
                .map(|code| (code & 0xff).to_string());
            match primary.as_deref() {
                Some(SQLITE_BUSY | SQLITE_LOCKED) => Error::Unavailable(db.message().to_owned()),
                Some(code) => Error::Internal(format!("database error {code}: {}", db.message())),
                None => Error::Internal(db.message().to_owned()),
            }
        }
        _ => Error::Internal(err.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeout_is_unavailable() {
        assert!(matches!(
            classify(sqlx::Error::PoolTimedOut),
            Error::Unavailable(_)
        ));
    }
}
