//! Collecting every violated field of a request at once, so a caller fixes them all in one go.

use uuid::Uuid;

const NUL_REFUSED: &str = "must not contain NUL characters";

/// One violated field: its path in the request (`rubric.draft.criteria[2].weight`) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: String,
    pub description: String,
}

/// The violations found so far while checking one request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn add(&mut self, field: impl Into<String>, description: impl Into<String>) {
        self.0.push(FieldViolation {
            field: field.into(),
            description: description.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn as_slice(&self) -> &[FieldViolation] {
        &self.0
    }

    pub fn into_vec(self) -> Vec<FieldViolation> {
        self.0
    }

    /// `Ok(value)` when nothing was violated, else every violation.
    pub fn finish<T>(self, value: T) -> Result<T, Violations> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }

    /// Checks a text's length in characters; `min` 1 makes it required. NUL characters
    /// are refused, as by `check_text`.
    pub fn check_length(&mut self, field: &str, value: &str, min: usize, max: usize) {
        let length = value.chars().count();
        if value.contains('\0') {
            self.add(field, NUL_REFUSED);
        } else if length < min {
            self.add(field, "is required");
        } else if length > max {
            self.add(
                field,
                format!("must be at most {max} characters, got {length}"),
            );
        }
    }

    /// `value` when nothing was violated; every violation otherwise. `value` is `None`
    /// only where a check recorded why (`require_uuid`, say).
    pub fn finish_with<T>(mut self, value: Option<T>) -> Result<T, Violations> {
        match (self.0.is_empty(), value) {
            (true, Some(value)) => Ok(value),
            (true, None) => {
                self.add("request", "is incomplete");
                Err(self)
            }
            (false, _) => Err(self),
        }
    }

    /// Refuses NUL characters, which no text column can store (PostgreSQL refuses them,
    /// and C clients of the data would cut the text there).
    pub fn check_text(&mut self, field: &str, value: &str) {
        if value.contains('\0') {
            self.add(field, NUL_REFUSED);
        }
    }

    /// Parses a required UUID field.
    pub fn require_uuid(&mut self, field: &str, value: &str) -> Option<Uuid> {
        if value.is_empty() {
            self.add(field, "is required");
            return None;
        }
        match Uuid::parse_str(value) {
            Ok(id) => Some(id),
            Err(_) => {
                self.add(field, "must be a UUID");
                None
            }
        }
    }

    /// Parses an optional UUID field: empty is `None`.
    pub fn optional_uuid(&mut self, field: &str, value: &str) -> Option<Uuid> {
        if value.is_empty() {
            None
        } else {
            self.require_uuid(field, value)
        }
    }

    /// Checks an AIP-155 request id: empty (no idempotency), or 1..=128 printable ASCII
    /// characters without spaces (a UUID is recommended).
    pub fn check_request_id(&mut self, field: &str, value: &str) {
        if value.len() > 128 {
            self.add(field, "must be at most 128 characters");
        } else if !value.bytes().all(|b| b.is_ascii_graphic()) {
            self.add(
                field,
                "must be printable ASCII without spaces (a UUID is recommended)",
            );
        }
    }
}

/// Cuts `text` to at most `max_bytes` bytes on a character boundary, marking the cut
/// with an ellipsis: for text echoed back to callers, whose size must stay bounded.
pub fn cut_to_bytes(text: &mut String, max_bytes: usize) {
    const MARK: &str = "…";
    if text.len() <= max_bytes {
        return;
    }
    let mut end = max_bytes.saturating_sub(MARK.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str(MARK);
}

/// A required UUID field alone: the id, or the violation that names the field.
pub fn required_uuid(field: &str, value: &str) -> Result<Uuid, Violations> {
    let mut violations = Violations::new();
    let id = violations.require_uuid(field, value);
    violations.finish_with(id)
}

/// `[a-z][a-z0-9_]{0,max_len-1}`: the form of criterion keys and other stable identifiers.
pub fn is_slug(value: &str, max_len: usize) -> bool {
    let bytes = value.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= max_len
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slug_accepts_lowercase_digits_and_underscores_after_a_letter() {
        assert!(is_slug("a", 63));
        assert!(is_slug("verify_identity_2", 63));
        assert!(is_slug(&"a".repeat(63), 63));
    }

    #[test]
    fn slug_rejects_empty_uppercase_leading_digit_dash_and_overlong() {
        for bad in ["", "Greeting", "2fa", "first-contact", "tone ", "é"] {
            assert!(!is_slug(bad, 63), "{bad:?}");
        }
        assert!(!is_slug(&"a".repeat(64), 63));
    }

    #[test]
    fn finish_returns_every_violation() {
        let mut violations = Violations::new();
        violations.add("a", "x");
        violations.add("b", "y");
        let fields: Vec<_> = violations
            .finish(())
            .unwrap_err()
            .into_vec()
            .into_iter()
            .map(|v| v.field)
            .collect();
        assert_eq!(fields, ["a", "b"]);
    }

    #[test]
    fn check_length_counts_characters_not_bytes() {
        let mut violations = Violations::new();
        violations.check_length("name", "ééé", 1, 3);
        assert!(violations.is_empty());
        violations.check_length("name", "éééé", 1, 3);
        violations.check_length("other", "", 1, 3);
        assert_eq!(violations.as_slice().len(), 2);
        assert_eq!(violations.as_slice()[1].description, "is required");
    }

    #[test]
    fn text_is_cut_to_its_byte_limit_on_a_character_boundary() {
        let mut text = "ü".repeat(100);
        cut_to_bytes(&mut text, 51);
        assert!(text.len() <= 51 && text.ends_with('…'), "{text}");
        let mut short = "kept".to_owned();
        cut_to_bytes(&mut short, 4);
        assert_eq!(short, "kept");
    }

    #[test]
    fn a_required_uuid_is_parsed_or_its_field_named() {
        let id = "0192e4a0-7b1a-7c3e-9f00-000000000001";
        assert_eq!(required_uuid("id", id).unwrap().to_string(), id);
        for bad in ["", "nope"] {
            let violations = required_uuid("rubric_id", bad).unwrap_err().into_vec();
            assert_eq!(violations.len(), 1);
            assert_eq!(violations[0].field, "rubric_id");
        }
    }

    #[test]
    fn finish_with_returns_the_value_only_when_nothing_was_violated() {
        assert_eq!(Violations::new().finish_with(Some(3)), Ok(3));
        let mut violations = Violations::new();
        violations.add("a", "x");
        assert_eq!(
            violations
                .finish_with(Some(3))
                .unwrap_err()
                .as_slice()
                .len(),
            1
        );
        assert!(Violations::new().finish_with::<u8>(None).is_err());
    }

    #[test]
    fn nul_characters_are_refused_in_any_text() {
        let mut violations = Violations::new();
        violations.check_length("comment", "a\0b", 0, 100);
        violations.check_text("text", "\0");
        violations.check_text("fine", "no nul here");
        let fields: Vec<_> = violations.as_slice().iter().map(|v| &v.field).collect();
        assert_eq!(fields, ["comment", "text"]);
        assert!(violations.as_slice()[0].description.contains("NUL"));
    }

    #[test]
    fn request_id_allows_empty_and_uuid_but_not_spaces_or_overlong() {
        let mut violations = Violations::new();
        violations.check_request_id("request_id", "");
        violations.check_request_id("request_id", "0192e4a0-7b1a-7c3e-9f00-000000000001");
        assert!(violations.is_empty());
        violations.check_request_id("request_id", "has space");
        violations.check_request_id("request_id", &"x".repeat(129));
        assert_eq!(violations.as_slice().len(), 2);
    }
}
