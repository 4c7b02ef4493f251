//! Conversions between protobuf messages and domain types. Incoming conversions record
//! every malformed field in `Violations` instead of stopping at the first.

mod evaluation;
mod rubric;

use chrono::{DateTime, Utc};

use crate::domain::validation::Violations;

pub use evaluation::*;
pub use rubric::*;

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// A protobuf timestamp as UTC time; out-of-range values are a violation of `field`.
pub fn from_timestamp(
    value: Option<prost_types::Timestamp>,
    field: &str,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    let value = value?;
    let nanos = u32::try_from(value.nanos).ok();
    match nanos.and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos)) {
        Some(time) => Some(time),
        None => {
            violations.add(field, "is not a valid timestamp");
            None
        }
    }
}
