//! Opaque page tokens (AIP-158) for keyset pagination.
//!
//! A token holds the sort key of the last row returned, so rows inserted between two
//! calls neither repeat nor vanish, plus a fingerprint of the request's filters, so a
//! token is refused when the filters change under it.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};

use super::validation::Violations;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

const TOKEN_VERSION: &str = "p1";

/// The page size to use for a requested one: 0 means the default, larger than the
/// maximum is coerced to it, negative is an error.
pub fn page_size(requested: i32) -> Result<u32, &'static str> {
    match requested {
        0 => Ok(DEFAULT_PAGE_SIZE),
        n if n < 0 => Err("must not be negative"),
        n => Ok((n as u32).min(MAX_PAGE_SIZE)),
    }
}

/// A fingerprint of the filters a listing was made with.
pub fn filter_fingerprint(filters: &str) -> String {
    let digest = Sha256::digest(filters.as_bytes());
    digest[..8].iter().map(|b| format!("{b:02x}")).collect()
}

pub fn encode_token(fingerprint: &str, last_key: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{TOKEN_VERSION}|{fingerprint}|{last_key}"))
}

/// The sort key stored in `token`, `None` for the first page.
pub fn decode_token(token: &str, fingerprint: &str) -> Result<Option<String>, &'static str> {
    if token.is_empty() {
        return Ok(None);
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| "is not a page token returned by this API")?;
    let text = String::from_utf8(bytes).map_err(|_| "is not a page token returned by this API")?;
    let mut parts = text.splitn(3, '|');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(TOKEN_VERSION), Some(token_fingerprint), Some(key)) => {
            if token_fingerprint == fingerprint {
                Ok(Some(key.to_owned()))
            } else {
                Err("was issued for a request with other filters")
            }
        }
        _ => Err("is not a page token returned by this API"),
    }
}

/// The key of a page token, parsed by `parse`; a token that is not one of ours, or was
/// issued for other filters, is a violation of `field`.
pub fn read_token<K>(
    token: &str,
    fingerprint: &str,
    field: &str,
    parse: impl FnOnce(&str) -> Option<K>,
    violations: &mut Violations,
) -> Option<K> {
    match decode_token(token, fingerprint) {
        Ok(None) => None,
        Ok(Some(key)) => {
            let parsed = parse(&key);
            if parsed.is_none() {
                violations.add(field, "is not a page token returned by this API");
            }
            parsed
        }
        Err(reason) => {
            violations.add(field, reason);
            None
        }
    }
}

/// Cuts rows fetched with `limit + 1` down to `limit`, with the token of the last row
/// kept when more remain (empty otherwise).
pub fn finish_page<T>(
    mut rows: Vec<T>,
    limit: u32,
    fingerprint: &str,
    key: impl Fn(&T) -> String,
) -> (Vec<T>, String) {
    if rows.len() <= limit as usize {
        return (rows, String::new());
    }
    rows.truncate(limit as usize);
    let token = rows
        .last()
        .map(|last| encode_token(fingerprint, &key(last)))
        .unwrap_or_default();
    (rows, token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_size_defaults_coerces_and_refuses_negative() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(7), Ok(7));
        assert_eq!(page_size(5000), Ok(MAX_PAGE_SIZE));
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn token_round_trips_its_key() {
        let fingerprint = filter_fingerprint("include_archived=true");
        let token = encode_token(&fingerprint, "0192e4a0-7b1a-7c3e-9f00-000000000001");
        assert_eq!(
            decode_token(&token, &fingerprint).unwrap().as_deref(),
            Some("0192e4a0-7b1a-7c3e-9f00-000000000001")
        );
        assert_eq!(decode_token("", &fingerprint), Ok(None));
    }

    #[test]
    fn a_full_page_carries_the_token_of_its_last_row() {
        let (rows, token) = finish_page(vec![1, 2, 3], 2, "f", |n| n.to_string());
        assert_eq!(rows, [1, 2]);
        let mut violations = Violations::new();
        let key = read_token(
            &token,
            "f",
            "page_token",
            |k| k.parse::<i32>().ok(),
            &mut violations,
        );
        assert_eq!(key, Some(2));
        let (rows, token) = finish_page(vec![1, 2], 2, "f", |n| n.to_string());
        assert_eq!((rows.len(), token.as_str()), (2, ""));
    }

    #[test]
    fn an_unparsable_key_is_a_violation_of_the_field() {
        let mut violations = Violations::new();
        let token = encode_token("f", "not a number");
        assert_eq!(
            read_token(
                &token,
                "f",
                "cursor",
                |k| k.parse::<i32>().ok(),
                &mut violations
            ),
            None
        );
        assert_eq!(violations.as_slice()[0].field, "cursor");
    }

    #[test]
    fn token_is_refused_with_other_filters_or_when_forged() {
        let token = encode_token(&filter_fingerprint("a"), "k");
        assert!(decode_token(&token, &filter_fingerprint("b")).is_err());
        assert!(decode_token("not base64 !", &filter_fingerprint("a")).is_err());
        assert!(decode_token(&URL_SAFE_NO_PAD.encode("x|y"), &filter_fingerprint("a")).is_err());
    }
}
