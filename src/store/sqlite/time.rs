//! Times are stored as INTEGER microseconds since the Unix epoch: exact, and ordered.

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

pub fn to_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

pub fn from_micros(micros: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(micros)
        .ok_or_else(|| Error::Internal(format!("time {micros} µs out of range in storage")))
}

/// Now, at the precision stored, so what a call returns equals what a later read returns.
pub fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}
