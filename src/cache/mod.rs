//! The cache of score summaries (the helpdesk sidebar path) and its adapters. A cache
//! is never the source of truth: every read falls back to the store when the cache
//! misses, fails or is slow.

pub mod memory;
pub mod redis;

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

    /// Stores a value computed after `get` returned `version`; ignored if the entity was
    /// invalidated since.
    async fn put(&self, entity: &CacheEntity, request_key: &str, version: &str, value: Vec<u8>);

    /// Makes every cached value of these entities unreachable. Errs when the cache
    /// cannot be reached; the caller retries.
    async fn invalidate(&self, entities: &[CacheEntity]) -> Result<(), String>;

    fn stats(&self) -> &CacheStats;
}

/// Counts of lookups, for operators and tests.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: AtomicU64,
    misses: AtomicU64,
    errors: AtomicU64,
}

impl CacheStats {
    pub fn record(&self, lookup: &Lookup) {
        let counter = match lookup {
            Lookup::Hit(_) => &self.hits,
            Lookup::Miss { .. } => &self.misses,
            Lookup::Unavailable => &self.errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
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
