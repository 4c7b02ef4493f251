//! API keys: `iqs_<tenant>_<key id>_<secret>`. The recognisable prefix lets secret
//! scanners find leaked keys; the tenant and key id locate the stored record; only a
//! SHA-256 of the 256-bit random secret is stored, and compared in constant time.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::Principal;
use crate::domain::tenant::TenantId;
use crate::error::{Error, Result};
use crate::store::AccessStore;

pub const KEY_PREFIX: &str = "iqs";
const SECRET_BYTES: usize = 32;
/// How long a verification is trusted: a revocation takes effect within this on every
/// replica.
pub const VERIFICATION_TTL: Duration = Duration::from_secs(2);
const MAX_CACHED: usize = 100_000;

/// The parts of a key string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedKey {
    pub tenant: TenantId,
    pub key_id: Uuid,
    pub secret: String,
}

/// A new key: the string to show once, and what to store.
pub struct NewKey {
    pub key: String,
    pub key_id: Uuid,
    pub secret_hash: Vec<u8>,
}

pub fn hash_secret(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

pub fn generate(tenant: TenantId) -> Result<NewKey> {
    let mut secret = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret).map_err(|err| Error::Internal(format!("no randomness: {err}")))?;
    let secret = URL_SAFE_NO_PAD.encode(secret);
    let key_id = Uuid::now_v7();
    Ok(NewKey {
        key: format!(
            "{KEY_PREFIX}_{}_{}_{secret}",
            tenant.as_uuid().simple(),
            key_id.simple()
        ),
        key_id,
        secret_hash: hash_secret(&secret),
    })
}

pub fn parse(key: &str) -> Option<ParsedKey> {
    let mut parts = key.splitn(4, '_');
    let (prefix, tenant, key_id, secret) =
        (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if prefix != KEY_PREFIX || tenant.len() != 32 || key_id.len() != 32 || secret.len() < 32 {
        return None;
    }
    Some(ParsedKey {
        tenant: TenantId(Uuid::try_parse(tenant).ok()?),
        key_id: Uuid::try_parse(key_id).ok()?,
        secret: secret.to_owned(),
    })
}

/// Equality that takes the same time wherever the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a key was refused. Deliberately says nothing about which part was wrong.
#[derive(Debug, Clone, PartialEq)]
pub enum Refusal {
    Unauthenticated,
    /// The store could not be asked; retrying is safe.
    Unavailable,
}

/// A remembered verification: the principal (none for a refused key) and when.
type Verification = (Option<Principal>, Instant);

/// Verifies keys against the store, remembering answers for `VERIFICATION_TTL`.
pub struct KeyVerifier {
    store: Arc<dyn AccessStore>,
    /// Keyed by a SHA-256 of the whole key string, so no key is kept in memory as is.
    cache: Mutex<HashMap<Vec<u8>, Verification>>,
}

impl KeyVerifier {
    pub fn new(store: Arc<dyn AccessStore>) -> Self {
        Self {
            store,
            cache: Mutex::new(HashMap::new()),
        }
    }

    pub async fn verify(&self, key: &str) -> std::result::Result<Principal, Refusal> {
        let fingerprint = hash_secret(key);
        if let Ok(cache) = self.cache.lock()
            && let Some((answer, at)) = cache.get(&fingerprint)
            && at.elapsed() < VERIFICATION_TTL
        {
            return answer.clone().ok_or(Refusal::Unauthenticated);
        }
        let answer = self.look_up(key).await?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
            cache.insert(fingerprint, (answer.clone(), Instant::now()));
        }
        answer.ok_or(Refusal::Unauthenticated)
    }

    async fn look_up(&self, key: &str) -> std::result::Result<Option<Principal>, Refusal> {
        let Some(parsed) = parse(key) else {
            return Ok(None);
        };
        let record = match self.store.find_key(parsed.tenant, parsed.key_id).await {
            Ok(record) => record,
            Err(Error::Unavailable(_)) => return Err(Refusal::Unavailable),
            Err(err) => {
                tracing::error!(%err, "cannot verify an API key");
                return Err(Refusal::Unavailable);
            }
        };
        Ok(record
            .filter(|record| record.revoke_time.is_none())
            .filter(|record| constant_time_eq(&record.secret_hash, &hash_secret(&parsed.secret)))
            .map(|record| Principal {
                tenant: record.tenant,
                role: record.role,
                agent_id: record.agent_id,
                reviewer_id: record.reviewer_id,
                key_id: Some(record.key_id),
            }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_generated_key_parses_back_to_its_tenant_id_and_secret() {
        let tenant = TenantId(Uuid::now_v7());
        let key = generate(tenant).unwrap();
        assert!(key.key.starts_with("iqs_"));
        let parsed = parse(&key.key).unwrap();
        assert_eq!((parsed.tenant, parsed.key_id), (tenant, key.key_id));
        assert_eq!(hash_secret(&parsed.secret), key.secret_hash);
        assert!(key.key.len() > 100);
    }

    #[test]
    fn two_keys_never_share_a_secret() {
        let tenant = TenantId(Uuid::nil());
        assert_ne!(
            parse(&generate(tenant).unwrap().key).unwrap().secret,
            parse(&generate(tenant).unwrap().key).unwrap().secret
        );
    }

    #[test]
    fn malformed_keys_do_not_parse() {
        for key in [
            "",
            "iqs",
            "iqs_abc_def_ghi",
            "sk_00000000000000000000000000000000_00000000000000000000000000000000_secretsecretsecretsecretsecretsecret",
        ] {
            assert_eq!(parse(key), None, "{key}");
        }
    }

    #[test]
    fn constant_time_eq_compares_whole_slices() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
