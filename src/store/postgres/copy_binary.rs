//! Rows in PostgreSQL's binary COPY format, for `COPY … FROM STDIN (FORMAT binary)`:
//! what an import writes when none of its rows can conflict, cheaper for the database
//! than parsing the same rows from statement parameters.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01 UTC).
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// The version byte that starts a jsonb value in binary form.
const JSONB_VERSION: u8 = 1;

/// One COPY's data: the header, tuples, and the trailer `finish` adds.
pub(super) struct CopyRows {
    data: Vec<u8>,
}

impl CopyRows {
    pub(super) fn new() -> Self {
        let mut data = Vec::with_capacity(64 * 1024);
        data.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
        data.extend_from_slice(&0i32.to_be_bytes()); // flags: no OIDs
        data.extend_from_slice(&0i32.to_be_bytes()); // no header extension
        Self { data }
    }

    /// Starts a tuple of `fields` fields; each must then be written, in column order.
    pub(super) fn row(&mut self, fields: i16) -> &mut Self {
        self.data.extend_from_slice(&fields.to_be_bytes());
        self
    }

    fn field(&mut self, bytes: &[u8]) -> &mut Self {
        let length = i32::try_from(bytes.len()).expect("a field under 2 GiB");
        self.data.extend_from_slice(&length.to_be_bytes());
        self.data.extend_from_slice(bytes);
        self
    }

    pub(super) fn null(&mut self) -> &mut Self {
        self.data.extend_from_slice(&(-1i32).to_be_bytes());
        self
    }

    pub(super) fn uuid(&mut self, value: Uuid) -> &mut Self {
        self.field(value.as_bytes())
    }

    pub(super) fn uuid_or_null(&mut self, value: Option<Uuid>) -> &mut Self {
        match value {
            Some(value) => self.uuid(value),
            None => self.null(),
        }
    }

    pub(super) fn int2(&mut self, value: i16) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub(super) fn int2_or_null(&mut self, value: Option<i16>) -> &mut Self {
        match value {
            Some(value) => self.int2(value),
            None => self.null(),
        }
    }

    pub(super) fn int4(&mut self, value: i32) -> &mut Self {
        self.field(&value.to_be_bytes())
    }

    pub(super) fn int4_or_null(&mut self, value: Option<i32>) -> &mut Self {
        match value {
            Some(value) => self.int4(value),
            None => self.null(),
        }
    }

    pub(super) fn float8_or_null(&mut self, value: Option<f64>) -> &mut Self {
        match value {
            Some(value) => self.field(&value.to_be_bytes()),
            None => self.null(),
        }
    }

    pub(super) fn bool(&mut self, value: bool) -> &mut Self {
        self.field(&[u8::from(value)])
    }

    pub(super) fn text(&mut self, value: &str) -> &mut Self {
        self.field(value.as_bytes())
    }

    pub(super) fn text_or_null(&mut self, value: Option<&str>) -> &mut Self {
        match value {
            Some(value) => self.text(value),
            None => self.null(),
        }
    }

    pub(super) fn bytea_or_null(&mut self, value: Option<&[u8]>) -> &mut Self {
        match value {
            Some(value) => self.field(value),
            None => self.null(),
        }
    }

    /// A jsonb value from its JSON text.
    pub(super) fn jsonb(&mut self, json: &str) -> &mut Self {
        let length = i32::try_from(json.len() + 1).expect("a field under 2 GiB");
        self.data.extend_from_slice(&length.to_be_bytes());
        self.data.push(JSONB_VERSION);
        self.data.extend_from_slice(json.as_bytes());
        self
    }

    pub(super) fn timestamptz(&mut self, value: DateTime<Utc>) -> &mut Self {
        self.field(&(value.timestamp_micros() - POSTGRES_EPOCH_MICROS).to_be_bytes())
    }

    /// The data to send, with the trailer.
    pub(super) fn finish(mut self) -> Vec<u8> {
        self.data.extend_from_slice(&(-1i16).to_be_bytes());
        self.data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timestamp_counts_microseconds_from_the_postgres_epoch() {
        let epoch = DateTime::parse_from_rfc3339("2000-01-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut rows = CopyRows::new();
        rows.row(1)
            .timestamptz(epoch + chrono::Duration::microseconds(5));
        let data = rows.finish();
        let field = &data[data.len() - 2 - 8..data.len() - 2];
        assert_eq!(i64::from_be_bytes(field.try_into().unwrap()), 5);
    }
}
