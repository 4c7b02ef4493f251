//! The cache of score summaries (the helpdesk sidebar path) and its adapters. A cache
//! is never the source of truth: every read falls back to the store when the cache
//! misses, fails or is slow.

pub mod memory;
pub mod redis;
pub mod tiered;

use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use crate::domain::tenant::TenantId;

/// Whose figures a cached summary holds; the projector invalidates by entity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CacheEntity {
    Agent(TenantId, String),
    Team(TenantId, String),
}

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    Hit(Vec<u8>),
    /// Not cached: compute it, then `put` it with this version, so that an invalidation
    /// in between makes the `put` a no-op instead of caching a stale value.
    Miss {
        version: String,
    },
    /// The cache cannot answer now.
    Unavailable,
}

#[async_trait]
pub trait SummaryCache: Send + Sync + 'static {
    async fn get(&self, entity: &CacheEntity, request_key: &str) -> Lookup;

    /// `get` of each (entity, request key), in order; a cache on the network answers
    /// them in one round trip.
    async fn get_many(&self, keys: &[(CacheEntity, String)]) -> Vec<Lookup> {
        let mut lookups = Vec::with_capacity(keys.len());
        for (entity, request_key) in keys {
            lookups.push(self.get(entity, request_key).await);
        }
        lookups
    }

    /// Stores a value computed after `get` returned `version`; ignored if the entity was
    /// invalidated since.
    async fn put(&self, entity: &CacheEntity, request_key: &str, version: &str, value: Vec<u8>);

    /// Makes every cached value of these entities unreachable. Errs when the cache
    /// cannot be reached; the caller retries.
    async fn invalidate(&self, entities: &[CacheEntity]) -> Result<(), String>;

    fn stats(&self) -> &CacheStats;
}

/// Counts of lookups, for tests here and as the `iqs.cache.lookups` metric (by result:
/// hit, miss, error) for operators.
#[derive(Debug)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
    lookups: opentelemetry::metrics::Counter<u64>,
}

impl Default for CacheStats {
    fn default() -> Self {
        Self {
            hits: AtomicU64::default(),
            misses: AtomicU64::default(),
            errors: AtomicU64::default(),
            lookups: opentelemetry::global::meter("iqs")
                .u64_counter("iqs.cache.lookups")
                .with_description("Summary cache lookups, by result (hit, miss, error)")
                .build(),
        }
    }
}

impl CacheStats {
    pub fn record(&self, lookup: &Lookup) {
        let (counter, result) = match lookup {
            Lookup::Hit(_) => (&self.hits, "hit"),
            Lookup::Miss { .. } => (&self.misses, "miss"),
            Lookup::Unavailable => (&self.errors, "error"),
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.lookups
            .add(1, &[opentelemetry::KeyValue::new("result", result)]);
    }

    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    pub fn misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }
}
