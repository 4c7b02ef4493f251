//! Opaque page tokens (AIP-158) for keyset pagination.
//!
//! A token holds the sort key of the last row returned, so rows inserted between two
//! calls neither repeat nor vanish, plus a fingerprint of the request's filters, so a
//! token is refused when the filters change under it. The key is visible to whoever holds
//! the token, so it is signed: an HMAC-SHA256 under a per-deployment secret over the
//! tenant and the payload makes an edited, forged or truncated token, and a token of
//! another tenant, fail as "not ours" before its key is read.

use std::fmt;

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::tenant::TenantId;
use super::validation::Violations;

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;

/// The shortest secret page tokens are signed with: HMAC-SHA256's full strength.
pub const MIN_SECRET_LEN: usize = 32;

// `p1` tokens were unsigned; they no longer verify and are refused as not ours.
const TOKEN_VERSION: &str = "p2";

const NOT_OURS: &str = "is not a page token returned by this API";

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

/// Makes and reads the page tokens of one deployment: every replica must hold the same
/// secret, or a token from one is refused by another.
#[derive(Clone)]
pub struct PageTokens {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for PageTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PageTokens { .. }")
    }
}

impl PageTokens {
    /// Tokens signed with `secret`; `None` when it is shorter than [`MIN_SECRET_LEN`].
    pub fn new(secret: &[u8]) -> Option<Self> {
        if secret.len() < MIN_SECRET_LEN {
            return None;
        }
        let mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
        Some(Self { mac })
    }

    /// The tenant is signed but not carried: it comes from the caller's credential, so a
    /// token replayed under another tenant's key fails to verify.
    fn mac_of(&self, tenant: TenantId, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        mac.update(tenant.as_uuid().as_bytes());
        mac.update(payload);
        mac
    }

    pub fn encode(&self, tenant: TenantId, fingerprint: &str, last_key: &str) -> String {
        let payload = format!("{TOKEN_VERSION}|{fingerprint}|{last_key}");
        let tag = self
            .mac_of(tenant, payload.as_bytes())
            .finalize()
            .into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(tag)
        )
    }

    /// The sort key stored in `token`, `None` for the first page.
    pub fn decode(
        &self,
        tenant: TenantId,
        token: &str,
        fingerprint: &str,
    ) -> Result<Option<String>, &'static str> {
        if token.is_empty() {
            return Ok(None);
        }
        let (payload, tag) = token.split_once('.').ok_or(NOT_OURS)?;
        let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| NOT_OURS)?;
        let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| NOT_OURS)?;
        // Constant time, so the tag cannot be guessed byte by byte from response times.
        self.mac_of(tenant, &payload)
            .verify_slice(&tag)
            .map_err(|_| NOT_OURS)?;
        let text = String::from_utf8(payload).map_err(|_| NOT_OURS)?;
        let mut parts = text.splitn(3, '|');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(TOKEN_VERSION), Some(token_fingerprint), Some(key)) => {
                if token_fingerprint == fingerprint {
                    Ok(Some(key.to_owned()))
                } else {
                    Err("was issued for a request with other filters")
                }
            }
            _ => Err(NOT_OURS),
        }
    }

    /// The key of a page token, parsed by `parse`; a token that is not one of ours (or
    /// not this tenant's), or was issued for other filters, is a violation of `field`.
    pub fn read<K>(
        &self,
        tenant: TenantId,
        token: &str,
        fingerprint: &str,
        field: &str,
        parse: impl FnOnce(&str) -> Option<K>,
        violations: &mut Violations,
    ) -> Option<K> {
        match self.decode(tenant, token, fingerprint) {
            Ok(None) => None,
            Ok(Some(key)) => {
                let parsed = parse(&key);
                if parsed.is_none() {
                    violations.add(field, NOT_OURS);
                }
                parsed
            }
            Err(reason) => {
                violations.add(field, reason);
                None
            }
        }
    }

    /// The page size and the id to continue from, of a listing keyed by UUID: a bad
    /// `page_size` or `page_token` is a violation of that field.
    pub fn id_page(
        &self,
        tenant: TenantId,
        requested_size: i32,
        token: &str,
        fingerprint: &str,
        violations: &mut Violations,
    ) -> (u32, Option<uuid::Uuid>) {
        let limit = page_size(requested_size).unwrap_or_else(|reason| {
            violations.add("page_size", reason);
            0
        });
        let from = self.read(
            tenant,
            token,
            fingerprint,
            "page_token",
            |key| uuid::Uuid::parse_str(key).ok(),
            violations,
        );
        (limit, from)
    }

    /// Cuts rows fetched with `limit + 1` down to `limit`, with the token of the last row
    /// kept when more remain (empty otherwise).
    pub fn finish_page<T>(
        &self,
        tenant: TenantId,
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
            .map(|last| self.encode(tenant, fingerprint, &key(last)))
            .unwrap_or_default();
        (rows, token)
    }
}

#[cfg(test)]
mod tests {
    use uuid::Uuid;

    use super::*;

    fn tokens(seed: u8) -> PageTokens {
        PageTokens::new(&[seed; MIN_SECRET_LEN]).unwrap()
    }

    fn tenant(n: u128) -> TenantId {
        TenantId(Uuid::from_u128(n))
    }

    /// `token` with its payload part re-encoded after `edit`, the tag kept.
    fn with_payload(token: &str, edit: impl FnOnce(String) -> String) -> String {
        let (payload, tag) = token.split_once('.').unwrap();
        let payload = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        format!("{}.{tag}", URL_SAFE_NO_PAD.encode(edit(payload)))
    }

    #[test]
    fn page_size_defaults_coerces_and_refuses_negative() {
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE_SIZE));
        assert_eq!(page_size(7), Ok(7));
        assert_eq!(page_size(5000), Ok(MAX_PAGE_SIZE));
        assert!(page_size(-1).is_err());
    }

    #[test]
    fn a_secret_shorter_than_32_bytes_is_refused() {
        assert!(PageTokens::new(&[7; MIN_SECRET_LEN - 1]).is_none());
        assert!(PageTokens::new(&[7; MIN_SECRET_LEN]).is_some());
    }

    #[test]
    fn debug_output_does_not_show_the_secret() {
        assert_eq!(format!("{:?}", tokens(1)), "PageTokens { .. }");
    }

    #[test]
    fn token_round_trips_its_key() {
        let tokens = tokens(1);
        let fingerprint = filter_fingerprint("include_archived=true");
        let token = tokens.encode(
            tenant(1),
            &fingerprint,
            "0192e4a0-7b1a-7c3e-9f00-000000000001",
        );
        assert_eq!(
            tokens
                .decode(tenant(1), &token, &fingerprint)
                .unwrap()
                .as_deref(),
            Some("0192e4a0-7b1a-7c3e-9f00-000000000001")
        );
        assert_eq!(tokens.decode(tenant(1), "", &fingerprint), Ok(None));
    }

    #[test]
    fn a_full_page_carries_the_token_of_its_last_row() {
        let tokens = tokens(1);
        let (rows, token) = tokens.finish_page(tenant(1), vec![1, 2, 3], 2, "f", |n| n.to_string());
        assert_eq!(rows, [1, 2]);
        let mut violations = Violations::new();
        let key = tokens.read(
            tenant(1),
            &token,
            "f",
            "page_token",
            |k| k.parse::<i32>().ok(),
            &mut violations,
        );
        assert_eq!(key, Some(2));
        let (rows, token) = tokens.finish_page(tenant(1), vec![1, 2], 2, "f", |n| n.to_string());
        assert_eq!((rows.len(), token.as_str()), (2, ""));
    }

    #[test]
    fn an_unparsable_key_is_a_violation_of_the_field() {
        let tokens = tokens(1);
        let mut violations = Violations::new();
        let token = tokens.encode(tenant(1), "f", "not a number");
        assert_eq!(
            tokens.read(
                tenant(1),
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
        let tokens = tokens(1);
        let a = filter_fingerprint("a");
        let token = tokens.encode(tenant(1), &a, "k");
        assert_eq!(
            tokens.decode(tenant(1), &token, &filter_fingerprint("b")),
            Err("was issued for a request with other filters")
        );
        for forged in [
            "not base64 !".to_owned(),
            URL_SAFE_NO_PAD.encode("x|y"),
            URL_SAFE_NO_PAD.encode(format!("p2|{a}|k")),
            format!("{}.", URL_SAFE_NO_PAD.encode(format!("p2|{a}|k"))),
        ] {
            assert_eq!(
                tokens.decode(tenant(1), &forged, &a),
                Err(NOT_OURS),
                "{forged}"
            );
        }
    }

    #[test]
    fn an_unsigned_token_of_the_old_format_is_refused() {
        let a = filter_fingerprint("a");
        let old = URL_SAFE_NO_PAD.encode(format!("p1|{a}|k"));
        assert_eq!(tokens(1).decode(tenant(1), &old, &a), Err(NOT_OURS));
    }

    #[test]
    fn a_token_with_an_edited_key_is_refused() {
        let tokens = tokens(1);
        let a = filter_fingerprint("a");
        let token = tokens.encode(tenant(1), &a, "0192e4a0-7b1a-7c3e-9f00-000000000001");
        let edited = with_payload(&token, |payload| payload.replace("0001", "0002"));
        assert_ne!(edited, token);
        assert_eq!(tokens.decode(tenant(1), &edited, &a), Err(NOT_OURS));
        let filters_swapped = with_payload(&token, |payload| {
            payload.replace(&a, &filter_fingerprint("b"))
        });
        assert_eq!(
            tokens.decode(tenant(1), &filters_swapped, &filter_fingerprint("b")),
            Err(NOT_OURS)
        );
    }

    #[test]
    fn a_truncated_token_is_refused() {
        let tokens = tokens(1);
        let token = tokens.encode(tenant(1), "f", "k");
        for cut in 1..token.len() {
            assert_eq!(
                tokens.decode(tenant(1), &token[..cut], "f"),
                Err(NOT_OURS),
                "{cut}"
            );
        }
    }

    #[test]
    fn a_token_of_another_tenant_is_refused() {
        let tokens = tokens(1);
        let token = tokens.encode(tenant(1), "f", "k");
        assert_eq!(tokens.decode(tenant(2), &token, "f"), Err(NOT_OURS));
    }

    #[test]
    fn a_token_signed_with_another_secret_is_refused() {
        let token = tokens(1).encode(tenant(1), "f", "k");
        assert_eq!(tokens(2).decode(tenant(1), &token, "f"), Err(NOT_OURS));
    }
}
