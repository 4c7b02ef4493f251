//! Conversions between protobuf messages and domain types. Incoming conversions record
//! every malformed field in `Violations` instead of stopping at the first.

mod assignment;
mod calibration;
mod coaching;
mod dispute;
mod evaluation;
mod rubric;

use chrono::{DateTime, Utc};

use crate::domain::validation::Violations;

pub use assignment::*;
pub use calibration::*;
pub use coaching::*;
pub use dispute::*;
pub use evaluation::*;
pub use rubric::*;

pub fn timestamp(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: time.timestamp_subsec_nanos() as i32,
    }
}

/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z: the range of a protobuf Timestamp.
const MIN_TIMESTAMP_SECONDS: i64 = -62_135_596_800;
const MAX_TIMESTAMP_SECONDS: i64 = 253_402_300_799;

/// A protobuf timestamp as UTC time; values outside the Timestamp range
/// (0001-01-01..9999-12-31) are a violation of `field`.
pub fn from_timestamp(
    value: Option<prost_types::Timestamp>,
    field: &str,
    violations: &mut Violations,
) -> Option<DateTime<Utc>> {
    let value = value?;
    let nanos = u32::try_from(value.nanos)
        .ok()
        .filter(|nanos| *nanos < 1_000_000_000);
    let time = nanos
        .filter(|_| (MIN_TIMESTAMP_SECONDS..=MAX_TIMESTAMP_SECONDS).contains(&value.seconds))
        .and_then(|nanos| DateTime::from_timestamp(value.seconds, nanos));
    if time.is_none() {
        violations.add(
            field,
            "must be a valid timestamp between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z",
        );
    }
    time
}

/// A half-open time range: both bounds optional, the end not before the start.
pub fn time_range_from_proto(
    range: Option<crate::proto::common::TimeRange>,
    violations: &mut Violations,
) -> (Option<DateTime<Utc>>, Option<DateTime<Utc>>) {
    let range = range.unwrap_or_default();
    let start = from_timestamp(range.start_time, "time_range.start_time", violations);
    let end = from_timestamp(range.end_time, "time_range.end_time", violations);
    if let (Some(start), Some(end)) = (start, end)
        && start > end
    {
        violations.add("time_range.end_time", "must not be before start_time");
    }
    (start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64, nanos: i32) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos })
    }

    #[test]
    fn timestamps_outside_years_1_to_9999_are_refused() {
        let mut violations = Violations::new();
        for (index, (seconds, nanos)) in [
            (MIN_TIMESTAMP_SECONDS - 1, 0),
            (MAX_TIMESTAMP_SECONDS + 1, 0),
            (-377_705_116_800, 0),  // year -10000
            (6_249_223_209_600, 0), // year 200000
            (0, -1),
            (0, 1_000_000_000),
        ]
        .into_iter()
        .enumerate()
        {
            assert_eq!(
                from_timestamp(at(seconds, nanos), &format!("t{index}"), &mut violations),
                None
            );
        }
        assert_eq!(violations.as_slice().len(), 6);
    }

    #[test]
    fn the_first_and_last_instants_of_the_timestamp_range_are_accepted() {
        let mut violations = Violations::new();
        assert!(from_timestamp(at(MIN_TIMESTAMP_SECONDS, 0), "t", &mut violations).is_some());
        assert!(
            from_timestamp(at(MAX_TIMESTAMP_SECONDS, 999_999_999), "t", &mut violations).is_some()
        );
        assert!(violations.is_empty());
    }
}
